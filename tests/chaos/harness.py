"""Fault-injection helpers: a durable writer, recovery timing and the results report.

The writer commits rows with increasing ids on its own connection and remembers every id
whose COMMIT returned; after a fault and recovery every such id must be in the table.
An id whose COMMIT raised (the connection died mid-commit) has an unknown outcome and is
counted apart, never as loss.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import re
import subprocess
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psycopg2

from tests.support.stack import DOCKER, Stack

FULL = os.environ.get("PGSTEADY_CHAOS") == "full"
REPO = Path(__file__).resolve().parents[2]
CI_REPORT_DIR = Path(os.environ.get("PGSTEADY_CHAOS_OUT", "/tmp/pgsteady-chaos"))
#: Sections of the report written by other suites (``make lab-chaos``: host reboot); a
#: rewrite of the report keeps them.
KEPT_SECTION = re.compile(
    r"<!-- section:(?P<name>[a-z-]+) -->.*?<!-- /section:(?P=name) -->\n", re.S
)
TABLE = "chaos_writes"


def trials(full: int, ci: int) -> int:
    """How many trials a fault gets in this mode."""
    return full if FULL else ci


# --------------------------------------------------------------------------------------
# The writer
# --------------------------------------------------------------------------------------


class Writer:
    """A background thread committing one row per transaction, id after id."""

    def __init__(self, stack: Stack, pause: float = 0.005) -> None:
        self.stack = stack
        self.pause = pause
        self.acked: set[int] = set()
        self.unknown: set[int] = set()
        self.failed = 0
        self.last_ack = 0.0
        self.last_error = 0.0
        self.errors: list[str] = []
        self._next = self._start_id()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="chaos-writer", daemon=True)

    def _start_id(self) -> int:
        with self.stack.connect() as conn, conn.cursor() as cur:
            cur.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} (id bigint PRIMARY KEY, payload text)")
            cur.execute(f"SELECT coalesce(max(id), 0) FROM {TABLE}")
            return int(cur.fetchone()[0]) + 1

    def __enter__(self) -> Writer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _connect(self) -> Any:
        backoff = 0.05
        while not self._stop.is_set():
            try:
                conn = self.stack.connect(timeout=2)
                with conn.cursor() as cur:
                    cur.execute("SET statement_timeout = '10s'")
                    cur.execute("SET application_name = 'chaos-writer'")
                conn.commit()
                return conn
            except psycopg2.Error:
                time.sleep(backoff)
                backoff = min(backoff * 2, 1.0)
        return None

    def _run(self) -> None:
        conn = None
        while not self._stop.is_set():
            if conn is None or conn.closed:
                conn = self._connect()
                if conn is None:
                    return
            ident = self._next
            self._next += 1
            try:
                with conn.cursor() as cur:
                    cur.execute(f"INSERT INTO {TABLE} VALUES (%s, md5(%s::text))", (ident, ident))
            except psycopg2.Error as exc:
                self._note(exc)
                self.failed += 1  # never committed: the transaction died before COMMIT
                conn = self._drop(conn)
                continue
            try:
                conn.commit()
            except psycopg2.Error as exc:
                self._note(exc)
                with self._lock:
                    self.unknown.add(ident)
                conn = self._drop(conn)
                continue
            with self._lock:
                self.acked.add(ident)
                self.last_ack = time.monotonic()
            time.sleep(self.pause)
        if conn is not None:
            conn.close()

    def _note(self, exc: psycopg2.Error) -> None:
        self.last_error = time.monotonic()
        if len(self.errors) < 200:
            self.errors.append(f"{time.strftime('%H:%M:%S')} {str(exc).strip()[:160]}")

    @staticmethod
    def _drop(conn: Any) -> None:
        with contextlib.suppress(psycopg2.Error):
            conn.rollback()
        with contextlib.suppress(psycopg2.Error):
            conn.close()

    def snapshot(self) -> tuple[set[int], set[int]]:
        with self._lock:
            return set(self.acked), set(self.unknown)

    def wait_for_commits(self, n: int = 5, timeout: float = 120) -> None:
        """Block until ``n`` more commits were acknowledged (the writer is live)."""
        start = len(self.snapshot()[0])
        deadline = time.monotonic() + timeout
        while len(self.snapshot()[0]) < start + n:
            if time.monotonic() > deadline:
                raise AssertionError(f"writer made no progress: {self.errors[-5:]}")
            time.sleep(0.02)

    def first_ack_after(self, t0: float, timeout: float = 240) -> float:
        """Seconds from ``t0`` until the writer's next acknowledged commit."""
        deadline = time.monotonic() + timeout
        while self.last_ack <= t0:
            if time.monotonic() > deadline:
                raise AssertionError(f"writer did not resume: {self.errors[-5:]}")
            time.sleep(0.01)
        return self.last_ack - t0

    def verify(self) -> Check:
        """Compare every acknowledged (and unknown) id with what the table holds."""
        acked, unknown = self.snapshot()
        top = max(acked | unknown, default=0)
        with self.stack.connect(timeout=5) as conn, conn.cursor() as cur:
            cur.execute(f"SELECT id FROM {TABLE} WHERE id <= %s", (top,))
            present = {row[0] for row in cur.fetchall()}
        conn.close()
        return Check(
            acked=len(acked),
            lost=sorted(acked - present),
            unknown=len(unknown),
            unknown_committed=len(unknown & present),
        )


@dataclass
class Check:
    """The durability verdict after one trial."""

    acked: int
    lost: list[int]
    unknown: int
    unknown_committed: int


# --------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------


def first_query_after(stack: Stack, t0: float, timeout: float = 240) -> float:
    """Seconds from ``t0`` (monotonic) until a new connection runs ``SELECT 1``."""
    stack.wait_until_accepting(timeout=timeout)
    return time.monotonic() - t0


def wait_uptime(stack: Stack, seconds: float = 11) -> None:
    """Wait until the container has run ``seconds`` (Docker resets its restart backoff
    only after 10 s of uptime) and accepts queries."""
    stack.wait_until_accepting(timeout=240)
    while True:
        started = stack.inspect()["State"]["StartedAt"]
        up = _age(started)
        if up >= seconds:
            return
        time.sleep(seconds - up + 0.1)


def _age(docker_time: str) -> float:
    """Seconds since a Docker RFC 3339 timestamp (nanosecond precision)."""
    from datetime import UTC, datetime

    base, _, frac = docker_time.rstrip("Z").partition(".")
    stamp = datetime.fromisoformat(base).replace(tzinfo=UTC).timestamp()
    stamp += float("0." + (frac or "0")[:6])
    return time.time() - stamp


def pctl(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


# --------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------


@dataclass
class FaultRow:
    """One line of the reliability table."""

    fault: str
    detection: str
    recoveries: list[float] = field(default_factory=list)
    acked: int = 0
    lost: int = 0
    unknown: int = 0
    unknown_committed: int = 0
    notes: list[str] = field(default_factory=list)

    def add(self, recovery: float, check: Check) -> None:
        self.recoveries.append(round(recovery, 3))
        self.acked = check.acked
        self.lost = max(self.lost, len(check.lost))
        self.unknown = check.unknown
        self.unknown_committed = check.unknown_committed


class Results:
    """Rows collected over the session, written as markdown and JSON at the end."""

    def __init__(self) -> None:
        self.rows: list[FaultRow] = []
        self.started = time.monotonic()
        self.minutes = 0.0
        self.facts: dict[str, str] = {}

    def row(self, fault: str, detection: str) -> FaultRow:
        r = FaultRow(fault, detection)
        self.rows.append(r)
        return r

    def table(self) -> str:
        lines = [
            "| fault | trials | detection | recovery p50 / p95 / max (s) | acknowledged writes "
            "| lost | unknown outcome (committed) |",
            "|---|---:|---|---|---:|---:|---:|",
        ]
        for r in self.rows:
            if r.recoveries:
                v = r.recoveries
                timing = f"{pctl(v, 50):.2f} / {pctl(v, 95):.2f} / {max(v):.2f}"
            else:
                timing = "n/a"
            lines.append(
                f"| {r.fault} | {len(r.recoveries)} | {r.detection} | {timing} | {r.acked} "
                f"| **{r.lost}** | {r.unknown} ({r.unknown_committed}) |"
            )
        return "\n".join(lines)

    def write(self, path: Path, intro: str, outro: str = "", raw_path: Path | None = None) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        minutes = self.minutes or (time.monotonic() - self.started) / 60
        notes = [f"- **{r.fault}**: {n}" for r in self.rows for n in r.notes]
        env = "\n".join(f"| {k} | {v} |" for k, v in self.facts.items())
        kept = "".join(
            m.group(0) + "\n"
            for m in KEPT_SECTION.finditer(path.read_text() if path.exists() else "")
        )
        text = (
            f"{intro}\n\n## Results\n\n{self.table()}\n\n"
            f"Suite wall time: {minutes:.1f} min.\n\n"
            + ("## Per-fault observations\n\n" + "\n".join(notes) + "\n\n" if notes else "")
            + (f"{outro}\n\n" if outro else "")
            + kept
            + f"## Machine and versions\n\n| | |\n|---|---|\n{env}\n"
        )
        path.write_text(text)
        raw = {"minutes": round(minutes, 2), "facts": self.facts}
        raw["rows"] = [asdict(r) for r in self.rows]
        raw_path = raw_path or path.with_suffix(".json")
        raw_path.parent.mkdir(parents=True, exist_ok=True)
        raw_path.write_text(json.dumps(raw, indent=1) + "\n")

    @classmethod
    def load(cls, path: Path) -> Results:
        """Results saved next to a report (to re-render it without re-running)."""
        raw = json.loads(path.read_text())
        loaded = cls()
        loaded.minutes = raw["minutes"]
        loaded.facts = raw["facts"]
        loaded.rows = [FaultRow(**row) for row in raw["rows"]]
        return loaded


def _run(*cmd: str) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"


def machine_facts(stack: Stack | None) -> dict[str, str]:
    """What the figures were measured on."""
    import pyinfra

    mem_kb = next(
        (line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
         if line.startswith("MemTotal")),
        "0",
    )  # fmt: skip
    os_name = next(
        (line.split("=", 1)[1].strip('"') for line in Path("/etc/os-release").read_text()
         .splitlines() if line.startswith("PRETTY_NAME")),
        "?",
    )  # fmt: skip
    cgroup = "v2" if Path("/sys/fs/cgroup/cgroup.controllers").exists() else "v1"
    facts = {
        "OS / kernel": f"{os_name} / {platform.release()}",
        "CPUs / RAM": f"{os.cpu_count()} / {int(mem_kb) // 1024} MB",
        "cgroup": cgroup,
        "Docker engine": _run(DOCKER, "version", "--format", "{{.Server.Version}}"),
        "docker-compose": _run("docker-compose", "version", "--short"),
        "pyinfra": pyinfra.__version__ if hasattr(pyinfra, "__version__") else _pyinfra_version(),
    }
    if stack is not None:
        try:
            facts["Postgres (in container)"] = stack.psql("SHOW server_version")
        except Exception:  # noqa: BLE001 - a report fact, not a test
            facts["Postgres (in container)"] = "?"
    return facts


def _pyinfra_version() -> str:
    from importlib.metadata import version

    return version("pyinfra")
