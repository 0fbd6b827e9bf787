"""What every run shares: the lock on the backup directory, status.json, and the
failure hook (``on_failure_command``)."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import time

from .config import Config
from .errors import BackupError
from .layout import LOCK_FILE, STATUS_FILE, write_atomic
from .log import Log, now_utc


def read_status(backup_dir: str) -> dict:
    try:
        with open(os.path.join(backup_dir, STATUS_FILE), encoding="utf-8") as fh:
            data = json.load(fh)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def update_status(config: Config, log: Log, **sections: object) -> None:
    """Merge ``sections`` into backup_dir/status.json (atomic); a failure is only logged."""
    status = read_status(config.backup_dir)
    status.update(sections, compose_project=config.compose_project, container=config.container)
    try:
        write_atomic(
            os.path.join(config.backup_dir, STATUS_FILE),
            json.dumps(status, indent=2, sort_keys=True).encode() + b"\n",
        )
    except BackupError as exc:
        log.error(f"cannot record status: {exc}")


class Lock:
    """An exclusive flock on backup_dir/.lock, waited for up to ``timeout`` seconds."""

    def __init__(self, backup_dir: str, timeout: float) -> None:
        self.path = os.path.join(backup_dir, LOCK_FILE)
        self.timeout = timeout
        self.fd = -1

    def __enter__(self) -> Lock:
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return self
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(self.fd)
                    raise BackupError(
                        f"another pgsteady-backup run holds {self.path} "
                        f"(waited {self.timeout:.0f} s)"
                    ) from None
                time.sleep(1)

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)


def run_hook(config: Config, log: Log, subcommand: str, error: str) -> None:
    """Run on_failure_command with the failure described in PGSTEADY_* variables."""
    if not config.on_failure_command:
        return
    env = dict(
        os.environ,
        PGSTEADY_EVENT=f"{subcommand}_failed",
        PGSTEADY_SUBCOMMAND=subcommand,
        PGSTEADY_ERROR=error,
        PGSTEADY_COMPOSE_PROJECT=config.compose_project,
        PGSTEADY_CONTAINER=config.container,
        PGSTEADY_BACKUP_DIR=config.backup_dir,
        PGSTEADY_STATUS_FILE=os.path.join(config.backup_dir, STATUS_FILE),
        PGSTEADY_TIME=now_utc().isoformat(),
    )
    try:
        proc = subprocess.run(
            config.on_failure_command, shell=True, env=env, timeout=300, stdin=subprocess.DEVNULL
        )
        if proc.returncode != 0:
            log.error(f"on_failure_command exited {proc.returncode}")
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.error(f"on_failure_command failed: {exc}")


def with_failure_handling(config: Config, log: Log, subcommand: str, fn) -> int:
    try:
        fn()
        return 0
    except BackupError as exc:
        message = str(exc)
    except Exception as exc:  # an unexpected failure still gets recorded and reported
        message = f"unexpected {type(exc).__name__}: {exc}"
    log.error(f"{subcommand} failed: {message}")
    run_hook(config, log, subcommand, message)
    return 1
