"""One typed, validated Settings per host: the single source of truth.

Deploy, verify, monitor and the backup tool all read a :class:`Settings`; none of
them re-derives a default on its own. :func:`build_settings` takes the operator's
``host.data`` plus a few host facts and either returns Settings or raises
:class:`SettingsError` listing *every* problem (key, bad value, what is accepted).
"""

from __future__ import annotations

import difflib
import ipaddress
import math
import os
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

from pgsteady import safety
from pgsteady.image import SUITES as DEBIAN_SUITES
from pgsteady.schedule import parse_schedule
from pgsteady.units import parse_size

#: host.data keys with these prefixes belong to pgsteady; an unknown one is a typo.
SETTING_PREFIXES = (
    "app_",
    "compose_",
    "postgres_",
    "backup_",
    "docker_",
    "healthcheck_",
    "preflight_",
    "watchdog_",
    "pgbackrest_",
)

#: Postgres major versions the registry/archive sources accept.
SUPPORTED_VERSIONS = range(13, 19)

_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_PROJECT = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_DURATION = re.compile(r"^(\d+)(ms|s|m|h)$")
_SAFE_PATH = re.compile(r"^/[A-Za-z0-9._/-]*$")
_DURATION_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}


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


def duration_seconds(value: str) -> float:
    """``"10s"`` → 10.0; ``"500ms"`` → 0.5."""
    m = _DURATION.fullmatch(value)
    if not m:
        raise ValueError(f"{value!r} is not a duration like 10s, 500ms, 5m or 1h")
    return int(m.group(1)) * _DURATION_SECONDS[m.group(2)]


def _check_duration(value: Any) -> Any:
    if isinstance(value, str):
        if duration_seconds(value) <= 0:
            raise ValueError(f"{value!r} must be longer than zero")
        return value
    raise ValueError(f"{value!r} is not a duration string like '10s', '5m' or '1h'")


def _check_size(value: Any) -> Any:
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a size string like '512MB' or '4GB'")
    if parse_size(value) <= 0:
        raise ValueError(f"{value!r} must be larger than zero")
    return value


def _check_size_or_auto(value: Any) -> Any:
    return value if value == "auto" else _check_size(value)


def _check_name(value: Any) -> Any:
    if not isinstance(value, str) or not _IDENT.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a lower-case SQL identifier "
            "(a-z, 0-9, _; starting with a letter or _; at most 63 characters)"
        )
    return value


def _check_identifier(value: Any) -> Any:
    _check_name(value)
    if value.startswith("pg_"):
        raise ValueError(f"{value!r} starts with pg_, which Postgres reserves")
    return value


def _check_role(value: Any) -> Any:
    _check_identifier(value)
    if value in ("public", "none"):
        raise ValueError(f"{value!r} is a role name Postgres reserves")
    if value == "pgsteady_restore":
        raise ValueError(f"{value!r} is the role pgsteady reserves for restores (any other name)")
    return value


def _check_database(value: Any) -> Any:
    _check_identifier(value)
    if value in ("template0", "template1", "postgres"):
        raise ValueError(f"{value!r} is a system database; name the application's own (e.g. 'app')")
    return value


def _check_path(value: Any) -> Any:
    if not isinstance(value, str) or not _SAFE_PATH.fullmatch(value) or "/../" in f"{value}/":
        raise ValueError(
            f"{value!r} is not an absolute path of letters, digits, '.', '_', '-' and '/'"
        )
    if os.path.normpath(value) != value.rstrip("/") or value.startswith("//"):
        raise ValueError(
            f"{value!r} is not a normalised path (no '.', '..' or '//' parts); "
            f"did you mean {os.path.normpath(value)!r}?"
        )
    if value.rstrip("/") in ("", "/proc", "/sys", "/dev", "/etc", "/usr", "/bin", "/boot"):
        raise ValueError(f"{value!r} is a system directory; use a directory of its own")
    return value.rstrip("/")


def _check_cpus(value: Any) -> Any:
    if value == "auto":
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{value!r} is not 'auto' or a number of CPUs like 2 or 0.5")
    return value


def _check_overrides(value: Any) -> Any:
    if isinstance(value, Mapping):
        for name, item in value.items():
            if item is None or not isinstance(item, str | int | float | bool):
                raise ValueError(
                    f"{name!r} = {item!r} is not a single value (string, number or boolean)"
                )
            if isinstance(item, str) and any(c in item for c in "\n\r\0"):
                raise ValueError(
                    f"{name!r} = {item!r} contains a line break or NUL, which "
                    "postgresql.conf cannot hold"
                )
    return value


def _check_network(value: Any) -> Any:
    if value in ("samenet", "samehost"):
        return value
    try:
        return str(ipaddress.ip_network(value, strict=False))
    except (ValueError, TypeError):
        raise ValueError(
            f"{value!r} is not a network: use a CIDR like 10.0.0.0/8 or samenet/samehost"
        ) from None


Duration = Annotated[str, BeforeValidator(_check_duration)]
Size = Annotated[str, BeforeValidator(_check_size)]
SizeOrAuto = Annotated[str, BeforeValidator(_check_size_or_auto)]
RoleName = Annotated[str, BeforeValidator(_check_role)]
DatabaseName = Annotated[str, BeforeValidator(_check_database)]
ExtensionName = Annotated[str, BeforeValidator(_check_name)]
SafePath = Annotated[str, BeforeValidator(_check_path)]
Network = Annotated[str, BeforeValidator(_check_network)]


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
    """Every pgsteady setting with its default; see group_data/all.py for the prose."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # --- layout -------------------------------------------------------------
    app_dir: SafePath = Field("/opt/pgsteady", description="Where everything lives on the host")
    compose_project: str = Field("pgsteady", description="Compose project name")
    # --- image --------------------------------------------------------------
    postgres_version: StrictInt = Field(17, description="Postgres major version")
    postgres_image_source: Literal["auto", "registry", "debian", "archive"] = Field(
        "auto", description="Where the image comes from"
    )
    postgres_image: str | None = Field(None, description="Image name (derived when unset)")
    postgres_image_archive: SafePath | None = Field(
        None, description="Tarball for postgres_image_source=archive"
    )
    postgres_debian_mirror: str | None = Field(
        None, description="Debian mirror for the debian source (default: the host's apt sources)"
    )
    postgres_debian_security_mirror: str | None = Field(
        None,
        description="Archive of <suite>-security for the debian source (default: host's apt)",
    )
    postgres_uid: StrictInt = Field(999, ge=1, le=65535, description="postgres uid in image")
    # --- network ------------------------------------------------------------
    postgres_port: StrictInt = Field(5432, ge=1, le=65535, description="Published port")
    postgres_bind: str = Field("127.0.0.1", description="Address the port is published on")
    postgres_allowed_networks: list[Network] = Field(
        default_factory=lambda: ["samenet"], description="Networks allowed to log in"
    )
    # --- TLS (paths on the machine that runs the deploy) ----------------------
    postgres_tls_cert_file: str | None = Field(
        None, description="Server certificate (PEM); default: issued by the inventory's CA"
    )
    postgres_tls_key_file: str | None = Field(None, description="Its private key (PEM)")
    postgres_tls_ca_file: str | None = Field(None, description="The CA that issued it (PEM)")
    postgres_tls_ca_dir: SafePath | None = Field(
        None, description="The inventory's CA (default: .pgsteady/<inventory> beside it)"
    )
    postgres_tls_extra_names: list[str] = Field(
        default_factory=list, description="More DNS names/addresses for the certificate"
    )
    # --- database -----------------------------------------------------------
    postgres_db: DatabaseName = Field("app", description="The application's database")
    postgres_user: RoleName = Field("app", description="The application's owner role")
    postgres_readonly_user: RoleName | None = Field(None, description="Optional read-only role")
    postgres_monitor_user: RoleName = Field(
        "monitor", description="LOGIN role with pg_monitor for exporters and check tools"
    )
    postgres_extensions: list[ExtensionName] = Field(
        default_factory=lambda: ["pg_stat_statements", "pg_trgm"],
        description="Extensions created in postgres_db",
    )
    postgres_schema_files: list[str] = Field(
        default_factory=list, description="Operator SQL files applied after init_db.sql"
    )
    # --- resources and tuning -----------------------------------------------
    postgres_memory_limit: SizeOrAuto = Field("auto", description="Container memory limit")
    postgres_cpus: Annotated[float | Literal["auto"], BeforeValidator(_check_cpus)] = Field(
        "auto", description="Container CPU limit"
    )
    postgres_shm_size: Size = Field("256MB", description="Container /dev/shm size")
    postgres_db_type: Literal["web", "oltp", "dw", "desktop", "mixed"] = Field(
        "web", description="Workload kind for tuning"
    )
    postgres_storage: Literal["ssd", "hdd", "san", "nvme"] = Field(
        "ssd", description="Storage kind"
    )
    postgres_max_connections: StrictInt | None = Field(
        None, ge=10, le=10000, description="max_connections (the workload's default when unset)"
    )
    postgres_settings: Annotated[
        dict[str, str | int | float | bool], BeforeValidator(_check_overrides)
    ] = Field(default_factory=dict, description="postgresql.conf overrides, merged last")
    postgres_accept_async_commit_loss: StrictBool = Field(
        False, description="Allow synchronous_commit = off (a crash loses the last commits)"
    )
    # --- container behaviour ------------------------------------------------
    postgres_restart_policy: Literal["always", "unless-stopped", "on-failure", "no"] = Field(
        "always", description="Docker restart policy"
    )
    postgres_stop_grace_period: Duration = Field("60s", description="Time for a clean shutdown")
    postgres_healthy_timeout: Duration = Field("300s", description="Deploy waits this long")
    healthcheck_interval: Duration = Field("10s", description="pg_isready every ...")
    healthcheck_timeout: Duration = Field("5s", description="pg_isready timeout")
    healthcheck_retries: StrictInt = Field(3, ge=1, le=100, description="Failures → unhealthy")
    healthcheck_start_period: Duration = Field("60s", description="Grace after a start")
    # --- docker -------------------------------------------------------------
    docker_packages: Literal["debian", "docker-ce"] = Field(
        "debian", description="docker.io+docker-compose, or Docker's own packages"
    )
    docker_log_max_size: str = Field("10m", pattern=r"^\d+[kmg]$", description="Per log file")
    docker_log_max_file: StrictInt = Field(5, ge=1, le=100, description="Log files kept")
    # --- preflight ----------------------------------------------------------
    preflight_min_ram: Size = Field("1GB", description="Minimum host RAM")
    preflight_min_disk: Size = Field("2GB", description="Minimum free disk on app_dir")
    # --- backups ------------------------------------------------------------
    backup_enabled: StrictBool = Field(True, description="Schedule backups")
    backup_dir: SafePath | None = Field(None, description="Backups (default app_dir/backups)")
    backup_schedule: str = Field("15 2 * * *", description="cron expression or @daily ...")
    backup_keep_days: StrictInt = Field(7, ge=1, le=3650, description="Daily backups kept")
    backup_keep_weeks: StrictInt = Field(4, ge=0, le=520, description="Weekly backups kept")
    backup_keep_months: StrictInt = Field(6, ge=0, le=240, description="Monthly backups kept")
    backup_on_failure_command: str | None = Field(None, description="Run when a backup fails")
    # --- watchdog (pgsteady-ctl watchdog, every minute) ----------------------
    watchdog_backoff: Duration = Field(
        "60s", description="Wait after a watchdog start that did not stay up; doubles each time"
    )
    watchdog_backoff_max: Duration = Field("1h", description="Longest wait between starts")
    watchdog_on_failure_command: str | None = Field(
        None, description="Run when the watchdog reports a crash loop"
    )
    postgres_restore_on_empty: StrictBool = Field(
        False, description="Restore the newest backup into an empty data volume"
    )
    # --- pgBackRest: WAL archiving, physical backups, point-in-time recovery ----
    pgbackrest_enabled: StrictBool = Field(True, description="Archive WAL with pgBackRest")
    pgbackrest_stanza: Annotated[str, BeforeValidator(_check_name)] = Field(
        "main", description="pgBackRest stanza name"
    )
    pgbackrest_repos: list[PgBackRestRepo] = Field(
        default_factory=lambda: [PgBackRestRepo()],
        min_length=1,
        max_length=4,
        description="Repositories, repo1 first",
    )
    pgbackrest_archive_timeout: Duration = Field(
        "60s", description="archive_timeout: WAL switched (and archived) at least this often"
    )
    pgbackrest_archive_queue_max: Size = Field(
        "1GB", description="WAL waiting in pg_wal beyond this is dropped from the archive"
    )
    pgbackrest_process_max: StrictInt = Field(1, ge=1, le=64, description="Parallel processes")
    pgbackrest_tls_port: StrictInt = Field(
        8432, ge=1024, le=65535, description="pgBackRest TLS server port (off-host repositories)"
    )
    pgbackrest_address: str | None = Field(
        None, description="Address other hosts reach this host's pgBackRest server on"
    )
    pgbackrest_full_schedule: str = Field("30 1 * * 0", description="Full backups")
    pgbackrest_diff_schedule: str = Field("30 1 * * 1-6", description="Differential backups")
    pgbackrest_verify_schedule: str = Field("30 4 * * 0", description="pgbackrest verify")

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
        if v not in SUPPORTED_VERSIONS:
            raise ValueError(f"{v} is not supported: use 13 to 18")
        return v

    @field_validator("postgres_bind")
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
    def paths(self) -> dict[str, str]:
        """The host layout under app_dir."""
        a = self.app_dir
        return {
            "compose": f"{a}/docker-compose.yml",
            "config": f"{a}/config",  # read by the server (root:postgres_uid 0750)
            "etc": f"{a}/etc",  # read by root's tools only (root 0700)
            "ctl_env": f"{a}/etc/ctl.env",
            "backup_config": f"{a}/etc/backup.json",
            "state": f"{a}/state",  # root 0700: the ctl lock, watchdog.json
            "secrets": f"{a}/secrets",
            "init": f"{a}/init",
            "bin": f"{a}/bin",
            "image": f"{a}/image",
            "backups": self.backup_path,
        }


def _server_parameter_like(key: str) -> str | None:
    """The Postgres parameter an unknown ``postgres_<name>`` key most likely means."""
    from pgsteady.pgparams import available_versions, load_catalog

    names: set[str] = set()
    for version in available_versions():
        names.update(load_catalog(version))
    close = difflib.get_close_matches(key.removeprefix("postgres_"), sorted(names), n=1)
    return close[0] if close else None


def _unknown_key_errors(keys: list[str], known: set[str]) -> list[str]:
    errors = []
    for key in keys:
        if key in known:
            continue
        close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.8)
        param = None if close else _server_parameter_like(key)
        if close:
            hint = f"; did you mean {close[0]}?"
        elif param:
            hint = f"; server parameters go in postgres_settings, e.g. {{{param!r}: ...}}"
        else:
            hint = "; see group_data/all.py for every setting"
        errors.append(f"{key}: unknown setting{hint}")
    return errors


def _format_error(err: Any) -> str:
    key = ".".join(str(p) for p in err["loc"]) or "settings"
    msg = err["msg"].removeprefix("Value error, ")
    if "input" not in err or key == "settings":
        return f"{key}: {msg}"
    value = repr(err["input"])
    if msg.startswith(f"{value} "):  # the validator named the value itself
        msg = msg.removeprefix(value)
    return f"{key} = {value}: {msg.strip()}"


def _cross_checks(s: Settings) -> list[str]:
    errors = []
    ram = s.host_ram_mb * 1024 * 1024
    if s.postgres_memory_limit != "auto" and ram and s.memory_limit_bytes > ram:
        errors.append(
            f"postgres_memory_limit = {s.postgres_memory_limit!r}: above the host's RAM "
            f"({s.host_ram_mb} MB); use 'auto' or a size up to the RAM"
        )
    if s.postgres_cpus != "auto" and s.host_cpus and float(s.postgres_cpus) > s.host_cpus:
        errors.append(f"postgres_cpus = {s.postgres_cpus!r}: above the host's {s.host_cpus} CPUs")
    if s.postgres_image_source == "debian" and s.postgres_version not in DEBIAN_SUITES:
        accepted = " or ".join(str(v) for v in DEBIAN_SUITES)
        errors.append(
            f"postgres_version = {s.postgres_version}: Debian packages only {accepted} "
            "(postgres_image_source=debian); use one of those or another image source"
        )
    if s.seconds("watchdog_backoff") < 1:
        errors.append(
            f"watchdog_backoff = {s.watchdog_backoff!r}: below 1s; the watchdog counts whole "
            "seconds (use e.g. 60s)"
        )
    if s.seconds("watchdog_backoff") > s.seconds("watchdog_backoff_max"):
        errors.append(
            f"watchdog_backoff = {s.watchdog_backoff!r}: longer than watchdog_backoff_max "
            f"({s.watchdog_backoff_max!r}); use a backoff up to the maximum"
        )
    if s.postgres_image_source == "archive" and not s.postgres_image_archive:
        errors.append("postgres_image_archive: required when postgres_image_source=archive")
    if s.postgres_restore_on_empty and s.postgres_image_source != "debian":
        errors.append(
            f"postgres_restore_on_empty = True: needs postgres_image_source = 'debian' (got "
            f"{s.postgres_image_source!r}); restore-on-empty is done by pgsteady's Debian-built "
            "image, whose entrypoint reads the root-only backups before dropping to the "
            "postgres user. The official image (registry, auto, archive) starts its init "
            "scripts as that user, after initdb, and cannot read them: it would start empty"
        )
    if s.postgres_image_source == "archive" and not s.postgres_image:
        errors.append(
            "postgres_image: required when postgres_image_source=archive "
            "(the image name inside the tarball)"
        )
    for i, path in enumerate(s.postgres_schema_files):
        name = os.path.basename(path)
        if not os.path.isfile(path):
            errors.append(
                f"postgres_schema_files[{i}] = {path!r}: no such file here "
                "(paths are read on the machine that runs the deploy)"
            )
        elif not re.fullmatch(r"[A-Za-z0-9._-]+\.sql", name):
            errors.append(
                f"postgres_schema_files[{i}] = {path!r}: name it with letters, digits, "
                "'.', '_' and '-', ending in .sql"
            )
    errors.extend(_tls_checks(s))
    from pgsteady.pgbackrest import settings_errors as pgbackrest_errors

    errors.extend(pgbackrest_errors(s))
    if s.postgres_user == s.postgres_readonly_user:
        errors.append(
            f"postgres_readonly_user = {s.postgres_readonly_user!r}: must differ from postgres_user"
        )
    if s.postgres_monitor_user in (s.postgres_user, s.postgres_readonly_user, "postgres"):
        errors.append(
            f"postgres_monitor_user = {s.postgres_monitor_user!r}: must differ from "
            "postgres_user, postgres_readonly_user and the superuser 'postgres'"
        )
    if s.postgres_settings:
        from pgsteady.pgparams import available_versions, validate_overrides

        if s.postgres_version in available_versions():
            managed = safety.MANAGED_KEYS
            unmanaged = {k: v for k, v in s.postgres_settings.items() if k not in managed}
            errors.extend(validate_overrides(s.postgres_version, unmanaged))
    errors.extend(safety.errors(s))
    if "postgres" in (s.postgres_user, s.postgres_readonly_user):
        errors.append("postgres_user: 'postgres' is the superuser; the app needs its own role")
    return errors


def _tls_checks(s: Settings) -> list[str]:
    from pgsteady.tls import check_supplied, valid_name

    errors = [
        f"postgres_tls_extra_names[{i}] = {name!r}: not a DNS name or IP address"
        for i, name in enumerate(s.postgres_tls_extra_names)
        if not valid_name(name)
    ]
    supplied = (s.postgres_tls_cert_file, s.postgres_tls_key_file, s.postgres_tls_ca_file)
    if any(supplied) and not all(supplied):
        errors.append(
            "postgres_tls_cert_file, postgres_tls_key_file, postgres_tls_ca_file: set all "
            "three (your certificate, its key, the CA clients verify it with) or none "
            "(pgsteady issues one from the inventory's CA)"
        )
    elif all(supplied):
        errors.extend(check_supplied(*supplied))  # type: ignore[arg-type]
    return errors


def build_settings(data: Mapping[str, Any], facts: HostFacts, host: str = "") -> Settings:
    """Validate the operator's data for one host; raise SettingsError with every problem."""
    ours = {k: v for k, v in data.items() if k.startswith(SETTING_PREFIXES)}
    known = {n for n in Settings.model_fields if not n.startswith("host_")}
    errors = _unknown_key_errors(sorted(ours), known)
    values = {k: v for k, v in ours.items() if k in known}
    values.update(
        host_ram_mb=facts.ram_mb, host_cpus=facts.cpus, host_has_systemd=facts.has_systemd
    )
    try:
        settings = Settings(**values)
    except ValidationError as exc:
        errors.extend(_format_error(e) for e in exc.errors())
        raise SettingsError(errors, host) from None
    except (TypeError, ValueError) as exc:  # a validator's own helper failing oddly
        raise SettingsError([*errors, f"settings: {exc}"], host) from None
    errors.extend(_cross_checks(settings))
    if errors:
        raise SettingsError(errors, host)
    return settings


def defaults() -> dict[str, Any]:
    """The default of every operator setting (what group_data/all.py must state)."""
    out = {}
    for name, field in Settings.model_fields.items():
        if name.startswith("host_"):
            continue
        value = field.get_default(call_default_factory=True)
        if isinstance(value, list):
            value = [v.model_dump() if isinstance(v, BaseModel) else v for v in value]
        out[name] = value
    return out
