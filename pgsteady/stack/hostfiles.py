"""Who owns what on the host: the one ownership rule, read by the deploy and by verify.

Root runs the watchdog, the backup tool and compose; it never runs, sources or trusts a
file another uid can write. Two kinds of paths follow from that:

* root's own files (``root_only``): owned by root:root, no group or other write bit.
  ``etc/`` (ctl.env, backup.json) and ``state/`` (the ctl lock, watchdog.json) are 0700.
* files the server reads (``server_readable``): owned by root, group = the image's
  postgres gid, mode 0640 in 0750 directories. The container's postgres user reads them
  through its group (compose bind-mounts secrets keeping the host owner and mode); it
  cannot change them, and root never executes or sources them.

Pure: Settings in, expected (path, uid, gid, mode) out.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from pgsteady.backup import pgbackrest
from pgsteady.backup.artifact import ARTIFACT as BACKUP_ARTIFACT
from pgsteady.postgres.conf_files import SCHEMA_PSQL, schema_file_names
from pgsteady.settings import Settings
from pgsteady.stack.compose import INIT_SQL, secret_names
from pgsteady.stack.jobs import backup_job, metrics_job, pgbackrest_jobs, watchdog_job

#: Stdlib-only package (one zip) the backup tool imports from its own directory on the host.
TOOL_ARCHIVES = (BACKUP_ARTIFACT,)
#: Executables installed in app_dir/bin.
TOOLS = ("pgsteady-ctl", "pgsteady-backup")


@dataclass(frozen=True)
class Owned:
    """A path with the owner, group and mode the deploy gives it."""

    path: str
    uid: int
    gid: int
    mode: str  # octal digits, e.g. "640"
    directory: bool = False

    def fix(self) -> str:
        """The shell command that restores owner and mode."""
        q = shlex.quote(self.path)
        return f"chown {self.uid}:{self.gid} {q} && chmod {self.mode} {q}"

    def describe(self) -> str:
        return f"{self.uid}:{self.gid} {int(self.mode, 8):04o}"


def root_only(path: str, mode: str, directory: bool = False) -> Owned:
    """A path root runs, sources or trusts: root:root, never group/other writable."""
    if int(mode, 8) & 0o022:
        raise ValueError(f"{path}: mode {mode} lets another uid write a file root trusts")
    return Owned(path, 0, 0, mode, directory)


def server_readable(s: Settings, path: str, directory: bool = False) -> Owned:
    """A path the Postgres server reads: root-owned, group postgres, 0640 (dirs 0750).

    Also the rule for secrets and TLS keys the container reads (Postgres accepts a
    root-owned key file with mode 0640).
    """
    return Owned(path, 0, s.postgres_uid, "750" if directory else "640", directory)


def exporter_readable(s: Settings, path: str) -> Owned:
    """A file the exporters read (bind-mounted alone): root-owned, group
    metrics_exporter_uid, 0640; not the server's group."""
    return Owned(path, 0, s.metrics_exporter_uid, "640")


def exporter_secret(s: Settings, path: str) -> Owned:
    """A secret only the exporters read (their key, their password copy): root-owned,
    group metrics_exporter_uid, 0440. No host user has that gid, and root-owned keeps
    the one rule: no uid but root can change a file under app_dir."""
    return Owned(path, 0, s.metrics_exporter_uid, "440")


def server_owned_dirs(s: Settings) -> list[str]:
    """Directories under app_dir the server itself writes (owned by postgres_uid), such as a
    WAL archive. Root never runs, sources or trusts a file in them; they are the only
    exception to "nothing under app_dir is writable by another uid", so each is listed here.
    """
    dirs = pgbackrest.server_written_dirs(s)  # the posix pgBackRest repositories
    if s.postgres_cluster_name is not None:
        dirs.append(f"{s.app_dir}/etcd/data")  # etcd's data (its uid), on etcd hosts
    return dirs


def writable_by_others(got_uid: int, got_mode: int, want: Owned) -> str | None:
    """Why another uid could change a path with this numeric owner and mode (None: it cannot).

    The rule of this module: owned by root, no group or other write bit. Privacy (who may
    read) is checked elsewhere (security/config_not_world_readable, backups/...).
    """
    problems = []
    if got_uid != want.uid:
        problems.append(f"owned by uid {got_uid}, not {want.uid}")
    if got_mode & 0o022:
        problems.append(f"mode {got_mode & 0o7777:04o} lets group or others write it")
    return "; ".join(problems) or None


def layout(s: Settings) -> list[Owned]:
    """Every path pgsteady writes under app_dir, plus the scheduled jobs, with its rule."""
    p = s.layout
    out = [
        root_only(s.app_dir, "755", directory=True),
        root_only(p.bin, "755", directory=True),
        *(root_only(f"{p.bin}/{t}", "755") for t in TOOLS),
        *(root_only(f"{p.bin}/{m}", "644") for m in TOOL_ARCHIVES),
        # pgsteady-ctl upgrade-major sources it: root-owned, written by root only.
        root_only(f"{p.bin}/pgsteady-upgrade-major", "644"),
        root_only(p.etc, "700", directory=True),
        root_only(p.ctl_env, "600"),
        root_only(p.backup_config, "600"),
        root_only(p.state, "700", directory=True),
        root_only(p.compose, "640"),
        root_only(p.secrets, "700", directory=True),
        root_only(p.backups, "700", directory=True),
        server_readable(s, p.config, directory=True),
        server_readable(s, f"{p.config}/postgresql.conf"),
        server_readable(s, f"{p.config}/pg_hba.conf"),
        server_readable(s, p.init, directory=True),
        server_readable(s, f"{p.init}/{INIT_SQL}"),
        *(server_readable(s, f"{p.secrets}/{n}") for n in secret_names(s)),
    ]
    if s.postgres_schema_files:
        schema_dir = f"{p.init}/schema"
        out.append(server_readable(s, schema_dir, directory=True))
        out += [server_readable(s, f"{schema_dir}/{n}") for n in schema_file_names(s)]
        out.append(server_readable(s, f"{p.init}/{SCHEMA_PSQL}"))
    if s.pgbackrest_enabled:
        out += [
            root_only(f"{p.bin}/pgsteady-pitr", "755"),
            server_readable(s, f"{p.config}/pgbackrest.conf"),
            server_readable(s, pgbackrest.secrets_dir(s), directory=True),
            *(server_readable(s, pgbackrest.secret_file(s, n)) for n, _ in pgbackrest.repos(s)),
        ]
    if s.metrics_enabled:
        from pgsteady.stack import exporters

        out += [
            root_only(f"{p.bin}/pgsteady-metrics", "755"),
            root_only(f"{p.etc}/metrics.json", "600"),
            root_only(exporters.textfile_dir(s), "755", directory=True),
            root_only(exporters.textfile_path(s), "644"),
            root_only(exporters.cache_path(s), "600"),
            exporter_readable(s, f"{p.config}/{exporters.WEB_CONFIG}"),
            root_only(f"{p.tls}/{exporters.METRICS_CA}", "644"),
            root_only(f"{p.tls}/{exporters.EXPORTER_CERT}", "644"),
            exporter_secret(s, f"{p.tls}/{exporters.EXPORTER_KEY}"),
            root_only(f"{p.tls}/{exporters.VERIFY_CLIENT_CERT}", "644"),
            root_only(f"{p.tls}/{exporters.VERIFY_CLIENT_KEY}", "600"),
            *(exporter_secret(s, f"{p.secrets}/{n}") for n in exporters.secret_names(s)),
        ]
        if exporters.QUERIES_SOURCE.is_file():
            out.append(exporter_readable(s, f"{p.config}/{exporters.QUERIES}"))
    if s.pgbouncer_enabled:
        from pgsteady.stack import pgbouncer

        uid = s.pgbouncer_uid
        out += [
            Owned(f"{p.config}/{pgbouncer.CONFIG}", 0, uid, "640"),
            Owned(f"{p.config}/{pgbouncer.HBA}", 0, uid, "640"),
            root_only(f"{p.tls}/{pgbouncer.POOLER_CERT}", "644"),
            Owned(f"{p.tls}/{pgbouncer.POOLER_KEY}", 0, uid, "440"),
            Owned(f"{p.secrets}/{pgbouncer.USERLIST}", 0, uid, "440"),
        ]
    jobs = [watchdog_job(s)] + ([backup_job(s)] if s.backup_enabled else [])
    jobs += pgbackrest_jobs(s) if s.pgbackrest_enabled else []
    jobs += [metrics_job(s)] if s.metrics_enabled else []
    for job in jobs:
        if s.host_has_systemd:
            base = f"/etc/systemd/system/{job.unit}"
            out += [root_only(f"{base}.service", "644"), root_only(f"{base}.timer", "644")]
        else:
            out.append(root_only(f"/etc/cron.d/{job.unit}", "644"))
    return out


#: Files of the old layout (before etc/ existed) the deploy removes from app_dir/config.
OLD_ROOT_FILES_IN_CONFIG = ("ctl.env", "backup.json")
