"""The ``pitr`` part's loss window: how many seconds of acknowledged writes a lost database
host takes with it when the replacement is restored from the pgBackRest repository.

A writer commits one numbered row per transaction, 100 ms apart, and prints each row's
commit time as soon as the commit has returned; after a random time the server's container
is killed and removed with its volume (the host's data and its archive-push spool gone; the
repository, off-host in production, kept). The repository's newest backup and archived WAL
are restored into an empty volume and the server started: it replays to the end of the
archive and promotes. The loss is the time from the newest row it holds to the last row the
writer saw acknowledged; every row up to the newest must be there (no hole). The restored
server archives on its own timeline and is the next trial's source, like a replaced host;
it checkpoints once out of recovery, as ``pgsteady-ctl`` does after every start.

Bound: WAL is switched at the latest every ``archive_timeout`` and pushed asynchronously,
so the loss is at most about ``archive_timeout`` plus the push's latency.
"""

from __future__ import annotations

import random
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from bench import stats
from bench.container_exec import DOCKER, pg, psql
from pgsteady.backup import pgbackrest

GAP = 0.1  # seconds between the writer's commits
MAX_ROWS = 100_000


def writer_script(table: str, rows: int, gap: float = GAP) -> str:
    """psql input: row ``i`` committed, then its commit time printed as ``i|epoch``."""
    lines = []
    for i in range(1, rows + 1):
        lines += [
            f"INSERT INTO {table} VALUES ({i}, clock_timestamp());",
            f"SELECT {i}, extract(epoch FROM clock_timestamp());",
            f"SELECT pg_sleep({gap});",
        ]
    return "\n".join(lines) + "\n"


def loss_seconds(acknowledged: dict[int, float], restored: Sequence[int], baseline: float) -> float:
    """Seconds of acknowledged writes lost: from the newest restored row's commit (or
    ``baseline``, the archived start, when none came back) to the last acknowledged one.

    ``restored`` must be 1..m without a hole; a row restored whose acknowledgement the
    writer had not read yet (committed, the reply lost with the host) loses nothing."""
    if list(restored) != list(range(1, len(restored) + 1)):
        raise ValueError(f"the restored rows have a hole: {list(restored)[:20]}...")
    if not acknowledged:
        raise ValueError("the writer saw no commit acknowledged before the host was lost")
    last = max(acknowledged)
    newest = len(restored)
    if newest >= last:
        return 0.0
    since = acknowledged.get(newest, baseline) if newest else baseline
    return max(0.0, acknowledged[last] - since)


def kill_after(archive_timeout: float, rng: random.Random) -> float:
    """When to lose the host: 10 s of writes, then a random point of one archive_timeout
    period, so the loss falls anywhere between two WAL switches."""
    return 10.0 + rng.uniform(0.0, archive_timeout)


class Writer:
    """The psql writer in the server's container; records each acknowledged row as its
    line arrives (psql flushes each query's output)."""

    def __init__(self, argv: list[str], script: str) -> None:
        self.acknowledged: dict[int, float] = {}
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            bufsize=1,
        )
        self._feed = threading.Thread(target=self._write, args=(script,), daemon=True)
        self._read = threading.Thread(target=self._reader, daemon=True)
        self._feed.start()
        self._read.start()

    def _write(self, script: str) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(script)
            self.proc.stdin.close()
        except (BrokenPipeError, OSError, ValueError):
            pass  # the host was lost mid-script

    def _reader(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            row, _, epoch = line.strip().partition("|")
            if row.isdigit() and epoch:
                self.acknowledged[int(row)] = float(epoch)

    def snapshot(self) -> dict[int, float]:
        """The rows acknowledged so far (a copy: read it the instant the host is lost)."""
        return dict(self.acknowledged)

    def finish(self) -> None:
        """Wait for psql to notice its server is gone."""
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._read.join(timeout=10)


def summarise(trials: list[dict[str, Any]], archive_timeout: float) -> dict[str, Any]:
    """The trials and their loss figures (max is the headline: the worst case seen)."""
    losses = [t["lost_seconds"] for t in trials]
    return {
        "trials": trials,
        "n": len(trials),
        "writer_gap_seconds": GAP,
        "archive_timeout_seconds": archive_timeout,
        "lost_seconds": stats.summary(losses, 2),
        "max_lost_seconds": round(max(losses), 2),
    }


def measure(
    ws: Any,
    source: str,
    trials: int,
    archive_timeout: float,
    log: Callable[[str], None],
    rng: random.Random | None = None,
) -> dict[str, Any]:
    """``trials`` host losses, each restored from the repository of ``ws`` (bench.pitr's
    Workspace); ``source`` is the archiving server to lose first."""
    rng = rng or random.Random(random.SystemRandom().randrange(2**32))
    done: list[dict[str, Any]] = []
    for k in range(1, trials + 1):
        table = f"bench_loss{k}"
        psql(source, f"CREATE TABLE {table} (id int PRIMARY KEY, at timestamptz NOT NULL)")
        pg(source, *pgbackrest.command(ws.s, "check"))  # the table is in the archive
        baseline = float(psql(source, "SELECT extract(epoch FROM clock_timestamp())"))
        wait = kill_after(archive_timeout, rng)
        rows = min(MAX_ROWS, int(wait / GAP) * 4 + 100)
        argv = [DOCKER, "exec", "-i", "-u", "postgres", source, "psql", "-XAtq", "-v",
                "ON_ERROR_STOP=1"]  # fmt: skip
        writer = Writer(argv, writer_script(table, rows))
        time.sleep(wait)
        subprocess.run([DOCKER, "kill", source], capture_output=True, check=False)
        acknowledged = writer.snapshot()
        writer.finish()
        ws.remove(source)  # the host's volume and spool: gone
        restored = ws.name(f"replaced{k}")
        started = time.monotonic()
        ws.restore(restored)
        ws.start(restored, archiving=True)
        ws.promoted(restored)
        ready_s = time.monotonic() - started
        # what pgsteady-ctl does once per start (at once here; on a host within a minute):
        # the end-of-recovery checkpoint ran inside recovery, and without a later one
        # archive_timeout would not switch WAL
        psql(restored, "CHECKPOINT")
        found = [int(i) for i in psql(restored, f"SELECT id FROM {table} ORDER BY id").split()]
        lost = loss_seconds(acknowledged, found, baseline)
        done.append({
            "written_seconds": round(wait, 1),
            "acknowledged": max(acknowledged),
            "restored": len(found),
            "lost_seconds": round(lost, 2),
            "restore_to_ready_seconds": round(ready_s, 2),
        })  # fmt: skip
        log(f"pitr host loss {k}/{trials}: {max(acknowledged)} rows acknowledged, "
            f"{len(found)} restored: {lost:.1f} s lost")  # fmt: skip
        source = restored
    return summarise(done, archive_timeout)
