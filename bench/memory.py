"""The worst-case memory workload: every allowed connection at its work_mem peak at once.

Each client runs one query with three memory-hungry nodes over an integer-keyed table:
a Sort (up to ``work_mem``), a HashAggregate and the Hash of a hash join (each up to
``work_mem x hash_mem_multiplier``), so 5 x work_mem at the default multiplier of 2.0.
The row count is chosen from the server's own ``work_mem`` so that every node fills its
limit (and spills the rest to disk). Postgres frees a node's memory only when the query
ends, so the query's last step, ``pg_advisory_xact_lock_shared``, parks each backend at
its peak behind an exclusive advisory lock that the coordinator holds until every client
has arrived: all backends then hold their peak at the same moment. A maintenance session
(CREATE INDEX at ``maintenance_work_mem``) runs while the clients build up.

Out-of-memory kills are counted three ways: the kernel's ``oom_kill`` counter of the
container's memory cgroup, the postmaster's "terminated by signal 9" log lines, and
Docker's ``OOMKilled`` flag. The parsing and the sums are pure (unit tested); the runner
takes its connections and its cgroup reader from the caller, so that the bench part and
the integration test run the same workload.
"""

from __future__ import annotations

import contextlib
import math
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import stats

#: The advisory lock key that parks every backend at its peak (arbitrary, fixed).
BARRIER_KEY = 1905
#: Memory-hungry nodes of the query in units of work_mem: Sort 1, HashAggregate and Hash
#: hash_mem_multiplier each.
SORTS, HASHES = 1, 2
#: Bytes a hashed group / sorted row takes at least (measured on PG15/17: a Hash of
#: 100,000 int keys used 5.3 MB); the row count is sized so each node overflows.
BYTES_PER_HASHED_KEY = 40
#: The checkpointer's PID: a crash restart replaces every server process but the
#: postmaster (whose start time stays), so a new PID means the server reinitialised.
CHECKPOINTER = "SELECT pid FROM pg_catalog.pg_stat_activity WHERE backend_type = 'checkpointer'"
SIGNAL9 = re.compile(r"was terminated by signal 9")


def work_units(hash_mem_multiplier: float) -> float:
    """work_mem units one workload query may hold at its peak."""
    return SORTS + HASHES * hash_mem_multiplier


def rows_needed(work_mem_kb: int, hash_mem_multiplier: float) -> int:
    """Rows to read so that the hash nodes (half as many groups as rows) overflow hash_mem."""
    hash_mem = work_mem_kb * 1024 * hash_mem_multiplier
    return max(10_000, math.ceil(1.5 * 2 * hash_mem / BYTES_PER_HASHED_KEY))


def query(table: str, key: str, rows: int) -> str:
    """The workload query over ``table`` whose integer ``key`` runs 1..n (n >= ``rows``)."""
    if not re.fullmatch(r"[a-z_][a-z0-9_.]*", table) or not re.fullmatch(r"[a-z_]+", key):
        raise ValueError(f"table {table!r} / key {key!r}: expected plain lower-case names")
    groups = max(1, rows // 2)
    return (
        "SELECT count(*), max(s.o), sum(h.c), "
        f"pg_catalog.pg_advisory_xact_lock_shared({BARRIER_KEY}) "
        f"FROM (SELECT {key} AS k, {key}::int8 * 7919 % 1000003 AS o FROM {table} "
        f"WHERE {key} <= {rows} ORDER BY o) AS s "
        f"JOIN (SELECT {key} % {groups} AS k, count(*) AS c FROM {table} "
        f"WHERE {key} <= {rows} GROUP BY 1) AS h ON h.k = s.k"
    )


def parse_kb(value: str) -> int:
    """A memory setting as ``SHOW`` prints it (``4MB``, ``862kB``, ``1GB``) in kB."""
    match = re.fullmatch(r"\s*(\d+)\s*(kB|MB|GB|TB)\s*", value)
    if not match:
        raise ValueError(f"{value!r}: expected a size such as 4MB or 862kB")
    return int(match[1]) * {"kB": 1, "MB": 1024, "GB": 1024**2, "TB": 1024**3}[match[2]]


def oom_kill_count(oom_control: str) -> int:
    """The ``oom_kill`` counter of a cgroup v1 ``memory.oom_control`` or v2 ``memory.events``."""
    for line in oom_control.splitlines():
        name, _, value = line.partition(" ")
        if name == "oom_kill":
            return int(value)
    raise ValueError("no oom_kill line (kernel older than 4.13?)")


def resident_bytes(memory_stat: str) -> int:
    """Anonymous plus shared memory of a cgroup's ``memory.stat`` (v1: rss + shmem, v2:
    anon + shmem): what the kernel cannot reclaim without swap, unlike the page cache."""
    values = dict(line.split(" ", 1) for line in memory_stat.splitlines() if " " in line)
    anon = values.get("rss", values.get("anon"))
    if anon is None or "shmem" not in values:
        raise ValueError("memory.stat has no rss/anon or shmem line")
    return int(anon) + int(values["shmem"])


def signal9_lines(log: str) -> int:
    """Server processes the postmaster reports killed by SIGKILL (the OOM killer's signal)."""
    return len(SIGNAL9.findall(log))


def allowed_clients(max_connections: int, reserved: int, rolconnlimit: int) -> int:
    """Connections the application role may open: the unreserved slots, or its own limit."""
    slots = max_connections - reserved
    return min(slots, rolconnlimit) if rolconnlimit >= 0 else slots


@dataclass
class Counter:
    """The cgroup's oom_kill counter across resets (a restarted container starts at 0)."""

    total: int = 0
    last: int = 0

    def see(self, value: int) -> int:
        self.total += value - self.last if value >= self.last else value
        self.last = value
        return self.total


@dataclass
class RunResult:
    """One workload run against one configuration."""

    clients: int
    rows: int
    work_mem_kb: int
    arrived: int = 0
    finished: int = 0
    errors: list[str] = field(default_factory=list)
    maintenance_error: str | None = None
    oom_kills: int = 0
    signal9: int = 0
    server_restarted: bool = False
    peak_bytes: int = 0
    seconds: float = 0.0

    @property
    def killed(self) -> bool:
        return self.oom_kills > 0 or self.signal9 > 0 or self.server_restarted

    def as_dict(self) -> dict[str, Any]:
        return {
            "clients": self.clients,
            "rows": self.rows,
            "work_mem_kb": self.work_mem_kb,
            "arrived_at_peak": self.arrived,
            "finished": self.finished,
            "errors": len(self.errors),
            "first_error": self.errors[0][:300] if self.errors else None,
            "maintenance_error": (self.maintenance_error or "")[:300] or None,
            "oom_kills": self.oom_kills,
            "signal9": self.signal9,
            "server_restarted": self.server_restarted,
            "killed": self.killed,
            "peak_bytes": self.peak_bytes,
            "seconds": round(self.seconds, 1),
        }


def summarize(runs: list[dict[str, Any]], limit: int) -> dict[str, Any]:
    """Per configuration: runs, runs with a kill, OOM kills summed, peak usage vs limit
    (a run whose server did not start counts under ``start_failed`` only)."""
    out: dict[str, Any] = {}
    for label in dict.fromkeys(r["config"] for r in runs):
        mine = [r for r in runs if r["config"] == label and "start_failed" not in r]
        peaks = [r["peak_bytes"] for r in mine if r["peak_bytes"]]
        out[label] = {
            "runs": len(mine),
            "start_failed": sum(1 for r in runs if r["config"] == label and "start_failed" in r),
            "all_at_peak": sum(1 for r in mine if r.get("arrived_at_peak") == r.get("clients")),
            "runs_killed": sum(1 for r in mine if r["killed"]),
            "oom_kills": sum(r["oom_kills"] for r in mine),
            "signal9": sum(r["signal9"] for r in mine),
            "peak_of_limit": stats.summary([p / limit for p in peaks], 3) if peaks else None,
        }
    return out


def cgroup_dir(container_id: str, root: Path = Path("/sys/fs/cgroup")) -> Path:
    """A container's memory cgroup directory (cgroup v1 or v2, cgroupfs or systemd driver)."""
    for rel in (
        f"memory/docker/{container_id}",
        f"memory/system.slice/docker-{container_id}.scope",
        f"system.slice/docker-{container_id}.scope",
        f"docker/{container_id}",
    ):
        if (root / rel).is_dir():
            return root / rel
    raise RuntimeError(f"no memory cgroup found for container {container_id}")


class CgroupReader:
    """A container's OOM kill counter and resident memory, read from its cgroup; follows
    the container into the new cgroup a restart gives it (``container_id()`` is asked)."""

    def __init__(self, container_id: Callable[[], str]) -> None:
        self.container_id = container_id
        self.path = cgroup_dir(container_id())

    def _read(self, *names: str) -> str:
        for name in names:
            try:
                return (self.path / name).read_text()
            except FileNotFoundError:
                continue
        with contextlib.suppress(Exception):  # the container is down: nothing to read now
            self.path = cgroup_dir(self.container_id())
        return ""

    def oom_kills(self) -> int:
        text = self._read("memory.oom_control", "memory.events")
        return oom_kill_count(text) if text else 0

    def resident(self) -> int:
        text = self._read("memory.stat")
        return resident_bytes(text) if text else 0


Conn = Any  # a DB-API connection (psycopg2)


def _client(connect: Callable[[], Conn], sql: str, result: RunResult, lock: threading.Lock,
            ready: threading.Barrier) -> None:  # fmt: skip
    conn = None
    try:
        conn = connect()
        conn.autocommit = True
        ready.wait(timeout=300)
        with conn.cursor() as cur:
            cur.execute(sql)
            cur.fetchall()
        with lock:
            result.finished += 1
    except Exception as exc:  # the server died under it, or refused the connection
        with lock:
            result.errors.append(f"{type(exc).__name__}: {exc}".strip())
    finally:
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()


def run_workload(
    connect: Callable[[], Conn],
    clients: int,
    table: str,
    key: str,
    oom_counter: Callable[[], int],
    usage: Callable[[], int],
    marker: Callable[[], object],
    maintenance: Callable[[], object] | None = None,
    hold: float = 3.0,
    timeout: float = 300.0,
) -> RunResult:
    """Run the workload once with ``clients`` sessions plus the coordinator's (also
    ``connect()``); count OOM kills with ``oom_counter`` (the cgroup's counter, read now)
    and sample ``usage`` (resident bytes of the cgroup) for the peak. ``marker()`` returns
    something that changes when the server reinitialises (the checkpointer's PID, read
    as a superuser: :data:`CHECKPOINTER`)."""
    started_at = marker()
    coordinator = connect()
    coordinator.autocommit = True
    with coordinator.cursor() as cur:
        cur.execute("SHOW work_mem")
        work_mem = parse_kb(cur.fetchone()[0])
        cur.execute("SHOW hash_mem_multiplier")
        multiplier = float(cur.fetchone()[0])
        cur.execute("SELECT pg_catalog.pg_advisory_lock(%s)", (BARRIER_KEY,))
    rows = rows_needed(work_mem, multiplier)
    result = RunResult(clients=clients, rows=rows, work_mem_kb=work_mem)
    kills = Counter(last=oom_counter())
    lock = threading.Lock()
    ready = threading.Barrier(clients + 1)
    sql = query(table, key, rows)
    threads = [
        threading.Thread(target=_client, args=(connect, sql, result, lock, ready), daemon=True)
        for _ in range(clients)
    ]
    started = time.monotonic()
    for t in threads:
        t.start()
    try:
        ready.wait(timeout=300)
    except threading.BrokenBarrierError:
        result.errors.append("not every client connected")
    side = threading.Thread(target=_quiet(maintenance, result), daemon=True)
    if maintenance is not None:
        side.start()
    deadline = started + timeout
    try:
        result.arrived = _wait_arrivals(
            coordinator, clients, result, deadline, kills, oom_counter, usage
        )
        if result.arrived == clients:  # every backend at its peak at once
            hold_until = time.monotonic() + hold
            while time.monotonic() < hold_until:
                result.peak_bytes = max(result.peak_bytes, usage())
                time.sleep(0.2)
        with coordinator.cursor() as cur:
            cur.execute("SELECT pg_catalog.pg_advisory_unlock(%s)", (BARRIER_KEY,))
    except Exception as exc:  # the coordinator's backend went down with the server
        result.errors.append(f"coordinator: {type(exc).__name__}: {exc}".strip())
    finally:
        with contextlib.suppress(Exception):
            coordinator.close()
    for t in [*threads, side]:
        if t.is_alive():
            t.join(timeout=max(1.0, deadline - time.monotonic()))
    result.seconds = time.monotonic() - started
    result.oom_kills = kills.see(oom_counter())
    result.server_restarted = _restarted(marker, started_at)
    return result


def _quiet(fn: Callable[[], object] | None, result: RunResult) -> Callable[[], None]:
    def go() -> None:
        try:
            if fn is not None:
                fn()
        except Exception as exc:  # killed with the server, or failed: recorded, not raised
            result.maintenance_error = f"{type(exc).__name__}: {exc}".strip()

    return go


def _wait_arrivals(
    coordinator: Conn,
    clients: int,
    result: RunResult,
    deadline: float,
    kills: Counter,
    oom_counter: Callable[[], int],
    usage: Callable[[], int],
) -> int:
    """Backends parked at the barrier, once all ``clients`` are (or a kill, or the deadline)."""
    waiting = 0
    with coordinator.cursor() as cur:
        while time.monotonic() < deadline:
            cur.execute(
                "SELECT count(*) FROM pg_catalog.pg_locks WHERE locktype = 'advisory' "
                "AND objid = %s AND NOT granted",
                (BARRIER_KEY,),
            )
            waiting = cur.fetchone()[0]
            result.peak_bytes = max(result.peak_bytes, usage())
            if waiting >= clients - len(result.errors) or kills.see(oom_counter()):
                break
            time.sleep(0.5)
    return waiting


def _restarted(marker: Callable[[], object], started_at: object, timeout: float = 180) -> bool:
    """True when the server went through crash recovery (``marker()`` changed) or is not
    back within ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return marker() != started_at
        except Exception:
            if time.monotonic() > deadline:
                return True
            time.sleep(1)
