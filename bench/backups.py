"""Backups: the real tool (dump + verify + checksum) against a bare ``pg_dump -Fc``,
restore with one job against parallel jobs, and the restore drill.

Everything runs the installed tool the way cron does:
``python3 APP_DIR/bin/pgsteady-backup {backup,restore,drill} --config
APP_DIR/etc/backup.json``. The bare dump is what a hand-written cron line does:
``docker exec -u postgres C pg_dump -Fc -d app > FILE`` into the same backup directory
(same disk), without verification, checksum or fsync.
"""

from __future__ import annotations

import os
import time
from typing import Any

from bench import stats
from bench.config import BenchConfig
from bench.stacks import Stack, database_size, exec_postgres, run, timed


def tool_argv(stack: Stack, command: str, *extra: str) -> list[str]:
    app = stack.app_dir
    return [
        "python3",
        str(app / "bin" / "pgsteady-backup"),
        command,
        "--config",
        str(app / "etc" / "backup.json"),
        *extra,
    ]


def bare_dump(stack: Stack, db: str = "app") -> tuple[float, int]:
    """Seconds and bytes of ``pg_dump -Fc`` through docker exec into the backup dir."""
    path = stack.app_dir / "backups" / "bench-bare.dump"
    started = time.monotonic()
    with open(path, "wb") as out:
        run(exec_postgres(stack, "pg_dump", "-Fc", "-d", db), stdout=out)
    seconds = time.monotonic() - started
    size = path.stat().st_size
    path.unlink()
    return seconds, size


def tool_backup(stack: Stack) -> tuple[float, int]:
    """Seconds of the tool's ``backup`` and the size of the dump it kept."""
    seconds, _ = timed(tool_argv(stack, "backup"))
    last = stack.app_dir / "backups" / "last"
    dumps = sorted(last.glob("app-*.dump"), key=lambda p: p.stat().st_mtime)
    return seconds, dumps[-1].stat().st_size if dumps else 0


def restore(stack: Stack, jobs: int) -> float:
    """Seconds of ``restore --jobs N`` of the newest backup into a new database (dropped)."""
    seconds, out = timed(tool_argv(stack, "restore", "--jobs", str(jobs)))
    target = out.strip().splitlines()[-1]
    stack.psql(f'DROP DATABASE "{target}"')
    return seconds


def run_backups(stack: Stack, config: BenchConfig, log: Any = print) -> dict[str, Any]:
    size = database_size(stack)
    ours, bare, our_bytes, bare_bytes = [], [], 0, 0
    for rnd in range(config.backup_rounds):
        seconds, our_bytes = tool_backup(stack)
        ours.append(seconds)
        seconds, bare_bytes = bare_dump(stack)
        bare.append(seconds)
        log(f"backup round {rnd + 1}: tool {ours[-1]:.1f} s, bare pg_dump {bare[-1]:.1f} s")
    restores: dict[int, list[float]] = {j: [] for j in config.restore_jobs}
    for rnd, jobs in stats.alternate([str(j) for j in config.restore_jobs], config.restore_rounds):
        restores[int(jobs)].append(restore(stack, int(jobs)))
        log(f"restore round {rnd + 1} --jobs {jobs}: {restores[int(jobs)][-1]:.1f} s")
    drills = []
    for rnd in range(config.drill_rounds):
        seconds, _ = timed(tool_argv(stack, "drill"))
        drills.append(seconds)
        log(f"drill {rnd + 1}: {seconds:.1f} s")
    one = config.restore_jobs[0]
    return {
        "database_bytes": size,
        "dump_bytes": {"tool": our_bytes, "bare": bare_bytes},
        "backup_seconds": {"tool": stats.summary(ours, 2), "bare": stats.summary(bare, 2)},
        "tool_vs_bare": stats.ratio_summary(ours, bare),
        "restore_seconds": {str(j): stats.summary(v, 2) for j, v in restores.items()},
        "restore_speedup": {
            f"{one}/{j}": stats.ratio_summary(restores[one], v)
            for j, v in restores.items()
            if j != one
        },
        "drill_seconds": stats.summary(drills, 2),
        "host_cpus": os.cpu_count(),
    }
