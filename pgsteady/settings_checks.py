"""Checks of a whole Settings: unknown keys, and rules that span several settings.

:func:`pgsteady.settings.build_settings` runs them after each value passed its own type
check (pgsteady/setting_types.py); every message names the key, the value and what is
accepted.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Collection, Iterable
from typing import TYPE_CHECKING, Any

from pgsteady.cluster.topology import CLUSTER_KEYS, key_errors
from pgsteady.postgres import safety
from pgsteady.stack.image import SUITES as DEBIAN_SUITES
from pgsteady.stack.upgrade import upgrade_checks

if TYPE_CHECKING:
    from pgsteady.settings import Settings

#: host.data keys with these prefixes are pgsteady's alone: an unknown one is a mistake.
OWN_PREFIXES = ("postgres_", "pgbackrest_", "watchdog_", "metrics_", "node_exporter_")
#: Prefixes pgsteady shares with other deploy packages in the same inventory (a Docker
#: package's ``docker_version``): an unknown key there is refused only when it is a
#: near miss of a pgsteady setting, i.e. most likely a typo of one.
SHARED_PREFIXES = ("app_", "compose_", "backup_", "docker_", "healthcheck_", "preflight_")
#: How alike (difflib ratio) an unknown key must be to a setting to count as its typo;
#: under a shared prefix the part after the prefix is compared (``docker_version`` and
#: ``docker_packages`` share only their prefix).
TYPO_CUTOFF = 0.8
SHARED_TYPO_CUTOFF = 0.6


def _server_parameter_like(key: str) -> str | None:
    """The Postgres parameter an unknown ``postgres_<name>`` key most likely means."""
    from pgsteady.postgres.parameters import available_versions, load_catalog

    names: set[str] = set()
    for version in available_versions():
        names.update(load_catalog(version))
    close = difflib.get_close_matches(key.removeprefix("postgres_"), sorted(names), n=1)
    return close[0] if close else None


def _near_miss(key: str, known: set[str]) -> list[str]:
    """The setting ``key`` is most likely a typo of (an empty list when none)."""
    shared = next((p for p in SHARED_PREFIXES if key.startswith(p)), None)
    if shared is None:
        return difflib.get_close_matches(key, sorted(known), n=1, cutoff=TYPO_CUTOFF)
    same = {k.removeprefix(shared): k for k in known if k.startswith(shared)}
    rest = key.removeprefix(shared)
    close = difflib.get_close_matches(rest, sorted(same), n=1, cutoff=SHARED_TYPO_CUTOFF)
    return [same[c] for c in close]


def unknown_key_errors(keys: Iterable[str], known: set[str]) -> list[str]:
    """Errors for the keys that look like pgsteady's but name no setting.

    Keys without a pgsteady prefix are other packages' data (pyinfra's ``ssh_user``, a
    Docker package's ``docker_version``) and pass; so do keys under a shared prefix
    unless they are a near miss of a setting.
    """
    errors = []
    for key in sorted(keys):
        if key in known or not key.startswith(OWN_PREFIXES + SHARED_PREFIXES):
            continue
        close = _near_miss(key, known)
        if not close and not key.startswith(OWN_PREFIXES):
            continue
        param = None if close or not key.startswith("postgres_") else _server_parameter_like(key)
        if close:
            hint = f"; did you mean {close[0]}?"
        elif param:
            hint = f"; server parameters go in postgres_settings, e.g. {{{param!r}: ...}}"
        else:
            hint = "; docs/settings.md lists every setting"
        errors.append(f"{key}: unknown setting{hint}")
    return errors


#: Shorter sensitive texts are not searched for inside messages (they would mangle words).
MIN_REDACTED = 4


def redacted(value: Any) -> str:
    """What an error shows instead of a sensitive value: its length, never its text."""
    return f"<redacted, {len(str(value))} characters>"


def format_error(err: Any, sensitive: Collection[str] = ()) -> str:
    """One pydantic error as ``key = value: rule``; a sensitive key's value is redacted."""
    key = ".".join(str(p) for p in err["loc"]) or "settings"
    msg = err["msg"].removeprefix("Value error, ")
    if "input" not in err or key == "settings":
        return f"{key}: {msg}"
    value = repr(err["input"])
    if msg.startswith(f"{value} "):  # the validator named the value itself
        msg = msg.removeprefix(value)
    if err["loc"] and err["loc"][0] in sensitive:
        shown, text = redacted(err["input"]), str(err["input"])
        msg = msg.replace(value, shown)
        msg = msg.replace(text, shown) if len(text) >= MIN_REDACTED else msg
        value = shown
    return f"{key} = {value}: {msg.strip()}"


def cross_checks(s: Settings) -> list[str]:
    """Rules that span settings or need the host; empty when all hold."""
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
    if s.postgres_cluster_name is not None:
        errors.extend(cluster_checks(s))
    if s.postgres_restore_on_empty and s.postgres_image_source != "debian":
        errors.append(
            f"postgres_restore_on_empty = True: needs postgres_image_source = 'debian' (got "
            f"{s.postgres_image_source!r}); restore-on-empty is done by pgsteady's Debian-built "
            "image, whose entrypoint reads the root-only backups before dropping to the "
            "postgres user. The official image (registry, auto, archive) starts its init "
            "scripts as that user, after initdb, and cannot read them: it would start empty"
        )
    errors.extend(upgrade_checks(s))
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
    from pgsteady.backup.pgbackrest import settings_errors as pgbackrest_errors

    errors.extend(pgbackrest_errors(s))
    from pgsteady.stack.exporters import settings_errors as metrics_errors

    errors.extend(metrics_errors(s))
    from pgsteady.stack.pgbouncer import settings_errors as pgbouncer_errors

    errors.extend(pgbouncer_errors(s))
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
        from pgsteady.postgres.parameters import available_versions, validate_overrides

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


#: Versions a cluster may run: their image's Debian suite (pgsteady.stack.image.SUITES)
#: ships Patroni >= 3.0.3 (trixie: 4.0.7). Bookworm's 3.0.2 (the PostgreSQL 15 image)
#: puts the etcd3 leader key without comparing its revision (fixed upstream, PR 2689).
CLUSTER_VERSIONS = (17,)


def cluster_checks(s: Settings) -> list[str]:
    """One cluster member's own rules (the inventory-wide ones: pgsteady.cluster.inventory)."""
    data = {key: getattr(s, key) for key in CLUSTER_KEYS}
    errors = key_errors(data)
    if s.postgres_image_source in ("registry", "archive"):
        errors.append(
            f"postgres_image_source = {s.postgres_image_source!r}: a cluster member runs "
            "Patroni, etcd and HAProxy from pgsteady's Debian-built image (an archive's "
            "flavour cannot be checked yet); use 'debian' or 'auto'"
        )
    if s.postgres_version not in CLUSTER_VERSIONS:
        accepted = ", ".join(map(str, CLUSTER_VERSIONS))
        errors.append(
            f"postgres_cluster_name = {s.postgres_cluster_name!r} with postgres_version = "
            f"{s.postgres_version}: the image of that version ships Patroni 3.0.2, whose etcd3 "
            "client lets a resumed old leader take the leader key back and rewind the new "
            f"leader's acknowledged writes (fixed in 3.0.3); accepted: {accepted}"
        )
    if s.postgres_restore_on_empty:
        errors.append(
            "postgres_restore_on_empty = True: refused in a cluster, where Patroni decides "
            "between bootstrapping and cloning a member; use False"
        )
    errors.extend(_cluster_repo_errors(s))
    from pgsteady.cluster.pooler import port_errors

    errors.extend(port_errors(s))  # the pool sizes need the members: tasks/pgbouncer.py
    keywords = [n for n in s.postgres_allowed_networks if n in ("samenet", "samehost", "all")]
    if keywords:
        errors.append(
            f"postgres_allowed_networks = {s.postgres_allowed_networks!r}: in a cluster "
            f"HAProxy filters clients by address, and {', '.join(keywords)} is a pg_hba "
            "keyword; accepted: CIDRs such as '10.0.0.0/24'"
        )
    if s.postgres_tls_cert_file:
        errors.append(
            f"postgres_tls_cert_file = {s.postgres_tls_cert_file!r}: a cluster member's "
            "certificate must name every member; leave it unset (pgsteady issues them)"
        )
    return errors


def _cluster_repo_errors(s: Settings) -> list[str]:
    """A cluster archives into repositories every member shares: only off-host ones (a
    posix repository on each member would hold a different part of the WAL history)."""
    if not s.pgbackrest_enabled:
        return []
    errors = [
        f"pgbackrest_repos[{n}].kind = {r.kind!r}: in a cluster every member archives into "
        "the same repository, and a repository on each member would diverge; accepted: "
        "'host' (a host of the inventory's backup group)"
        for n, r in enumerate(s.pgbackrest_repos)
        if r.kind != "host"
    ]
    if not any(r.kind == "host" for r in s.pgbackrest_repos):
        errors.append(
            f"pgbackrest_enabled = True with pgbackrest_repos = "
            f"{[r.kind for r in s.pgbackrest_repos]!r}: a cluster's WAL archive needs a "
            "repository every member shares; accepted: a repository of kind 'host', or "
            "pgbackrest_enabled = False"
        )
    return errors
