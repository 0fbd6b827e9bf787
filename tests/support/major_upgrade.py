"""A major upgrade of a deployed stack under a continuous writer: the data, the writer,
the fingerprint that must survive, and the run that measures the write gap.

Used by tests/e2e/test_upgrade_major.py and by `make bench` (bench/upgrade.py).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg2

from tests.support.stack import DeployResult, Stack, docker

#: The label of upgrade-major's one-off servers (value old or new).
LABEL = "pgsteady.upgrade-major"


def volume_dir(name: str) -> Path | None:
    """The host directory of a docker volume, None when there is no such volume."""
    proc = docker("volume", "inspect", "-f", "{{.Mountpoint}}", name, check=False)
    return Path(proc.stdout.strip()) if proc.returncode == 0 else None


def upgrade_data(stack: Stack, version: int = 17) -> dict[str, Any]:
    """The inventory keys that ask for the upgrade of ``stack`` to ``version``."""
    return {
        "postgres_version": version,
        "postgres_data_volume": f"{stack.name}_pgdata{version}",
        "postgres_upgrade_from_volume": f"{stack.name}_pgdata",
    }


def load(stack: Stack, rows: int) -> None:
    """App-owned data: ``rows`` rows of ~100 bytes in ``items``, an empty ``notes``."""
    with stack.connect() as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE items (id bigint PRIMARY KEY, body text NOT NULL)")
        cur.execute(
            "INSERT INTO items SELECT g, md5(g::text) || repeat('x', 60) "
            "FROM generate_series(1, %s) g",
            (rows,),
        )
        cur.execute("CREATE TABLE notes (id bigserial PRIMARY KEY, note text NOT NULL)")
    conn.close()


def fingerprint(stack: Stack) -> tuple[int, str, int]:
    """Rows of ``items`` and the sum of their rows' md5 (60 bits each: any changed, lost or
    added row changes it; streamed, so millions of rows need no memory); rows of ``notes``."""
    with stack.connect() as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT count(*), sum(('x' || left(md5(id || ':' || body), 15))::bit(60)::bigint)"
            "::text FROM items"
        )
        count, digest = cur.fetchone()
        cur.execute("SELECT count(*) FROM notes")
        (notes,) = cur.fetchone()
    conn.close()
    return count, digest, notes


class Writer(threading.Thread):
    """Inserts a row into ``notes`` every 20 ms as the app over TLS, reconnecting after
    errors; keeps the times of the committed inserts."""

    def __init__(self, stack: Stack) -> None:
        super().__init__(daemon=True)
        self.stack, self.stop, self.ok = stack, threading.Event(), []

    def run(self) -> None:
        conn = None
        while not self.stop.is_set():
            try:
                if conn is None:
                    conn = self.stack.connect(timeout=1)
                    conn.autocommit = True
                with conn.cursor() as cur:
                    cur.execute("INSERT INTO notes (note) VALUES ('w')")
                self.ok.append(time.monotonic())
            except psycopg2.Error:
                conn = None
            time.sleep(0.02)

    def longest_gap(self) -> float:
        """Seconds of the longest wait between two committed inserts."""
        return max((b - a for a, b in zip(self.ok, self.ok[1:], strict=False)), default=0.0)


@dataclass
class Measured:
    """One upgrade deploy under the writer."""

    result: DeployResult
    writes: int
    gap_seconds: float
    deploy_seconds: float
    report: dict[str, Any]


def upgrade_under_writer(stack: Stack, version: int = 17) -> Measured:
    """Run the upgrade deploy while the writer writes; the ctl's report when it passed."""
    writer = Writer(stack)
    writer.start()
    time.sleep(2)
    started = time.monotonic()
    result = stack.deploy(**upgrade_data(stack, version))
    seconds = time.monotonic() - started
    time.sleep(3)
    writer.stop.set()
    writer.join()
    state = stack.app_dir / "state" / "upgrade-major.json"
    report = json.loads(state.read_text()) if result.returncode == 0 and state.exists() else {}
    return Measured(result, len(writer.ok), writer.longest_gap(), seconds, report)
