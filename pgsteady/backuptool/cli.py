"""pgsteady-backup's command line: ``backup``, ``verify``, ``restore``, ``drill``."""

from __future__ import annotations

import argparse
import os
import signal

from .backup import cmd_backup, cmd_verify
from .config import load_config
from .drill import cmd_drill
from .errors import BackupError
from .layout import ensure_dirs
from .log import Log
from .restore import cmd_restore

DESCRIPTION = "pgsteady-backup: verified pg_dump backups of the Postgres container, with retention."


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pgsteady-backup", description=DESCRIPTION)
    sub = p.add_subparsers(dest="command", required=True)
    for name, text in (
        ("backup", "dump every database and the globals, verify, apply retention"),
        ("verify", "re-check the sha256 of the newest (or a given) backup"),
        ("restore", "restore a backup into a new database (or over one with --force)"),
        ("drill", "restore the newest backups into scratch databases and compare row counts"),
    ):
        s = sub.add_parser(name, help=text, description=text)
        s.add_argument("--config", required=True, help="path of backup.json")
        if name in ("verify", "restore", "drill"):
            s.add_argument("--db", help="database (default: every configured one)")
        if name in ("verify", "restore"):
            s.add_argument(
                "--backup",
                default=None if name == "verify" else "latest",
                help="'latest' or a backup file path",
            )
        if name == "verify":
            s.add_argument("--all", action="store_true", help="check every stored backup")
        if name == "restore":
            s.add_argument("--target-db", help="default: a new DB_restore_YYYYmmdd_HHMMSS")
            s.add_argument(
                "--force",
                action="store_true",
                help="restore over an existing target (takes a safety backup first)",
            )
        if name in ("restore", "drill"):
            s.add_argument("--jobs", type=int, default=1, help="parallel pg_restore jobs")
    return p


def _terminated(signum: int, frame: object) -> None:
    raise BackupError(f"interrupted by signal {signal.Signals(signum).name}")


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    log = Log()
    os.umask(0o077)
    # SIGTERM (systemd stop, kill) unwinds like a failure: temp files go, status records it.
    signal.signal(signal.SIGTERM, _terminated)
    try:
        config = load_config(args.config)
        if args.command != "verify":  # verify only reads: it must not repair modes it checks
            ensure_dirs(config.backup_dir)
    except (BackupError, OSError) as exc:
        log.error(f"{args.command} failed: {exc}")
        return 2
    if args.command == "backup":
        return cmd_backup(config, log)
    if args.command == "verify":
        return cmd_verify(config, log, args)
    if args.command == "restore":
        return cmd_restore(config, log, args)
    return cmd_drill(config, log, args)
