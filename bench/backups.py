"""Backups: the real tool (dump + verify + checksum) against a bare ``pg_dump -Fc``,
restore with one job against parallel jobs, and the restore drill.

Everything runs the installed tool the way cron does:
``python3 APP_DIR/bin/pgsteady-backup {backup,restore,drill} --config
APP_DIR/etc/backup.json``. The bare dump is what a hand-written cron line does:
``docker exec -u postgres C pg_dump -Fc -d app > FILE`` into the same backup directory
(same disk), without verification, checksum or fsync. Where the tool compresses with
another method than pg_dump's default gzip (zstd on Postgres 16+), the same bare line
with that ``--compress`` runs too: the tool against it is the cost of the verification,
the row counts and the bookkeeping alone.
"""

from __future__ import annotations

import json
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


def bare_dump(stack: Stack, method: str = "gzip", db: str = "app") -> tuple[float, int]:
    """Seconds and bytes of ``pg_dump -Fc`` (``--compress=method`` unless gzip, its
    default) through docker exec into the backup dir."""
    path = stack.app_dir / "backups" / f"bench-bare-{method}.dump"
    compress = [] if method == "gzip" else [f"--compress={method}"]
    started = time.monotonic()
    with open(path, "wb") as out:
        run(exec_postgres(stack, "pg_dump", "-Fc", *compress, "-d", db), stdout=out)
    seconds = time.monotonic() - started
    size = path.stat().st_size
    path.unlink()
    return seconds, size


def tool_backup(stack: Stack) -> tuple[float, int, str]:
    """Seconds of the tool's ``backup``, the size of the dump it kept and its compression."""
    seconds, _ = timed(tool_argv(stack, "backup"))
    last = stack.app_dir / "backups" / "last"
    dumps = sorted(last.glob("app-*.dump"), key=lambda p: p.stat().st_mtime)
    if not dumps:
        return seconds, 0, "gzip"
    newest = dumps[-1].resolve()  # app-latest.dump is a symlink to it
    manifest = json.loads(newest.with_name(newest.name + ".manifest.json").read_text())
    return seconds, newest.stat().st_size, manifest.get("compression", "gzip")


def restore(stack: Stack, jobs: int) -> float:
    """Seconds of ``restore --jobs N`` of the newest backup into a new database (dropped)."""
    seconds, out = timed(tool_argv(stack, "restore", "--jobs", str(jobs)))
    target = out.strip().splitlines()[-1]
    stack.psql(f'DROP DATABASE "{target}"')
    return seconds


def run_backups(stack: Stack, config: BenchConfig, log: Any = print) -> dict[str, Any]:
    size = database_size(stack)
    # a warm-up backup (page cache, first-run directories) that tells which compression
    # the tool picks on this server
    _, _, method = tool_backup(stack)
    contenders = ["tool", "bare"] + (["bare_same"] if method != "gzip" else [])
    seconds: dict[str, list[float]] = {c: [] for c in contenders}
    sizes: dict[str, int] = {}
    for rnd in range(config.backup_rounds):
        # alternated: the order flips every round, so drifting load falls on both sides
        for who in contenders if rnd % 2 == 0 else contenders[::-1]:
            if who == "tool":
                took, sizes[who], _ = tool_backup(stack)
            else:
                took, sizes[who] = bare_dump(stack, method if who == "bare_same" else "gzip")
            seconds[who].append(took)
        log(f"backup round {rnd + 1}: " + ", ".join(
            f"{who} {seconds[who][-1]:.1f} s" for who in contenders))  # fmt: skip
    restores: dict[int, list[float]] = {j: [] for j in config.restore_jobs}
    for rnd, jobs in stats.alternate([str(j) for j in config.restore_jobs], config.restore_rounds):
        restores[int(jobs)].append(restore(stack, int(jobs)))
        log(f"restore round {rnd + 1} --jobs {jobs}: {restores[int(jobs)][-1]:.1f} s")
    drills = []
    for rnd in range(config.drill_rounds):
        took, _ = timed(tool_argv(stack, "drill"))
        drills.append(took)
        log(f"drill {rnd + 1}: {took:.1f} s")
    one = config.restore_jobs[0]
    result = {
        "database_bytes": size,
        "compression": {"tool": method, "bare": "gzip"},
        "dump_bytes": sizes,
        "backup_seconds": {who: stats.summary(v, 2) for who, v in seconds.items()},
        "tool_vs_bare": stats.ratio_summary(seconds["tool"], seconds["bare"]),
        "restore_seconds": {str(j): stats.summary(v, 2) for j, v in restores.items()},
        "restore_speedup": {
            f"{one}/{j}": stats.ratio_summary(restores[one], v)
            for j, v in restores.items()
            if j != one
        },
        "drill_seconds": stats.summary(drills, 2),
        "host_cpus": os.cpu_count(),
    }
    if "bare_same" in seconds:
        result["tool_vs_bare_same"] = stats.ratio_summary(seconds["tool"], seconds["bare_same"])
    return result
