"""The ``restore`` subcommand: a verified backup restored atomically (steps below).

It checks a backup's sha256, then restores it; the target is a NEW database
(``DB_restore_YYYYmmdd_HHMMSS`` unless ``--target-db`` names another), or with
``--force`` an existing one, which it replaces atomically:

1. The backup lock (the one backups and drills take) is held for the whole operation.
2. With ``--force``, a verified safety backup of the target goes to ``backup_dir/safety/``.
3. The archive is restored into a fresh database with a unique temporary name
   (``pgsteady_restore_<hex>``), owned by the superuser, with CONNECT revoked from
   PUBLIC: the application cannot connect to it, nor see it half-filled. Rows are loaded
   as their table's owner, by a session that never logs in as a superuser, when that
   owner is not a superuser (see load.pg_restore()).
4. Only after pg_restore and ANALYZE succeeded, one transaction terminates the target's
   sessions, renames the target to ``pgsteady_replaced_<hex>``, renames the new database
   to the target's name and gives it the target's owner, database ACL (GRANT/REVOKE),
   connection limit and ``ALTER DATABASE/ROLE ... SET`` settings. For a new target they
   are copied from the database the backup was taken from, when it exists.
5. The replaced database is then dropped: the safety backup of step 2 is its copy.

A failure or a kill at any point before the swap leaves the target untouched; the next
restore (or drill) drops the ``pgsteady_restore_*`` / ``pgsteady_replaced_*`` databases a
killed run left. Every restore, successful or not, is recorded in status.json
(``last_restore`` and the newest entries of ``restores``).

``--jobs N`` copies the dump into the container's /tmp (the backup files are 0600 root,
unreadable by the container's postgres user) and runs ``pg_restore -j N`` on it; with
one job the dump is streamed through stdin.

Every superuser session runs with search_path pinned (docker.SAFE_PGOPTIONS) and
schema-qualified catalog names. Rows of tables owned by other roles are loaded in a
session that logs in as the NOSUPERUSER role ``pgsteady_restore`` (see load.pg_restore()).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import time

from .config import Config
from .databases import (
    REPLACED_PREFIX,
    RESERVED,
    TEMP_PREFIX,
    create_database,
    database_properties,
    drop_database,
)
from .docker import Docker
from .dump import dump_database
from .errors import BackupError
from .layout import DUMP_SUFFIX, SAFETY_DIR, newest_backup
from .load import RESTORE_ROLE, pause_point, pg_restore, restore_role_reset_sql
from .log import Log, now_utc
from .manifest import check_file
from .runs import Lock, read_status, update_status, with_failure_handling
from .source import require_primary
from .sql import literal, swap_sql

KEEP_RESTORES = 20


def resolve_backup(config: Config, db: str, backup: str) -> str:
    """The file named by ``--backup`` ('latest' = newest backup of ``db``)."""
    if backup == "latest":
        return newest_backup(config.backup_dir, db)
    path = os.path.abspath(backup)
    if not os.path.isfile(path):
        raise BackupError(f"backup file {path} does not exist")
    return os.path.realpath(path)


def drop_leftovers(docker: Docker, log: Log) -> None:
    """Drop the temporary databases of a restore that was killed (call with the lock held)."""
    patterns = [
        literal(prefix.replace("_", "\\_") + "%") for prefix in (TEMP_PREFIX, REPLACED_PREFIX)
    ]
    where = " OR ".join(f"datname LIKE {p}" for p in patterns)
    names = docker.psql("postgres", f"SELECT datname FROM pg_catalog.pg_database WHERE {where}")
    for name in names.split():
        log.info(f"dropping {name}, left by an interrupted restore")
        drop_database(docker, name)
    role = docker.psql(
        "postgres",
        "SELECT rolcanlogin OR EXISTS (SELECT FROM pg_catalog.pg_auth_members m "
        "WHERE m.member = r.oid) FROM pg_catalog.pg_roles r "
        f"WHERE r.rolname = {literal(RESTORE_ROLE)}",
    )
    if role == "t":
        log.info(f"taking the login and memberships of {RESTORE_ROLE} left by an interrupted run")
        docker.psql("postgres", ";\n".join(restore_role_reset_sql(docker)))


def swap(docker: Docker, log: Log, target: str, temp: str, replaced: str | None,
         props: dict) -> None:  # fmt: skip
    """Run the swap transaction, retrying while sessions reconnect to the old target."""
    for attempt in range(1, 6):
        try:
            docker.psql("postgres", swap_sql(target, temp, replaced, props), timeout=300)
            return
        except BackupError as exc:
            if "is being accessed by other users" not in str(exc) or attempt == 5:
                raise
            log.info(f"sessions reconnected to {target} during the swap; retrying")
            time.sleep(1)


def restore(
    config: Config,
    log: Log,
    db: str | None,
    backup: str,
    target: str | None,
    force: bool,
    jobs: int,
) -> dict:
    """Restore a backup atomically (see the module doc); raise BackupError on failure."""
    docker = Docker(config)
    source_db = db or (config.databases[0] if len(config.databases) == 1 else None)
    if source_db is None and backup == "latest":
        raise BackupError("--db is required with --backup latest when several are configured")
    path = resolve_backup(config, source_db or "", backup)
    started = time.monotonic()
    manifest = check_file(path)
    if manifest.get("kind") != "database":
        raise BackupError(f"{path} is not a database backup (kind {manifest.get('kind')})")
    log.info(f"sha256 of {path} verified")
    source_db = manifest["database"]
    stamp = now_utc().strftime("%Y%m%d_%H%M%S")
    target = target or f"{source_db[:40]}_restore_{stamp}"
    if (
        target in RESERVED
        or len(target.encode()) > 63
        or target.startswith((TEMP_PREFIX, REPLACED_PREFIX))
    ):
        raise BackupError(f"--target-db {target!r}: not a usable database name")
    docker.check_running()
    require_primary(docker, "restore")
    safety = None
    with Lock(config.backup_dir, config.lock_timeout):
        drop_leftovers(docker, log)
        props = database_properties(docker, target)
        if props is not None and not force:
            raise BackupError(
                f"database {target} exists; pass --force to restore over it "
                "(a safety backup of it is taken first)"
            )
        if props is not None:
            log.info(f"taking a safety backup of {target} before restoring over it")
            safety = dump_database(
                config,
                docker,
                target,
                os.path.join(config.backup_dir, SAFETY_DIR),
                now_utc(),
                name=f"{target}-pre-restore-{stamp}{DUMP_SUFFIX}",
            ).path
            log.info(f"safety backup {safety} verified")
        pause_point(log, "safety")
        if props is None:
            props = database_properties(docker, source_db) or {
                "owner": manifest.get("owner") or "postgres",
                "connlimit": -1,
                "acl": [],
                "settings": [],
            }
            owner_known = docker.psql(
                "postgres",
                f"SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = {literal(props['owner'])}",
            )
            if owner_known != "1":
                props["owner"] = "postgres"
        suffix = secrets.token_hex(6)
        temp = f"{TEMP_PREFIX}{suffix}"
        create_database(docker, temp, manifest)
        pause_point(log, "created")
        try:
            pg_restore(docker, path, temp, jobs)
            pause_point(log, "restored")
            docker.psql(temp, "ANALYZE")
            pause_point(log, "swap")
            replaced = f"{REPLACED_PREFIX}{suffix}" if safety else None
            swap(docker, log, target, temp, replaced, props)
        except BaseException as exc:
            with contextlib.suppress(BackupError):
                drop_database(docker, temp)
            if not isinstance(exc, BackupError):
                raise
            message = f"restore into {target} failed; {target} is unchanged: {exc}"
            raise BackupError(message) from None
        log.info(f"{target} now holds the restored data")
        pause_point(log, "swapped")
        if replaced:
            drop_database(docker, replaced)
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


def record_restore(config: Config, log: Log, entry: dict) -> None:
    """Record one restore in status.json: ``last_restore`` and the newest ``restores``."""
    history = read_status(config.backup_dir).get("restores")
    history = [e for e in history if isinstance(e, dict)] if isinstance(history, list) else []
    update_status(config, log, last_restore=entry, restores=[*history, entry][-KEEP_RESTORES:])


def cmd_restore(config: Config, log: Log, args: argparse.Namespace) -> int:
    def run() -> None:
        started = now_utc()
        entry = {
            "time": started.isoformat(),
            "backup": args.backup,
            "target": args.target_db,
            "force": bool(args.force),
        }
        try:
            result = restore(
                config, log, args.db, args.backup, args.target_db, args.force, args.jobs
            )
        except BaseException as exc:
            message = str(exc) if isinstance(exc, BackupError) else f"{type(exc).__name__}: {exc}"
            record_restore(config, log, {**entry, "ok": False, "error": message})
            raise
        record_restore(config, log, {**entry, **result, "ok": True})
        print(result["target"])

    return with_failure_handling(config, log, "restore", run)
