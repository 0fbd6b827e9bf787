"""pgsteady-backup: verified pg_dump backups of the Postgres container, with retention.

Runs ON the database host, from cron or a systemd timer, as root. The host has no
virtualenv, so this module and its siblings use only the Python 3 standard library and
stay compatible with Python 3.8. The deploy installs, all in ``APP_DIR/bin/``::

    pgsteady-backup   (files/backup/pgsteady-backup: the entry point)
    backup_tool.py    (this file: config, backup, verify, status, CLI)
    restore_tool.py   (restore and drill)
    retention.py      (naming and retention, shared with the deploy's tests)

and it is run as ``python3 APP_DIR/bin/pgsteady-backup SUBCOMMAND --config
APP_DIR/etc/backup.json``. In the pgsteady package the same modules are imported
as ``pgsteady.backup_tool`` etc.; run as files they import each other from their own
directory, so the retention logic exists once.

Every database is dumped with ``pg_dump -Fc`` through ``docker exec -u postgres`` (peer
authentication, no password) inside a REPEATABLE READ snapshot that also yields the
exact row count of every table for the manifest. A dump is written to a ``.tmp-`` name,
fsynced, verified (non-empty, and ``pg_restore`` reads the whole archive: config
``verify: "full"``, the default; ``"list"`` only reads its table of contents, which does
not notice a truncated file), checksummed and only then renamed: a partial file never
looks like a backup.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import fcntl
import hashlib
import json
import os
import signal
import subprocess
import sys
import syslog
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

if __package__:
    from . import retention
else:  # run as a file on the host: retention.py lies next to this file
    sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))
    import retention

DUMP_SUFFIX = ".dump"
GLOBALS = "globals"
GLOBALS_SUFFIX = ".sql"
SIDECARS = (".sha256", ".manifest.json")
TMP_PREFIX = ".tmp-"
STATUS_FILE = "status.json"
LOCK_FILE = ".lock"
SAFETY_DIR = "safety"
CHUNK = 1 << 20
UTC = timezone.utc  # noqa: UP017 - the host may run Python < 3.11


class BackupError(Exception):
    """A failure with a message fit for an operator."""


# --- configuration ---------------------------------------------------------------------


@dataclass
class Config:
    """The JSON config the deploy writes to APP_DIR/etc/backup.json.

    Required: ``container`` (name), ``databases`` (list of names), ``backup_dir`` (host
    path). Optional: ``keep_days`` (>= 1), ``keep_weeks``, ``keep_months`` (>= 0; 0 turns
    the tier off), ``keep_last_hours`` (>= 1), ``on_failure_command`` (shell command, run
    with PGSTEADY_* variables describing the failure), ``docker`` (client path),
    ``compose_project`` (for messages), ``verify`` ("full": pg_restore reads the whole
    archive, or "list": only its table of contents), ``lock_timeout`` (seconds to wait
    for a concurrent run). Unknown keys are errors.
    """

    container: str
    databases: list[str]
    backup_dir: str
    keep_days: int = 7
    keep_weeks: int = 4
    keep_months: int = 6
    keep_last_hours: int = 24
    on_failure_command: str | None = None
    docker: str = "docker"
    compose_project: str = "pgsteady"
    verify: str = "full"
    lock_timeout: int = 1800
    policy: retention.Policy = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.policy = retention.validate_policy(
            self.keep_days, self.keep_weeks, self.keep_months, self.keep_last_hours, prefix=""
        )


_REQUIRED = ("container", "databases", "backup_dir")


def config_from_dict(data: dict) -> Config:
    """Validate a config mapping; every problem is reported in one BackupError."""
    if not isinstance(data, dict):
        raise BackupError("config: expected a JSON object")
    known = set(Config.__dataclass_fields__) - {"policy"}
    errors = [
        f"{key}: unknown key (known: {', '.join(sorted(known))})"
        for key in data
        if key not in known
    ]
    errors += [f"{key}: missing" for key in _REQUIRED if key not in data]
    dbs = data.get("databases")
    if "databases" in data and (
        not isinstance(dbs, list)
        or not dbs
        or not all(isinstance(d, str) and d and "/" not in d and d != GLOBALS for d in dbs)
    ):
        errors.append(f"databases: {dbs!r}; expected a non-empty list of database names")
    for key in ("container", "backup_dir", "docker", "compose_project"):
        if key in data and (not isinstance(data[key], str) or not data[key]):
            errors.append(f"{key}: {data[key]!r}; expected a non-empty string")
    if data.get("verify", "full") not in ("list", "full"):
        errors.append(f"verify: {data['verify']!r}; expected 'list' or 'full'")
    timeout = data.get("lock_timeout", 0)
    if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout < 0:
        errors.append(f"lock_timeout: {timeout!r}; expected an integer >= 0 (seconds)")
    command = data.get("on_failure_command")
    if command is not None and not isinstance(command, str):
        errors.append(f"on_failure_command: {command!r}; expected a string or null")
    keeps = ("keep_days", "keep_weeks", "keep_months", "keep_last_hours")
    try:
        retention.validate_policy(**{k: data[k] for k in keeps if k in data}, prefix="")
    except ValueError as exc:
        errors.append(str(exc))
    if errors:
        raise BackupError("invalid config: " + "; ".join(errors))
    try:
        return Config(**data)
    except (TypeError, ValueError) as exc:
        raise BackupError(f"invalid config: {exc}") from None


def load_config(path: str) -> Config:
    """Read and validate the JSON config at ``path``."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError) as exc:
        raise BackupError(f"cannot read config {path}: {exc}") from None
    return config_from_dict(data)


# --- logging ---------------------------------------------------------------------------


class Log:
    """Progress to stderr; the run's outcome also to syslog."""

    def __init__(self, ident: str = "pgsteady-backup") -> None:
        syslog.openlog(ident, syslog.LOG_PID, syslog.LOG_DAEMON)

    def info(self, message: str, to_syslog: bool = False) -> None:
        print(f"{datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ} {message}", file=sys.stderr, flush=True)
        if to_syslog:
            syslog.syslog(syslog.LOG_INFO, message)

    def error(self, message: str) -> None:
        print(
            f"{datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ} ERROR {message}", file=sys.stderr, flush=True
        )
        syslog.syslog(syslog.LOG_ERR, message)


# --- docker ----------------------------------------------------------------------------


#: Every session the tool opens runs as the superuser: it resolves names in pg_catalog
#: (then pg_temp, which is never searched for functions or operators) and never in a
#: schema the application role can create objects in.
SAFE_PGOPTIONS = "-c search_path=pg_catalog,pg_temp"


class Docker:
    """``docker exec -u postgres`` into the Postgres container (search_path pinned)."""

    def __init__(self, config: Config) -> None:
        self.docker = config.docker
        self.container = config.container
        self.project = config.compose_project

    def exec_args(self, *command: str, stdin: bool = False) -> list[str]:
        interactive = ["-i"] if stdin else []
        return [
            self.docker, "exec", *interactive, "-e", f"PGOPTIONS={SAFE_PGOPTIONS}",
            "-u", "postgres", self.container, *command,
        ]  # fmt: skip

    def check_running(self) -> None:
        """Raise a BackupError naming the container unless it is running."""
        try:
            proc = subprocess.run(
                [self.docker, "inspect", "-f", "{{.State.Status}}", self.container],
                capture_output=True,
                text=True,
                timeout=60,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise BackupError(f"cannot run docker ({self.docker}): {exc}") from None
        if proc.returncode != 0:
            raise BackupError(
                f"container {self.container} not found (compose project {self.project}): "
                f"{proc.stderr.strip()}"
            )
        state = proc.stdout.strip()
        if state != "running":
            raise BackupError(
                f"container {self.container} is not running (state: {state}); start it "
                f"(docker-compose -p {self.project} up -d, in the app directory)"
            )

    def run(self, *command: str, input_file: str | None = None, timeout: float = 3600) -> str:
        """Run a command in the container; return stdout or raise with its stderr."""
        stdin = open(input_file, "rb") if input_file else subprocess.DEVNULL  # noqa: SIM115
        try:
            proc = subprocess.run(
                self.exec_args(*command, stdin=input_file is not None),
                stdin=stdin,
                capture_output=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            raise BackupError(f"{command[0]} timed out after {timeout:.0f} s") from None
        finally:
            if input_file:
                stdin.close()
        if proc.returncode != 0:
            err = proc.stderr.decode(errors="replace").strip()
            raise BackupError(f"{command[0]} failed in {self.container}: {err}")
        return proc.stdout.decode(errors="replace")

    def psql(self, db: str, sql: str, timeout: float = 3600) -> str:
        """Run one SQL command as postgres in ``db``; return its unaligned output."""
        return self.run(
            "psql", "-XAtq", "-v", "ON_ERROR_STOP=1", "-d", db, "-c", sql, timeout=timeout
        ).strip()

    def stream_to(self, command: list[str], path: str, what: str) -> tuple[int, str]:
        """Write a container command's stdout to a new 0600 file; return (size, sha256).

        The file is fsynced; on failure it is removed and a BackupError is raised.
        """
        digest = hashlib.sha256()
        size = 0
        with tempfile.TemporaryFile() as err:
            proc = subprocess.Popen(self.exec_args(*command), stdout=subprocess.PIPE, stderr=err)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as out:
                    for chunk in iter(lambda: proc.stdout.read(CHUNK), b""):
                        out.write(chunk)
                        digest.update(chunk)
                        size += len(chunk)
                    out.flush()
                    os.fsync(out.fileno())
            except BaseException as exc:
                proc.kill()
                proc.wait()
                message = disk_message(exc, path, what) if isinstance(exc, OSError) else ""
                remove_quietly(path)
                if message:
                    raise BackupError(message) from None
                raise
            code = proc.wait()
            if code != 0:
                remove_quietly(path)
                err.seek(0)
                message = err.read().decode(errors="replace").strip()
                raise BackupError(f"{what} failed in {self.container} (exit {code}): {message}")
        return size, digest.hexdigest()


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


# --- files -----------------------------------------------------------------------------


def remove_quietly(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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


def read_sidecars(path: str) -> tuple[str, dict]:
    """The recorded sha256 and manifest of a backup file."""
    try:
        with open(path + ".sha256", encoding="utf-8") as fh:
            recorded = fh.read().split()[0]
        with open(path + ".manifest.json", encoding="utf-8") as fh:
            manifest = json.load(fh)
    except (OSError, ValueError, IndexError) as exc:
        raise BackupError(f"{path}: missing or unreadable checksum/manifest: {exc}") from None
    return recorded, manifest


def check_file(path: str) -> dict:
    """Re-hash a backup; raise BackupError unless it matches its .sha256 and manifest."""
    recorded, manifest = read_sidecars(path)
    try:
        size = os.path.getsize(path)
        actual = sha256_file(path)
    except OSError as exc:
        raise BackupError(f"{path}: cannot read: {exc.strerror}") from None
    if actual != recorded:
        raise BackupError(
            f"{path}: sha256 mismatch (recorded {recorded}, actual {actual}): "
            "the backup is corrupted"
        )
    if size != manifest.get("size"):
        raise BackupError(f"{path}: size {size} differs from the manifest's {manifest.get('size')}")
    return manifest


# --- dumping ---------------------------------------------------------------------------

_META_SQL = """
SELECT pg_catalog.json_build_object(
  'server_version', pg_catalog.current_setting('server_version'),
  'server_version_num', pg_catalog.current_setting('server_version_num')::int,
  'owner', pg_catalog.pg_get_userbyid(d.datdba),
  'encoding', pg_catalog.pg_encoding_to_char(d.encoding),
  'lc_collate', d.datcollate,
  'lc_ctype', d.datctype,
  'tables', (
    SELECT coalesce(pg_catalog.json_object_agg(t.name, t.rows ORDER BY t.name), '{}'::json)
    FROM (
      SELECT pg_catalog.format('%I.%I', n.nspname, c.relname) AS name,
             (pg_catalog.xpath('/row/c/text()', pg_catalog.query_to_xml(
                pg_catalog.format('SELECT pg_catalog.count(*) AS c FROM %I.%I',
                                  n.nspname, c.relname),
                false, true, '')))[1]::text::bigint AS rows
      FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
      WHERE c.relkind = 'r' AND c.relpersistence <> 't'
        AND n.nspname NOT IN ('pg_catalog', 'information_schema')
        AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'
    ) t))
FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database()
"""
TABLE_COUNTS_SQL = _META_SQL


class Snapshot:
    """A REPEATABLE READ transaction held open in psql whose snapshot pg_dump shares.

    Queries run in it see exactly the data the dump contains.
    """

    MARK = "__pgsteady_end__"

    def __init__(self, docker: Docker, db: str) -> None:
        self.docker = docker
        self.db = db
        self.err = tempfile.TemporaryFile()  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(
            docker.exec_args("psql", "-XAtq", "-v", "ON_ERROR_STOP=1", "-d", db, stdin=True),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.err,
            text=True,
        )
        try:
            self.query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            self.snapshot_id = self.query("SELECT pg_export_snapshot()")[0]
        except BaseException:
            self.close()
            raise

    def query(self, sql: str) -> list[str]:
        """Run ``sql`` in the transaction; return its output lines."""
        try:
            self.proc.stdin.write(f"{sql.strip().rstrip(';')};\n\\echo {self.MARK}\n")
            self.proc.stdin.flush()
        except OSError:
            pass  # psql died; reported below
        lines = []
        for line in iter(self.proc.stdout.readline, ""):
            line = line.rstrip("\n")
            if line == self.MARK:
                return lines
            lines.append(line)
        self.proc.wait()
        self.err.seek(0)
        message = self.err.read().decode(errors="replace").strip()
        raise BackupError(f"psql in {self.docker.container} (database {self.db}) failed: {message}")

    def close(self) -> None:
        try:
            self.proc.communicate("COMMIT;\n\\q\n", timeout=60)
        except (OSError, ValueError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()
        self.err.close()

    def __enter__(self) -> Snapshot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class Made:
    """One published backup."""

    name: str
    path: str
    manifest: dict


def now_utc() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def verify_dump(docker: Docker, path: str, level: str) -> None:
    """Check that pg_restore can read the archive (its TOC, or all of it with 'full')."""
    if os.path.getsize(path) == 0:
        raise BackupError(f"{path}: empty dump")
    args = ("pg_restore", "--list") if level == "list" else ("pg_restore", "-f", "/dev/null")
    try:
        docker.run(*args, input_file=path)
    except BackupError as exc:
        raise BackupError(f"verification of {os.path.basename(path)} failed: {exc}") from None


def dump_database(
    config: Config, docker: Docker, db: str, directory: str, when: datetime, name: str | None = None
) -> Made:
    """Dump ``db`` into ``directory``, verify, checksum, write the manifest, then publish."""
    name = name or retention.names_for(db, when, DUMP_SUFFIX)["last"]
    final = os.path.join(directory, name)
    tmp = os.path.join(directory, TMP_PREFIX + name)
    started = time.monotonic()
    try:
        with Snapshot(docker, db) as snap:
            size, sha = docker.stream_to(
                ["pg_dump", "-Fc", f"--snapshot={snap.snapshot_id}", "-d", db],
                tmp,
                f"pg_dump of database {db}",
            )
            meta = json.loads(snap.query(_META_SQL)[0])
        verify_dump(docker, tmp, config.verify)
        manifest = _manifest(
            config, "database", name, when, size, sha, started, database=db, **meta
        )
        publish(tmp, final, sha, manifest)
    finally:
        discard_unpublished(tmp, final)
    return Made(name, final, manifest)


def _manifest(
    config: Config,
    kind: str,
    name: str,
    when: datetime,
    size: int,
    sha: str,
    started: float,
    **fields: object,
) -> dict:
    """The JSON written next to every published dump (``fields`` are kind-specific)."""
    return {
        "format": 1,
        "kind": kind,
        "file": name,
        "created": when.isoformat(),
        **fields,
        "size": size,
        "sha256": sha,
        "duration_seconds": round(time.monotonic() - started, 3),
        "container": config.container,
        "compose_project": config.compose_project,
    }


def dump_globals(config: Config, docker: Docker, directory: str, when: datetime) -> Made:
    """``pg_dumpall --globals-only`` (roles, tablespaces), verified non-empty."""
    name = retention.names_for(GLOBALS, when, GLOBALS_SUFFIX)["last"]
    final = os.path.join(directory, name)
    tmp = os.path.join(directory, TMP_PREFIX + name)
    started = time.monotonic()
    try:
        size, sha = docker.stream_to(["pg_dumpall", "--globals-only"], tmp, "pg_dumpall -g")
        with open(tmp, "rb") as fh:
            if size == 0 or b"CREATE ROLE" not in fh.read():
                raise BackupError(f"pg_dumpall --globals-only gave no roles ({size} bytes)")
        version = docker.psql("postgres", "SHOW server_version")
        manifest = _manifest(
            config, "globals", name, when, size, sha, started, server_version=version
        )
        publish(tmp, final, sha, manifest)
    finally:
        discard_unpublished(tmp, final)
    return Made(name, final, manifest)


def discard_unpublished(tmp: str, final: str) -> None:
    """Remove a temp dump, and the sidecars of a dump that was never renamed into place."""
    remove_quietly(tmp)
    if not os.path.exists(final):
        for ext in SIDECARS:
            remove_quietly(final + ext)


def publish(tmp: str, final: str, sha: str, manifest: dict) -> None:
    """Write the sidecars, then rename the verified temp file to its final name."""
    name = os.path.basename(final)
    write_atomic(final + ".sha256", f"{sha}  {name}\n".encode())
    write_atomic(final + ".manifest.json", json.dumps(manifest, indent=2).encode() + b"\n")
    os.replace(tmp, final)
    fsync_dir(os.path.dirname(final))


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


# --- status and locking ----------------------------------------------------------------


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


# --- subcommands -----------------------------------------------------------------------


def backup(config: Config, log: Log, now: datetime | None = None) -> dict:
    """Back up every configured database and the globals, then apply retention.

    Returns the ``last_success`` status section; raises BackupError on any failure
    (the caller records it). Retention runs only when everything succeeded.
    """
    when = now or now_utc()
    started = time.monotonic()
    docker = Docker(config)
    last = os.path.join(config.backup_dir, "last")
    docker.check_running()
    made: list[tuple[Made, str, str]] = []
    for db in config.databases:
        log.info(f"backing up database {db} from {config.container}")
        item = dump_database(config, docker, db, last, when)
        link_tiers(config.backup_dir, item, db, DUMP_SUFFIX, when, config.policy)
        made.append((item, db, DUMP_SUFFIX))
        log.info(
            f"  {item.name}: {item.manifest['size']} bytes, "
            f"{len(item.manifest['tables'])} tables, {item.manifest['duration_seconds']} s"
        )
    item = dump_globals(config, docker, last, when)
    link_tiers(config.backup_dir, item, GLOBALS, GLOBALS_SUFFIX, when, config.policy)
    made.append((item, GLOBALS, GLOBALS_SUFFIX))
    # Retention only once every database and the globals are safely backed up.
    end = now_utc() if now is None else when
    for _, db, suffix in made:
        apply_retention(config.backup_dir, db, suffix, end, config.policy, log)
    return {
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


def cmd_backup(config: Config, log: Log) -> int:
    def run() -> None:
        started = now_utc()
        try:
            with Lock(config.backup_dir, config.lock_timeout):
                clean_stale(config.backup_dir, log)
                success = backup(config, log)
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
            f"{success['size_bytes']} bytes in {success['duration_seconds']} s",
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


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pgsteady-backup", description=__doc__.split("\n")[0])
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
    if __package__:
        from . import restore_tool
    else:
        import restore_tool
    if args.command == "restore":
        return restore_tool.cmd_restore(config, log, args)
    return restore_tool.cmd_drill(config, log, args)


if __name__ == "__main__":
    sys.exit(main())
