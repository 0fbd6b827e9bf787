"""The ``backup`` and ``verify`` subcommands: dump every database and the globals, link
the new files into the daily/weekly/monthly tiers, apply retention; re-check checksums."""

from __future__ import annotations

import argparse
import os
import time
from datetime import datetime

from . import retention
from .config import Config
from .docker import Docker
from .dump import Made, dump_database, dump_globals
from .errors import BackupError
from .layout import (
    DUMP_SUFFIX,
    GLOBALS,
    GLOBALS_SUFFIX,
    SAFETY_DIR,
    SIDECARS,
    TMP_PREFIX,
    clean_stale,
    disk_message,
    fsync_dir,
    newest_backup,
    remove_quietly,
)
from .log import Log, now_utc
from .manifest import check_file
from .runs import Lock, run_hook, update_status, with_failure_handling
from .source import STANDBY_ATTEMPTS, Plan, plan, read_role, recovery_conflict


def link_tiers(
    backup_dir: str, made: Made, db: str, suffix: str, when: datetime, policy: retention.Policy
) -> None:
    """Hard-link a new backup (and its sidecars) into daily/weekly/monthly; move ``latest``."""
    names = retention.names_for(db, when, suffix)
    for tier in retention.TIERS:
        directory = os.path.join(backup_dir, tier)
        if not policy.enabled(tier):
            continue
        if tier != "last":
            for ext in (*SIDECARS, ""):
                _replace_with(
                    directory, names[tier] + ext, lambda tmp, e=ext: os.link(made.path + e, tmp)
                )
        latest = retention.latest_name(db, suffix)
        _replace_with(directory, latest, lambda tmp, t=names[tier]: os.symlink(t, tmp))
        fsync_dir(directory)


def _replace_with(directory: str, name: str, make) -> None:
    """Create ``name`` atomically: ``make(tmp)`` then rename over any existing entry."""
    tmp = os.path.join(directory, TMP_PREFIX + name)
    remove_quietly(tmp)
    try:
        make(tmp)
        os.replace(tmp, os.path.join(directory, name))
    except OSError as exc:
        remove_quietly(tmp)
        raise BackupError(disk_message(exc, os.path.join(directory, name), "linking")) from None


def apply_retention(
    backup_dir: str, db: str, suffix: str, now: datetime, policy: retention.Policy, log: Log
) -> list[str]:
    """Delete expired backups of ``db`` (with sidecars) in every tier; return their paths."""
    removed = []
    for tier in retention.TIERS:
        directory = os.path.join(backup_dir, tier)
        names = os.listdir(directory)
        for name in retention.expired(tier, names, db, suffix, now, policy):
            for ext in ("", *SIDECARS):
                remove_quietly(os.path.join(directory, name + ext))
            removed.append(os.path.join(tier, name))
            log.info(f"retention: removed {tier}/{name}")
        latest = os.path.join(directory, retention.latest_name(db, suffix))
        if os.path.islink(latest) and not os.path.exists(latest):
            os.unlink(latest)
    return removed


def _dump(config: Config, docker: Docker, db: str, last: str, when: datetime, log: Log) -> Made:
    """One database's dump; on a standby, a dump cancelled by WAL replay is tried again."""
    for attempt in range(1, STANDBY_ATTEMPTS + 1):
        try:
            return dump_database(config, docker, db, last, when)
        except BackupError as exc:
            if attempt == STANDBY_ATTEMPTS or not recovery_conflict(str(exc)):
                raise
            log.warning(f"dump of {db} cancelled by replay on the standby; attempt {attempt + 1}")
    raise AssertionError("unreachable")


def backup(
    config: Config, log: Log, now: datetime | None = None, source: Plan | None = None
) -> dict:
    """Back up every configured database and the globals, then apply retention.

    Returns the ``last_success`` status section; raises BackupError on any failure
    (the caller records it). Retention runs only when everything succeeded.
    ``source``: the run's plan (:func:`pgsteady.backuptool.source.plan`), when known.
    """
    when = now or now_utc()
    started = time.monotonic()
    docker = Docker(config)
    last = os.path.join(config.backup_dir, "last")
    docker.check_running()
    made: list[tuple[Made, str, str]] = []
    where = f" ({source.source})" if source else ""
    for db in config.databases:
        log.info(f"backing up database {db} from {config.container}{where}")
        item = _dump(config, docker, db, last, when, log)
        link_tiers(config.backup_dir, item, db, DUMP_SUFFIX, when, config.policy)
        made.append((item, db, DUMP_SUFFIX))
        log.info(
            f"  {item.name}: {item.manifest['size']} bytes, "
            f"{len(item.manifest['tables'])} tables, {item.manifest['duration_seconds']} s"
        )
    version = made[0][0].manifest.get("server_version") if made else None
    item = dump_globals(config, docker, last, when, version)
    link_tiers(config.backup_dir, item, GLOBALS, GLOBALS_SUFFIX, when, config.policy)
    made.append((item, GLOBALS, GLOBALS_SUFFIX))
    # Retention only once every database and the globals are safely backed up.
    end = now_utc() if now is None else when
    for _, db, suffix in made:
        apply_retention(config.backup_dir, db, suffix, end, config.policy, log)
    section = {
        "time": when.isoformat(),
        "duration_seconds": round(time.monotonic() - started, 3),
        "size_bytes": sum(item.manifest["size"] for item, _, _ in made),
        "files": [os.path.join("last", item.name) for item, _, _ in made],
        "databases": {
            db: {
                "file": os.path.join("last", item.name),
                "size": item.manifest["size"],
                "sha256": item.manifest["sha256"],
                "tables": len(item.manifest.get("tables", {})),
            }
            for item, db, _ in made
        },
    }
    if source:
        section["source"] = source.source
    return section


def verify(config: Config, log: Log, db: str | None, path: str | None, every: bool) -> list[str]:
    """Re-check checksums of the newest (or the given, or every) backup; return problems."""
    if path:
        paths = [os.path.abspath(path)]
    elif every:
        paths = []
        seen = set()
        for tier in (*retention.TIERS, SAFETY_DIR):
            directory = os.path.join(config.backup_dir, tier)
            for name in sorted(os.listdir(directory)) if os.path.isdir(directory) else []:
                full = os.path.join(directory, name)
                if (
                    name.endswith((DUMP_SUFFIX, GLOBALS_SUFFIX))
                    and not os.path.islink(full)
                    and not name.startswith(TMP_PREFIX)
                ):
                    key = (os.stat(full).st_dev, os.stat(full).st_ino)
                    if key not in seen:
                        seen.add(key)
                        paths.append(full)
    else:
        wanted = (
            [(db, DUMP_SUFFIX)]
            if db
            else [*((name, DUMP_SUFFIX) for name in config.databases), (GLOBALS, GLOBALS_SUFFIX)]
        )
        paths = []
        for name, suffix in wanted:
            try:
                paths.append(newest_backup(config.backup_dir, name, suffix))
            except BackupError as exc:
                log.error(str(exc))
                return [str(exc)]
    problems = []
    for item in paths:
        try:
            check_file(item)
            log.info(f"OK {item}")
        except BackupError as exc:
            log.error(str(exc))
            problems.append(str(exc))
    return problems


def _skipped(config: Config, log: Log, started: datetime, source: Plan) -> None:
    """A cluster member that leaves this run's dump to another records why."""
    log.info(f"backup skipped: {source.note}", to_syslog=True)
    update_status(config, log, last_run={"time": started.isoformat(), "ok": True,
                                         "skipped": source.note})  # fmt: skip


def cmd_backup(config: Config, log: Log) -> int:
    def run() -> None:
        started = now_utc()
        try:
            source = None
            if config.cluster:
                Docker(config).check_running()
                source = plan(read_role(Docker(config)), True, config.max_replay_gap)
                if not source.dump:
                    return _skipped(config, log, started, source)
                if source.source != "standby":
                    log.warning(f"dumping on the {source.source}: it competes with the application")
            with Lock(config.backup_dir, config.lock_timeout):
                clean_stale(config.backup_dir, log)
                success = backup(config, log, source=source)
        except BaseException as exc:
            message = str(exc) if isinstance(exc, BackupError) else f"{type(exc).__name__}: {exc}"
            update_status(
                config,
                log,
                last_run={"time": started.isoformat(), "ok": False, "error": message},
                last_error={"time": started.isoformat(), "message": message},
            )
            raise
        update_status(
            config,
            log,
            last_success=success,
            last_run={
                "time": started.isoformat(),
                "ok": True,
                "duration_seconds": success["duration_seconds"],
            },
        )
        log.info(
            f"backup of {', '.join(config.databases)} + globals succeeded: "
            f"{success['size_bytes']} bytes in {success['duration_seconds']} s"
            + (f", dumped on the {success['source']}" if "source" in success else ""),
            to_syslog=True,
        )

    return with_failure_handling(config, log, "backup", run)


def cmd_verify(config: Config, log: Log, args: argparse.Namespace) -> int:
    problems = verify(config, log, args.db, args.backup, args.all)
    if problems:
        log.error(f"verify failed: {len(problems)} problem(s)")
        run_hook(config, log, "verify", "; ".join(problems))
        return 1
    log.info("verify: all checked backups match their sha256", to_syslog=True)
    return 0
