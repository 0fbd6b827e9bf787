"""One typed, validated Settings per host: the single source of truth.

Deploy, verify, monitor and the backup tool all read a :class:`Settings`; none of
them re-derives a default on its own. :func:`build_settings` takes the operator's
``host.data`` plus a few host facts and either returns Settings or raises
:class:`SettingsError` listing *every* problem (key, bad value, what is accepted).

Each field states its default, a one-line description and, where one line is not
enough, the longer prose (``doc``), grouped in sections: ``python -m
pgsteady.settings_doc`` (``make settings-docs``) generates group_data/all.py and
docs/settings.md from them. Above 400 lines because the catalogue of every setting
with its documentation is this one class, on purpose.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)

from pgsteady.postgres.tuning import DB_TYPES, PG_VERSIONS, STORAGE_TYPES
from pgsteady.setting_types import (
    DatabaseName,
    Duration,
    HostAddress,
    Identifier,
    Network,
    RoleName,
    SafePath,
    Size,
    SizeOrAuto,
    check_cpus,
    check_overrides,
    duration_seconds,
)
from pgsteady.settings_checks import (
    MIN_REDACTED,
    cross_checks,
    format_error,
    redacted,
    unknown_key_errors,
)
from pgsteady.stack.image import POSTGRES_UID
from pgsteady.stack.image import SUITES as DEBIAN_SUITES
from pgsteady.stack.layout import HostLayout
from pgsteady.stack.schedule_syntax import parse_schedule
from pgsteady.units import parse_size

#: The exporters' uid/gid: no user of the host or of the image has it (Debian's
#: 60000-64999 are created on demand only), so it reads only the files made for it.
EXPORTER_UID = 64187

_PROJECT = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_VERSIONS = f"{PG_VERSIONS[0]} to {PG_VERSIONS[-1]}"
_LOCAL_FILE = "a path on the machine that runs the deploy, or None"
_SCHEDULE = "a cron expression (5 fields) or @hourly, @daily, @weekly, @monthly"


class SettingsError(ValueError):
    """Every invalid setting of one host, reported together."""

    def __init__(self, errors: list[str], host: str = "") -> None:
        self.errors = errors
        self.host = host
        where = f" for host {host}" if host else ""
        lines = "\n".join(f"  - {e}" for e in errors)
        super().__init__(f"{len(errors)} invalid setting(s){where}:\n{lines}")


@dataclass(frozen=True)
class HostFacts:
    """What Settings need to know about the host (pyinfra facts, or test values)."""

    ram_mb: int
    cpus: int
    has_systemd: bool = False


def setting(
    default: Any,
    description: str,
    *,
    doc: str = "",
    section: str = "",
    intro: str = "",
    accepted: str = "",
    sensitive: bool = False,
    **constraints: Any,
) -> Any:
    """A Field with its documentation: ``doc`` is prose beyond the one line,
    ``section`` starts a new section (``intro`` its prose) at this field, and
    ``accepted`` says what is accepted where the type alone does not tell.

    ``sensitive`` marks a value that may carry a secret: a shell command or a URL (a
    webhook token, ``user:password@``). Errors name its key and the rule, never the value
    (they reach CI logs and JUnit artifacts)."""
    extra = {
        "doc": doc,
        "section": section,
        "intro": intro,
        "accepted": accepted,
        "sensitive": sensitive,
    }
    kwargs: dict[str, Any] = {
        "description": description,
        "json_schema_extra": {k: v for k, v in extra.items() if v} or None,
        **constraints,
    }
    if isinstance(default, list | dict):
        return Field(default_factory=lambda: type(default)(default), **kwargs)
    return Field(default, **kwargs)


class PgBackRestRepo(BaseModel):
    """One pgBackRest repository (repo1, repo2, ... in list order).

    ``posix``: a directory on this host, bind-mounted into the container (default
    app_dir/pgbackrest/repoN). ``host``: the repository of another inventory host, one
    of the ``backup`` group, reached over pgBackRest's TLS protocol (it survives the loss
    of this host).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["posix", "host"] = Field("posix", description="Where the repository lives")
    path: SafePath | None = Field(None, description="posix: host directory of the repository")
    host: str | None = Field(None, description="host: the backup host's inventory name")
    retention_full: StrictInt = Field(2, ge=1, le=9999, description="Full backups kept")
    retention_diff: StrictInt = Field(6, ge=1, le=9999, description="Differential backups kept")

    @model_validator(mode="after")
    def _kind_fields(self) -> PgBackRestRepo:
        if self.kind == "host" and not self.host:
            raise ValueError("kind 'host' needs host: the inventory name of a backup host")
        if self.kind == "host" and self.path is not None:
            raise ValueError(
                "kind 'host' takes no path: the backup host keeps every repository in its "
                "app_dir/pgbackrest/repository"
            )
        if self.kind == "posix" and self.host is not None:
            raise ValueError("kind 'posix' takes no host; use kind 'host' for a backup host")
        return self


class Settings(BaseModel):
    """Every pgsteady setting with its default, description and documentation."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    app_dir: SafePath = setting(
        "/opt/pgsteady",
        "everything on the host: compose file, config/, secrets/, backups/",
        section="layout",
    )
    compose_project: str = setting(
        "pgsteady",
        "compose project; the container is <compose_project>-postgres",
        accepted="lower-case letters, digits, _ and - (at most 63 characters)",
    )
    postgres_version: StrictInt = setting(
        17,
        f"major version, {_VERSIONS} (the debian source builds "
        + " or ".join(map(str, sorted(DEBIAN_SUITES)))
        + ")",
        section="image",
        accepted=_VERSIONS,
    )
    postgres_image_source: Literal["auto", "registry", "debian", "archive"] = setting(
        "auto",
        "registry (pulled) | debian (built on the host) | archive (a tarball) | auto",
    )
    postgres_image: str | None = setting(
        None,
        "image to pull or load; default postgres:<version>",
        accepted="a docker image reference like postgres:17, or None",
    )
    postgres_image_archive: SafePath | None = setting(
        None,
        "tarball on the host: the archive source's image, or the debian source's seed",
        doc="With postgres_image_source = debian: a docker save of pgsteady's Debian image\n"
        "(make lab ships one), loaded before the build when the recipe's tag is missing, so\n"
        "the build stops at once. Either way only a root-owned file no other uid can write,\n"
        "under directories up to / that no other uid can write (a root-owned sticky one\n"
        "such as /tmp allowed), is loaded; otherwise the deploy stops.",
    )
    postgres_debian_mirror: str | None = setting(
        None,
        "Debian mirror for the debian source; default: host's apt sources",
        accepted="http(s)://HOST/PATH or file:/PATH, or None",
        sensitive=True,
    )
    postgres_debian_security_mirror: str | None = setting(
        None,
        "archive of <suite>-security; default: host's apt sources",
        accepted="http(s)://HOST/PATH or file:/PATH, or None",
        sensitive=True,
    )
    postgres_uid: StrictInt = setting(
        POSTGRES_UID,
        "uid/gid of postgres in the image; its group reads config/, init/, secrets",
        ge=1,
        le=65535,
    )
    postgres_port: StrictInt = setting(
        5432, "port published on the host", section="network", ge=1, le=65535
    )
    postgres_bind: str = setting(
        "127.0.0.1",
        "address the port is published on (0.0.0.0 = every interface)",
        accepted="an IP address",
    )
    postgres_allowed_networks: list[Network] = setting(
        ["samenet"], "pg_hba networks allowed to log in (scram-sha-256 only)"
    )
    postgres_tls_cert_file: str | None = setting(
        None,
        "server certificate (PEM), with the two below",
        section="TLS",
        intro="TLS on every address. Default: a CA per inventory (.pgsteady/<inventory>/\n"
        "beside the inventory file, on the deploy machine) issues each host's certificate,\n"
        "renewed by a converge 30 days before it expires. Or supply your own (paths on the\n"
        "deploy machine).",
        accepted=_LOCAL_FILE,
    )
    postgres_tls_key_file: str | None = setting(
        None, "its unencrypted private key (PEM)", accepted=_LOCAL_FILE
    )
    postgres_tls_ca_file: str | None = setting(
        None,
        "the CA that issued it: what clients verify with",
        accepted=_LOCAL_FILE,
    )
    postgres_tls_ca_dir: SafePath | None = setting(
        None, "where the generated CA lives (default .pgsteady/<inventory>)"
    )
    postgres_tls_extra_names: list[str] = setting(
        [], "more DNS names/addresses the certificate lists", accepted="DNS names or IP addresses"
    )
    postgres_db: DatabaseName = setting("app", "the application's database", section="database")
    postgres_user: RoleName = setting("app", "the application's owner role (LOGIN, not superuser)")
    postgres_readonly_user: RoleName | None = setting(
        None, 'an optional read-only role, e.g. "app_ro"'
    )
    postgres_monitor_user: RoleName = setting(
        "monitor", "LOGIN role with pg_monitor (password: secrets/monitor_password)"
    )
    postgres_extensions: list[Identifier] = setting(
        ["pg_stat_statements", "pg_trgm"], "extensions created in postgres_db"
    )
    postgres_schema_files: list[str] = setting(
        [],
        "local SQL files applied in order as postgres_user (idempotent!)",
        accepted="paths on the deploy machine of files named like 01_tables.sql",
    )
    postgres_auto_updated_at: StrictBool = setting(
        False,
        "event trigger: every new table with updated_at gets pgsteady's trigger",
        doc="Off by default: an event trigger acts on every CREATE/ALTER TABLE in the\n"
        "database, which surprises whoever did not ask for it. On: a table created or\n"
        "altered with an updated_at timestamptz/timestamp column (and every existing one\n"
        "when init_db.sql is applied) gets trigger pgsteady_updated_at calling\n"
        "pgsteady.set_updated_at(); off drops the event trigger, attached triggers stay.",
    )
    postgres_memory_limit: SizeOrAuto = setting(
        "auto", "container memory limit; auto = 75% of host RAM", section="resources and tuning"
    )
    postgres_cpus: Annotated[float | Literal["auto"], BeforeValidator(check_cpus)] = setting(
        "auto", "container CPU limit; auto = all host CPUs"
    )
    postgres_shm_size: Size = setting("256MB", "/dev/shm for parallel queries")
    postgres_db_type: Literal[DB_TYPES] = setting("web", "tuning profile (workload kind)")  # type: ignore[valid-type]
    postgres_storage: Literal[STORAGE_TYPES] = setting("ssd", "tuning for this storage")  # type: ignore[valid-type]
    postgres_max_connections: StrictInt | None = setting(
        None, "default: the profile's (web 200, oltp 300, dw 40 ...)", ge=10, le=10000
    )
    postgres_settings: Annotated[
        dict[str, str | int | float | bool], BeforeValidator(check_overrides)
    ] = setting(
        {},
        "postgresql.conf overrides, checked against the server's own list",
        doc="fsync/full_page_writes off and managed keys (hba_file, include*, ssl*) are\n"
        "refused; synchronous_commit = off needs postgres_accept_async_commit_loss.",
    )
    postgres_accept_async_commit_loss: StrictBool = setting(
        False,
        "allow synchronous_commit = off in postgres_settings",
        doc="synchronous_commit = off loses the last acknowledged commits on a crash.",
    )
    postgres_restart_policy: Literal["always", "unless-stopped", "on-failure", "no"] = setting(
        "always", "Docker restart policy", section="container behaviour"
    )
    postgres_stop_grace_period: Duration = setting(
        "60s", "time for a clean shutdown before SIGKILL"
    )
    postgres_healthy_timeout: Duration = setting(
        "300s", "the deploy fails if not healthy within this"
    )
    healthcheck_interval: Duration = setting("10s", "the health probe every ...")
    healthcheck_timeout: Duration = setting("5s", "... with this timeout")
    healthcheck_retries: StrictInt = setting(
        3, 'consecutive failures before "unhealthy"', ge=1, le=100
    )
    healthcheck_start_period: Duration = setting("60s", "failures during start-up do not count")
    docker_packages: Literal["debian", "docker-ce"] = setting(
        "debian",
        "debian (docker.io + docker-compose) | docker-ce (Docker's repo)",
        section="docker",
    )
    docker_log_max_size: str = setting(
        "10m",
        "container log file size before rotation",
        pattern=r"^\d+[kmg]$",
        accepted='a number with k, m or g (e.g. "10m")',
    )
    docker_log_max_file: StrictInt = setting(5, "rotated log files kept", ge=1, le=100)
    preflight_min_ram: Size = setting("1GB", "refuse hosts with less RAM", section="preflight")
    preflight_min_disk: Size = setting(
        "2GB", "refuse when app_dir's filesystem has less free space"
    )
    backup_enabled: StrictBool = setting(
        True, "schedule backups (cron.d, or a systemd timer under systemd)", section="backups"
    )
    backup_dir: SafePath | None = setting(None, "default <app_dir>/backups")
    backup_schedule: str = setting(
        "15 2 * * *", "cron expression or @hourly/@daily/@weekly/@monthly", accepted=_SCHEDULE
    )
    backup_keep_days: StrictInt = setting(7, "daily backups kept", ge=1, le=3650)
    backup_keep_weeks: StrictInt = setting(4, "weekly backups kept", ge=0, le=520)
    backup_keep_months: StrictInt = setting(6, "monthly backups kept", ge=0, le=240)
    backup_on_failure_command: str | None = setting(
        None,
        "shell command run when a backup fails (mail, webhook)",
        accepted="one line without '%' (cron treats % specially), or None",
        sensitive=True,
    )
    postgres_restore_on_empty: StrictBool = setting(
        False, "empty volume restores the newest backup; debian source only"
    )
    postgres_data_volume: str | None = setting(
        None,
        "Docker volume of the data directory; default <compose_project>_pgdata",
        accepted="a Docker volume name (letters, digits, _ . -), or None",
    )
    postgres_upgrade_from_volume: str | None = setting(
        None,
        "major upgrade: the older major's volume, dumped into postgres_data_volume",
        accepted="a Docker volume name other than the data volume, or None",
    )
    watchdog_backoff: Duration = setting(
        "60s",
        "wait after a start that did not stay up; doubles each time",
        section="watchdog",
        intro="The watchdog (every minute) starts a container that is down, not stopped on\n"
        'purpose, not paused/restarting, and whose restart policy is not "no". A start that\n'
        "does not stay up makes it wait watchdog_backoff, doubling up to watchdog_backoff_max;\n"
        "from the third such start on it reports a crash loop (logger,\n"
        "app_dir/state/watchdog.json, the command).",
    )
    watchdog_backoff_max: Duration = setting("1h", "longest wait between two watchdog starts")
    watchdog_on_failure_command: str | None = setting(
        None,
        "shell command run when the watchdog reports a crash loop",
        accepted="one line without '%' (cron treats % specially), or None",
        sensitive=True,
    )
    pgbackrest_enabled: StrictBool = setting(
        True,
        "archive_mode=on, archive_command = pgbackrest archive-push",
        section="pgBackRest: continuous WAL archiving, physical backups, point-in-time recovery",
        intro="On by default: needs the pgBackRest inside pgsteady's Debian-built image (source\n"
        "debian, or auto, which then builds it); registry/archive images must set\n"
        "pgbackrest_enabled=False.",
    )
    pgbackrest_stanza: Identifier = setting(
        "main", "the stanza (one per cluster) in every repository"
    )
    pgbackrest_repos: list[PgBackRestRepo] = setting(
        [PgBackRestRepo()],
        "repositories, repo1 first (one to four)",
        min_length=1,
        max_length=4,
        doc='kind "posix": a host directory (default <app_dir>/pgbackrest/repoN), owned by\n'
        "the server's uid, encrypted (aes-256-cbc) with a passphrase generated on the host\n"
        "in <app_dir>/secrets/pgbackrest/repoN.conf.\n"
        'kind "host" (with "host": a name of the inventory\'s `backup` group): that host\'s\n'
        "repository, which survives the loss of this one; its passphrase is made once on the\n"
        "deploy machine (beside the CA) and reaches both hosts over the deploy's SSH.\n"
        "Local + off-host is the usual pair:\n"
        '[{"kind": "posix"}, {"kind": "host", "host": "backup1"}]',
        accepted='a list of {"kind": "posix" | "host", "path": (posix) an absolute path, '
        '"host": (host) a backup host, "retention_full": 1-9999, "retention_diff": 1-9999}',
    )
    pgbackrest_archive_timeout: Duration = setting(
        "60s", "archive_timeout: the most WAL time a host loss loses"
    )
    pgbackrest_archive_queue_max: Size = setting(
        "1GB",
        "WAL not yet archived that may pile up in pg_wal",
        doc="Beyond it pgBackRest drops WAL (the archive gets a gap: PITR across it fails\n"
        "until the next full backup) so that a dead repository never fills the disk and\n"
        "stops the server.",
    )
    pgbackrest_process_max: StrictInt = setting(
        1, "parallel compression/transfer processes (backup, async push)", ge=1, le=64
    )
    pgbackrest_tls_port: StrictInt = setting(
        8432,
        "pgBackRest TLS server port (off-host repositories)",
        ge=1024,
        le=65535,
        doc='Off-host repositories ({"kind": "host", "host": "<name>"} in pgbackrest_repos;\n'
        "the host is in the inventory's `backup` group): both ends run pgBackRest's TLS\n"
        "server on this port, with certificates from the inventory's CA.",
    )
    pgbackrest_address: HostAddress | None = setting(
        None,
        "how other hosts reach this one (default: ssh_hostname or name)",
        accepted="a host name or IP address, or None",
    )
    pgbackrest_full_schedule: str = setting(
        "30 1 * * 0", "full backup (cron syntax; Sundays 01:30)", accepted=_SCHEDULE
    )
    pgbackrest_diff_schedule: str = setting(
        "30 1 * * 1-6", "differential backup (Mondays to Saturdays)", accepted=_SCHEDULE
    )
    pgbackrest_verify_schedule: str = setting(
        "30 4 * * 0", "pgbackrest verify: checksums of the repository", accepted=_SCHEDULE
    )
    metrics_enabled: StrictBool = setting(
        True,
        "run the Prometheus exporters (postgres + node) beside the server",
        section="metrics: Prometheus exporters",
        intro="On by default: an unwatched database fails silently, and the exporters cost\n"
        "two small containers (128 MB each at most). They run from pgsteady's Debian-built\n"
        "image (source debian, or auto, which then builds it); registry/archive images must\n"
        "set metrics_enabled=False. Both serve HTTPS with a certificate of the inventory's\n"
        "metrics CA and demand a client certificate of it: `make scrape-config` writes\n"
        "Prometheus's targets, its client certificate and the scrape_configs\n"
        "(docs/monitoring.md).",
    )
    metrics_bind: str = setting(
        "127.0.0.1",
        "address the exporters' ports are published on (production: the private address)",
        accepted="an IP address",
    )
    postgres_exporter_port: StrictInt = setting(
        9187, "prometheus-postgres-exporter's port on metrics_bind", ge=1024, le=65535
    )
    node_exporter_port: StrictInt = setting(
        9100, "prometheus-node-exporter's port on metrics_bind", ge=1024, le=65535
    )
    metrics_exporter_uid: StrictInt = setting(
        EXPORTER_UID,
        "uid/gid both exporters run as (not postgres_uid: no peer login, no server files)",
        ge=1,
        le=65533,
    )
    pgbouncer_enabled: StrictBool = setting(
        True,
        "run PgBouncer beside the server (pgbouncer_port; postgres_port stays direct)",
        section="connection pooling: PgBouncer",
        intro="On by default, on a port of its own: the pooler costs one small container, and\n"
        "an application opts in to transaction pooling by connecting to pgbouncer_port (no\n"
        "session state across transactions: SET, advisory locks, LISTEN, WITH HOLD cursors).\n"
        "postgres_port stays direct to the server for admins, backups and migrations. It\n"
        "serves postgres_db in pgbouncer_pool_mode and <postgres_db>_session in session mode\n"
        "(migrations), TLS required, SCRAM through auth_query (docs/operations.md).\n"
        "In a cluster every member runs one, pooling toward the current leader through its\n"
        "own HAProxy (on every member or none).\n"
        "Registry/archive images must set pgbouncer_enabled=False (Debian-built image only).",
    )
    pgbouncer_port: StrictInt = setting(
        6432,
        "PgBouncer's port, published on postgres_bind (cluster: the member's address)",
        ge=1024,
        le=65535,
    )
    pgbouncer_pool_mode: Literal["transaction", "session"] = setting(
        "transaction", "pool mode of postgres_db through the pooler (<db>_session: session)"
    )
    pgbouncer_default_pool_size: StrictInt | None = setting(
        None,
        "server connections of postgres_db's pool; default: half of max_connections' spare",
        doc="Default: (max_connections - superuser_reserved_connections - 10 direct - 5\n"
        "session-pool) / 2. The pools plus the reserved slots must stay below max_connections.\n"
        "In a cluster the members' poolers share the leader: ((max_connections -\n"
        "superuser_reserved_connections - 10) / members - 5) / 2 each.",
        ge=1,
        le=10000,
    )
    pgbouncer_max_client_conn: StrictInt | None = setting(
        None,
        "client connections the pooler accepts; default: 10 x max_connections, at least 1000",
        ge=10,
        le=100000,
    )
    pgbouncer_uid: StrictInt = setting(
        EXPORTER_UID + 1,
        "uid/gid PgBouncer runs as (not postgres_uid nor metrics_exporter_uid)",
        ge=1,
        le=65533,
    )

    postgres_cluster_name: str | None = setting(
        None,
        "the Patroni cluster this host belongs to; None: a single host, as always",
        section="cluster: Patroni, etcd and HAProxy (issue 15)",
        intro="Hosts whose postgres_cluster_name is the same form one cluster: at least 3\n"
        "hosts (etcd's smallest quorum), each with its own private address. The first 3\n"
        "hosts in inventory order run etcd (the first 5 from 7 hosts up). Without\n"
        "postgres_cluster_name a host is a single host and renders exactly the files it\n"
        "always did. Cluster-wide settings must be equal on every member. A cluster runs\n"
        "postgres_version 17: its image ships Patroni 4 (15's has 3.0.2, whose etcd client\n"
        "can hand the leader key back to a resumed old leader).",
        accepted="None, or a lower-case letter then up to 30 lower-case letters, digits or '-'",
    )
    postgres_cluster_address: HostAddress | None = setting(
        None,
        "the private IP address the other members dial (default: ssh_hostname)",
        accepted="an IP address, or None to use ssh_hostname (which must then be one)",
    )
    postgres_replica_port: StrictInt = setting(
        5433, "HAProxy's port to a healthy replica within postgres_replica_max_lag", ge=1, le=65535
    )
    postgres_member_port: StrictInt = setting(
        15432, "each member's own Postgres port (HAProxy's backends)", ge=1, le=65535
    )
    patroni_rest_port: StrictInt = setting(
        8008, "Patroni's REST API port on the private address", ge=1, le=65535
    )
    etcd_client_port: StrictInt = setting(2379, "etcd's client port", ge=1, le=65535)
    etcd_peer_port: StrictInt = setting(2380, "etcd's peer port", ge=1, le=65535)
    patroni_ttl: StrictInt = setting(
        24,
        "seconds the leader key lives without renewal (failover takes about this long)",
        doc="Rules: ttl >= 20, loop_wait >= 1, retry_timeout >= 3 and\n"
        "loop_wait + 2 * retry_timeout <= ttl (a leader must not lose its lease while\n"
        "still retrying etcd).",
        ge=20,
        le=3600,
    )
    patroni_loop_wait: StrictInt = setting(4, "seconds between Patroni's cycles", ge=1, le=3600)
    patroni_retry_timeout: StrictInt = setting(
        10, "seconds Patroni retries etcd and Postgres before demoting", ge=3, le=3600
    )
    postgres_maximum_lag_on_failover: Size = setting(
        "1MB",
        "a replica further behind than this is never promoted",
        accepted='a size above zero, at most 16MB (B, kB, MB; e.g. "1MB")',
        doc="An asynchronous failover may drop this much acknowledged WAL: at most one\n"
        "WAL segment (16MB).",
    )
    postgres_replica_max_lag: Size = setting(
        "16MB", "a replica further behind leaves postgres_replica_port's pool"
    )
    postgres_synchronous_mode: StrictBool = setting(
        True,
        "synchronous replication: no acknowledged write is lost on failover",
        doc="False needs postgres_accept_failover_commit_loss = True. Issue 15 asked for\n"
        "asynchronous by default; pgsteady refuses settings that lose acknowledged data.",
    )
    postgres_synchronous_mode_strict: StrictBool = setting(
        False, "with synchronous mode: refuse writes while no replica confirms them"
    )
    postgres_accept_failover_commit_loss: StrictBool = setting(
        False,
        "allow postgres_synchronous_mode = False",
        doc="A failover then loses the commits no replica received (up to\n"
        "postgres_maximum_lag_on_failover plus one loop_wait of writes).",
    )
    etcd_heartbeat_interval_ms: StrictInt = setting(
        100, "etcd's heartbeat interval (milliseconds)", ge=10, le=10000
    )
    etcd_election_timeout_ms: StrictInt = setting(
        1000,
        "etcd's election timeout (milliseconds; at least 5 heartbeats)",
        ge=50,
        le=50000,
    )
    haproxy_check_interval_ms: StrictInt = setting(
        1000,
        "HAProxy's health check interval of Patroni's REST API (milliseconds)",
        ge=100,
        le=60000,
    )

    # --- host facts (not operator settings; filled by build_settings) -------
    host_ram_mb: StrictInt = Field(0, ge=0, exclude=True)
    host_cpus: StrictInt = Field(0, ge=0, exclude=True)
    host_has_systemd: StrictBool = Field(False, exclude=True)

    @field_validator("compose_project")
    @classmethod
    def _project(cls, v: str) -> str:
        if not _PROJECT.fullmatch(v):
            raise ValueError(
                f"{v!r} is not a compose project name (lower-case letters, digits, _ and -)"
            )
        return v

    @field_validator("postgres_version")
    @classmethod
    def _version(cls, v: int) -> int:
        if v not in PG_VERSIONS:
            raise ValueError(f"{v} is not supported: use {_VERSIONS}")
        return v

    @field_validator("postgres_data_volume", "postgres_upgrade_from_volume")
    @classmethod
    def _volume(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}", v):
            raise ValueError(f"{v!r} is not a Docker volume name (letters, digits, _ . -)")
        return v

    @field_validator("postgres_bind", "metrics_bind")
    @classmethod
    def _bind(cls, v: str) -> str:
        try:
            return str(ipaddress.ip_address(v))
        except ValueError:
            raise ValueError(f"{v!r} is not an IP address (e.g. 127.0.0.1 or 10.0.0.5)") from None

    @field_validator("postgres_cpus")
    @classmethod
    def _cpus(cls, v: float | str) -> float | str:
        if v != "auto" and (isinstance(v, bool) or not 0 < float(v) <= 1024):
            raise ValueError(f"{v!r} must be 'auto' or a number of CPUs above 0")
        return v

    @field_validator("postgres_image")
    @classmethod
    def _image(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"[a-z0-9][a-z0-9._/:@-]*", v):
            raise ValueError(f"{v!r} is not a docker image reference like postgres:17")
        return v

    @field_validator("postgres_debian_mirror", "postgres_debian_security_mirror")
    @classmethod
    def _mirror(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"(https?://|file:/)[A-Za-z0-9._~:/%+-]+", v):
            raise ValueError(f"{v!r} is not a mirror URI like http://HOST/debian or file:/PATH")
        return v

    @field_validator("postgres_settings")
    @classmethod
    def _overrides(cls, v: dict[str, Any]) -> dict[str, Any]:
        for name in v:
            if not re.fullmatch(r"[a-z_][a-z0-9_.]*", name):
                raise ValueError(f"{name!r} is not a Postgres setting name")
        return v

    @field_validator(
        "backup_schedule",
        "pgbackrest_full_schedule",
        "pgbackrest_diff_schedule",
        "pgbackrest_verify_schedule",
    )
    @classmethod
    def _schedule(cls, v: str) -> str:
        parse_schedule(v)
        return v

    @field_validator("backup_on_failure_command", "watchdog_on_failure_command")
    @classmethod
    def _on_failure(cls, v: str | None) -> str | None:
        if v is not None and ("\n" in v or "%" in v):
            raise ValueError("must be one line without '%' (cron treats % specially)")
        return v

    # --- derived values: one place, read by deploy, verify and tools ---------
    @property
    def container_name(self) -> str:
        return f"{self.compose_project}-postgres"

    @property
    def image_alias(self) -> str:
        """The local tag the compose file runs, whatever the source."""
        return f"pgsteady/{self.compose_project}-postgres:{self.postgres_version}"

    @property
    def registry_image(self) -> str:
        return self.postgres_image or f"postgres:{self.postgres_version}"

    @property
    def data_volume(self) -> str:
        """The Docker volume holding the data directory."""
        return self.postgres_data_volume or f"{self.compose_project}_pgdata"

    @property
    def backup_path(self) -> str:
        return self.backup_dir or f"{self.app_dir}/backups"

    @property
    def memory_limit_bytes(self) -> int:
        """The container limit: explicit, or 75% of host RAM (at least 256 MB)."""
        if self.postgres_memory_limit != "auto":
            return parse_size(self.postgres_memory_limit)
        mb = max(256, int(self.host_ram_mb * 0.75))
        return mb * 1024 * 1024

    @property
    def memory_limit_mb(self) -> int:
        return self.memory_limit_bytes // (1024 * 1024)

    @property
    def cpu_limit(self) -> float:
        if self.postgres_cpus == "auto":
            return float(max(1, self.host_cpus))
        return float(self.postgres_cpus)

    @property
    def cpu_count(self) -> int:
        """Whole CPUs Postgres may use (for tuning)."""
        return max(1, math.ceil(self.cpu_limit))

    def seconds(self, key: str) -> float:
        """A duration setting in seconds, e.g. ``s.seconds('healthcheck_interval')``."""
        return duration_seconds(getattr(self, key))

    @property
    def layout(self) -> HostLayout:
        """The host layout under app_dir."""
        return HostLayout(self.app_dir, self.backup_path)


#: Settings whose values may carry a secret (``setting(..., sensitive=True)``).
SENSITIVE = frozenset(
    name
    for name, field in Settings.model_fields.items()
    if isinstance(field.json_schema_extra, dict) and field.json_schema_extra.get("sensitive")
)


def redact(errors: list[str], data: Mapping[str, Any]) -> list[str]:
    """``errors`` with every sensitive value of ``data`` replaced by its placeholder."""
    secrets = [v for k, v in data.items() if k in SENSITIVE and isinstance(v, str)]
    secrets = [v for v in secrets if len(v) >= MIN_REDACTED]
    for value in sorted(secrets, key=len, reverse=True):
        errors = [e.replace(value, redacted(value)) for e in errors]
    return errors


def build_settings(data: Mapping[str, Any], facts: HostFacts, host: str = "") -> Settings:
    """Validate the operator's data for one host; raise SettingsError with every problem.

    Keys that are not pgsteady's (other packages' data in the same inventory) are left
    alone; see :func:`pgsteady.settings_checks.unknown_key_errors`.
    """
    known = {n for n in Settings.model_fields if not n.startswith("host_")}
    errors = unknown_key_errors(data, known)
    values: dict[str, Any] = {k: v for k, v in data.items() if k in known}
    values.update(
        host_ram_mb=facts.ram_mb, host_cpus=facts.cpus, host_has_systemd=facts.has_systemd
    )
    try:
        settings = Settings(**values)
    except ValidationError as exc:
        errors.extend(format_error(e, SENSITIVE) for e in exc.errors())
        raise SettingsError(redact(errors, data), host) from None
    except (TypeError, ValueError) as exc:  # a validator's own helper failing oddly
        raise SettingsError(redact([*errors, f"settings: {exc}"], data), host) from None
    errors.extend(cross_checks(settings))
    if errors:
        raise SettingsError(redact(errors, data), host)
    return settings


def defaults() -> dict[str, Any]:
    """The default of every operator setting (what group_data/all.py states)."""
    out = {}
    for name, field in Settings.model_fields.items():
        if name.startswith("host_"):
            continue
        value = field.get_default(call_default_factory=True)
        if isinstance(value, list):
            value = [v.model_dump() if isinstance(v, BaseModel) else v for v in value]
        out[name] = value
    return out
