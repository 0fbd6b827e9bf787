"""The ``drill`` subcommand: restore the newest backup of every database into a scratch
database nobody else can connect to, compare row counts with the manifest, record it."""

from __future__ import annotations

import argparse
import json
import secrets
import time

from .config import Config
from .databases import TEMP_PREFIX, create_database, drop_database
from .docker import Docker
from .dump import META_SQL
from .errors import BackupError
from .layout import GLOBALS, GLOBALS_SUFFIX, newest_backup
from .load import pg_restore
from .log import Log, now_utc
from .manifest import check_file
from .restore import drop_leftovers
from .runs import Lock, update_status, with_failure_handling
from .source import require_primary


def table_counts(docker: Docker, db: str) -> dict:
    """Exact row count of every table of ``db``."""
    return json.loads(docker.psql(db, META_SQL))["tables"]


def drill_one(config: Config, log: Log, docker: Docker, db: str, jobs: int) -> dict:
    """Restore the newest backup of ``db`` into a scratch database and compare row counts."""
    started = time.monotonic()
    path = newest_backup(config.backup_dir, db)
    manifest = check_file(path)
    scratch = f"{TEMP_PREFIX}{secrets.token_hex(6)}"
    create_database(docker, scratch, manifest)
    try:
        pg_restore(docker, path, scratch, jobs)
        counts = table_counts(docker, scratch)
    finally:
        drop_database(docker, scratch)
    expected = manifest.get("tables", {})
    mismatches = {
        table: {"manifest": expected.get(table), "restored": counts.get(table)}
        for table in sorted(set(expected) | set(counts))
        if expected.get(table) != counts.get(table)
    }
    result = {
        "ok": not mismatches,
        "backup": path,
        "tables": len(counts),
        "rows": sum(counts.values()),
        "mismatches": mismatches,
        "duration_seconds": round(time.monotonic() - started, 3),
    }
    log.info(
        f"drill {db}: {result['tables']} tables, {result['rows']} rows, "
        f"{'OK' if result['ok'] else f'{len(mismatches)} MISMATCHED'} "
        f"in {result['duration_seconds']} s"
    )
    return result


def drill(config: Config, log: Log, db: str | None, jobs: int) -> dict:
    """Drill every configured database (or one); return the status section."""
    started_at = now_utc()
    started = time.monotonic()
    docker = Docker(config)
    docker.check_running()
    require_primary(docker, "the drill")
    drop_leftovers(docker, log)
    results = {}
    errors = []
    for name in [db] if db else config.databases:
        try:
            results[name] = drill_one(config, log, docker, name, jobs)
        except BackupError as exc:
            results[name] = {"ok": False, "error": str(exc)}
            errors.append(f"{name}: {exc}")
        if not results[name]["ok"] and "error" not in results[name]:
            errors.append(
                f"{name}: row counts differ from the manifest: {results[name]['mismatches']}"
            )
    try:
        check_file(newest_backup(config.backup_dir, GLOBALS, GLOBALS_SUFFIX))
    except BackupError as exc:
        errors.append(str(exc))
    return {
        "time": started_at.isoformat(),
        "ok": not errors,
        "duration_seconds": round(time.monotonic() - started, 3),
        "databases": results,
        "error": "; ".join(errors) or None,
    }


def cmd_drill(config: Config, log: Log, args: argparse.Namespace) -> int:
    def run() -> None:
        try:
            with Lock(config.backup_dir, config.lock_timeout):
                section = drill(config, log, args.db, args.jobs)
        except BackupError as exc:
            section = {"time": now_utc().isoformat(), "ok": False, "error": str(exc)}
        update_status(config, log, drill=section)
        print(
            ("drill OK" if section["ok"] else "drill FAILED")
            + f" in {section.get('duration_seconds', 0)} s"
        )
        if not section["ok"]:
            raise BackupError(section["error"])
        log.info(f"drill succeeded in {section['duration_seconds']} s", to_syslog=True)

    return with_failure_handling(config, log, "drill", run)
