"""The backup directory: file names, tiers, and the file operations every run uses
(atomic writes, fsync, cleanup of what an interrupted run left)."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os

from . import retention
from .errors import BackupError
from .log import Log

DUMP_SUFFIX = ".dump"


GLOBALS = "globals"


GLOBALS_SUFFIX = ".sql"


SIDECARS = (".sha256", ".manifest.json")


TMP_PREFIX = ".tmp-"


STATUS_FILE = "status.json"


LOCK_FILE = ".lock"


SAFETY_DIR = "safety"


CHUNK = 1 << 20


def remove_quietly(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def disk_message(exc: OSError, path: str, what: str) -> str:
    """An operator's message for a write error, with the free space when the disk is full."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        try:
            st = os.statvfs(os.path.dirname(path) or ".")
            free = (
                f"{st.f_bavail * st.f_frsize / 1e6:.1f} MB free "
                f"of {st.f_blocks * st.f_frsize / 1e6:.1f} MB"
            )
        except OSError:
            free = "free space unknown"
        return f"{what}: no space left on the backup filesystem at {os.path.dirname(path)} ({free})"
    return f"{what}: cannot write {path}: {exc.strerror or exc}"


def write_atomic(path: str, data: bytes, mode: int = 0o600) -> None:
    """Write ``data`` to ``path`` via a fsynced temp file and rename."""
    directory, name = os.path.split(path)
    tmp = os.path.join(directory, f"{TMP_PREFIX}{name}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        remove_quietly(tmp)
        raise BackupError(disk_message(exc, path, f"writing {name}")) from None
    fsync_dir(directory)


def sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def ensure_dirs(backup_dir: str) -> None:
    """Create backup_dir and its tiers, all 0700."""
    for sub in ("", *retention.TIERS, SAFETY_DIR):
        path = os.path.join(backup_dir, sub)
        os.makedirs(path, mode=0o700, exist_ok=True)
        os.chmod(path, 0o700)


def clean_stale(backup_dir: str, log: Log) -> None:
    """Remove ``.tmp-*`` left by an interrupted run, and sidecars whose dump is gone."""
    for sub in ("", *retention.TIERS, SAFETY_DIR):
        directory = os.path.join(backup_dir, sub)
        if not os.path.isdir(directory):
            continue
        names = set(os.listdir(directory))
        for name in sorted(names):
            orphan = any(name.endswith(s) and name[: -len(s)] not in names for s in SIDECARS)
            if name.startswith(TMP_PREFIX) or (sub and orphan):
                log.info(f"removing stale {os.path.join(directory, name)}")
                remove_quietly(os.path.join(directory, name))


def newest_backup(backup_dir: str, db: str, suffix: str = DUMP_SUFFIX) -> str:
    """Path of the newest published backup of ``db`` (via last/DB-latest)."""
    link = os.path.join(backup_dir, "last", retention.latest_name(db, suffix))
    if os.path.exists(link):
        return os.path.realpath(link)
    names = (
        sorted(
            n
            for n in os.listdir(os.path.join(backup_dir, "last"))
            if retention.parse_stamp("last", n, db, suffix)
        )
        if os.path.isdir(os.path.join(backup_dir, "last"))
        else []
    )
    if not names:
        raise BackupError(f"no backup of {db} in {backup_dir}/last")
    return os.path.join(backup_dir, "last", names[-1])
