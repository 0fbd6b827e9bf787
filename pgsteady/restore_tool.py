"""pgsteady-backup restore and drill (stdlib-only, runs on the host; see backup_tool).

``restore`` checks a backup's sha256, then restores it into a NEW database
(``DB_restore_YYYYmmdd_HHMMSS`` unless ``--target-db`` names another). Restoring over an
existing database needs ``--force`` and first takes a verified safety backup of it into
``backup_dir/safety/``. ``--jobs N`` copies the dump into the container's /tmp (the
backup files are 0600 root, unreadable by the container's postgres user) and runs
``pg_restore -j N`` on it; with one job the dump is streamed through stdin.

``drill`` restores the newest backup of every database into a scratch database,
compares each table's row count with the manifest, drops the scratch database and
records the outcome under ``drill`` in status.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import time

if __package__:
    from . import backup_tool as bt
else:  # run from app_dir/bin, next to backup_tool.py
    import backup_tool as bt

RESERVED = ("template0", "template1")


def ident(name: str) -> str:
    """A quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def literal(value: str) -> str:
    """A SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def resolve_backup(config: bt.Config, db: str, backup: str) -> str:
    """The file named by ``--backup`` ('latest' = newest backup of ``db``)."""
    if backup == "latest":
        return bt.newest_backup(config.backup_dir, db)
    path = os.path.abspath(backup)
    if not os.path.isfile(path):
        raise bt.BackupError(f"backup file {path} does not exist")
    return os.path.realpath(path)


def database_exists(docker: bt.Docker, name: str) -> bool:
    found = docker.psql("postgres", f"SELECT 1 FROM pg_database WHERE datname = {literal(name)}")
    return found == "1"


def drop_database(docker: bt.Docker, name: str) -> None:
    """Drop ``name``, disconnecting its sessions."""
    docker.psql("postgres", f"DROP DATABASE IF EXISTS {ident(name)} WITH (FORCE)")


def create_database(docker: bt.Docker, name: str, manifest: dict) -> None:
    """Create an empty database from template0 with the backup's owner, encoding, locale."""
    options = [f"TEMPLATE template0 ENCODING {literal(manifest.get('encoding', 'UTF8'))}"]
    if manifest.get("lc_collate"):
        options.append(f"LC_COLLATE {literal(manifest['lc_collate'])}")
    if manifest.get("lc_ctype"):
        options.append(f"LC_CTYPE {literal(manifest['lc_ctype'])}")
    owner = manifest.get("owner")
    if (
        owner
        and docker.psql("postgres", f"SELECT 1 FROM pg_roles WHERE rolname = {literal(owner)}")
        == "1"
    ):
        options.append(f"OWNER {ident(owner)}")
    docker.psql("postgres", f"CREATE DATABASE {ident(name)} {' '.join(options)}")


def pg_restore(docker: bt.Docker, path: str, target: str, jobs: int) -> None:
    """Restore the archive at ``path`` (on the host) into the existing ``target``."""
    args = ["pg_restore", "--exit-on-error", "-d", target]
    if jobs <= 1:
        docker.run(*args, input_file=path, timeout=24 * 3600)
        return
    inside = f"/tmp/pgsteady-restore-{secrets.token_hex(6)}.dump"
    try:
        docker.run("sh", "-c", f"umask 077 && cat > {inside}", input_file=path, timeout=3600)
        docker.run(*args, "-j", str(jobs), inside, timeout=24 * 3600)
    finally:
        with contextlib.suppress(bt.BackupError):
            docker.run("rm", "-f", inside, timeout=60)


def table_counts(docker: bt.Docker, db: str) -> dict:
    """Exact row count of every table of ``db``."""
    return json.loads(docker.psql(db, bt.TABLE_COUNTS_SQL))["tables"]


def restore(
    config: bt.Config,
    log: bt.Log,
    db: str | None,
    backup: str,
    target: str | None,
    force: bool,
    jobs: int,
) -> dict:
    """Restore a backup; return a summary. Raises BackupError on any failure."""
    docker = bt.Docker(config)
    source_db = db or (config.databases[0] if len(config.databases) == 1 else None)
    if source_db is None and backup == "latest":
        raise bt.BackupError("--db is required with --backup latest when several are configured")
    path = resolve_backup(config, source_db or "", backup)
    started = time.monotonic()
    manifest = bt.check_file(path)
    if manifest.get("kind") != "database":
        raise bt.BackupError(f"{path} is not a database backup (kind {manifest.get('kind')})")
    log.info(f"sha256 of {path} verified")
    source_db = manifest["database"]
    stamp = bt.now_utc().strftime("%Y%m%d_%H%M%S")
    target = target or f"{source_db[:40]}_restore_{stamp}"
    if target in RESERVED or len(target.encode()) > 63:
        raise bt.BackupError(f"--target-db {target!r}: not a usable database name")
    docker.check_running()
    safety = None
    if database_exists(docker, target):
        if not force:
            raise bt.BackupError(
                f"database {target} exists; pass --force to restore over it "
                "(a safety backup of it is taken first)"
            )
        with bt.Lock(config.backup_dir, config.lock_timeout):
            log.info(f"taking a safety backup of {target} before restoring over it")
            made = bt.dump_database(
                config,
                docker,
                target,
                os.path.join(config.backup_dir, bt.SAFETY_DIR),
                bt.now_utc(),
                name=f"{target}-pre-restore-{stamp}{bt.DUMP_SUFFIX}",
            )
        safety = made.path
        log.info(f"safety backup {safety} verified; dropping {target}")
        drop_database(docker, target)
    create_database(docker, target, manifest)
    try:
        pg_restore(docker, path, target, jobs)
        docker.psql(target, "ANALYZE")
    except bt.BackupError as exc:
        drop_database(docker, target)
        hint = f"; the previous {target} is in {safety}" if safety else ""
        message = f"restore into {target} failed and it was dropped: {exc}{hint}"
        raise bt.BackupError(message) from None
    result = {
        "backup": path,
        "database": source_db,
        "target": target,
        "safety_backup": safety,
        "jobs": jobs,
        "duration_seconds": round(time.monotonic() - started, 3),
    }
    log.info(f"restored {path} into {target} in {result['duration_seconds']} s", to_syslog=True)
    return result


def drill_one(config: bt.Config, log: bt.Log, docker: bt.Docker, db: str, jobs: int) -> dict:
    """Restore the newest backup of ``db`` into a scratch database and compare row counts."""
    started = time.monotonic()
    path = bt.newest_backup(config.backup_dir, db)
    manifest = bt.check_file(path)
    scratch = f"{db[:40]}_drill_{bt.now_utc():%Y%m%d_%H%M%S}"
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


def drill(config: bt.Config, log: bt.Log, db: str | None, jobs: int) -> dict:
    """Drill every configured database (or one); return the status section."""
    started_at = bt.now_utc()
    started = time.monotonic()
    docker = bt.Docker(config)
    docker.check_running()
    results = {}
    errors = []
    for name in [db] if db else config.databases:
        try:
            results[name] = drill_one(config, log, docker, name, jobs)
        except bt.BackupError as exc:
            results[name] = {"ok": False, "error": str(exc)}
            errors.append(f"{name}: {exc}")
        if not results[name]["ok"] and "error" not in results[name]:
            errors.append(
                f"{name}: row counts differ from the manifest: {results[name]['mismatches']}"
            )
    try:
        bt.check_file(bt.newest_backup(config.backup_dir, bt.GLOBALS, bt.GLOBALS_SUFFIX))
    except bt.BackupError as exc:
        errors.append(str(exc))
    return {
        "time": started_at.isoformat(),
        "ok": not errors,
        "duration_seconds": round(time.monotonic() - started, 3),
        "databases": results,
        "error": "; ".join(errors) or None,
    }


def cmd_restore(config: bt.Config, log: bt.Log, args: argparse.Namespace) -> int:
    def run() -> None:
        result = restore(config, log, args.db, args.backup, args.target_db, args.force, args.jobs)
        print(result["target"])

    return bt.with_failure_handling(config, log, "restore", run)


def cmd_drill(config: bt.Config, log: bt.Log, args: argparse.Namespace) -> int:
    def run() -> None:
        try:
            with bt.Lock(config.backup_dir, config.lock_timeout):
                section = drill(config, log, args.db, args.jobs)
        except bt.BackupError as exc:
            section = {"time": bt.now_utc().isoformat(), "ok": False, "error": str(exc)}
        bt.update_status(config, log, drill=section)
        print(
            ("drill OK" if section["ok"] else "drill FAILED")
            + f" in {section.get('duration_seconds', 0)} s"
        )
        if not section["ok"]:
            raise bt.BackupError(section["error"])
        log.info(f"drill succeeded in {section['duration_seconds']} s", to_syslog=True)

    return bt.with_failure_handling(config, log, "drill", run)
