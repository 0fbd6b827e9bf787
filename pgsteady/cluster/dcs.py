"""Converging Patroni's dynamic configuration (DCS ``/config``): what pgsteady wants there,
and the smallest patch that gets it there.

The document is compared leaf by leaf: a leaf is a scalar or a list (``pg_hba`` is sent
whole, as Patroni replaces lists). A leaf pgsteady managed before and no longer wants is
sent as ``null``, which Patroni's merge deletes; leaves pgsteady never managed (set by an
operator with ``patronictl edit-config``) are left alone. A converged cluster gives an
empty patch, so a second deploy sends nothing.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any

from pgsteady.cluster.topology import Cluster
from pgsteady.settings import Settings

Path = tuple[str, ...]
SEP = "/"  # never in a GUC name (which may hold a dot: pg_stat_statements.max)


def leaves(doc: Mapping[str, Any], prefix: Path = ()) -> dict[Path, Any]:
    """Every leaf of ``doc`` by its path (a nested mapping is walked, anything else is a leaf)."""
    out: dict[Path, Any] = {}
    for key, value in doc.items():
        path = (*prefix, str(key))
        if isinstance(value, Mapping) and value:
            out.update(leaves(value, path))
        else:
            out[path] = value
    return out


def managed_paths(desired: Mapping[str, Any]) -> list[str]:
    """The leaves of ``desired`` as names joined by SEP: what ``state/dcs-managed.json`` keeps."""
    for path in leaves(desired):
        if any(SEP in part for part in path):
            raise ValueError(f"DCS key {path!r}: a key with {SEP!r} cannot be tracked")
    return sorted(SEP.join(p) for p in leaves(desired))


def _same(current: Any, wanted: Any) -> bool:
    # Patroni keeps what it was sent (JSON); a YAML-seeded 'on' and a sent 'on' are equal.
    if isinstance(current, bool) or isinstance(wanted, bool):
        return current is wanted
    if isinstance(current, (int, float)) and isinstance(wanted, str | int | float):
        return str(current) == str(wanted)
    if isinstance(wanted, (int, float)) and isinstance(current, str):
        return current == str(wanted)
    return current == wanted


def patch(
    current: Mapping[str, Any], desired: Mapping[str, Any], previously_managed: Iterable[str]
) -> dict[str, Any]:
    """The nested patch for Patroni's ``PATCH /config`` (``{}`` when converged)."""
    have, want = leaves(current), leaves(desired)
    changes: dict[Path, Any] = {
        path: value
        for path, value in want.items()
        if path not in have or not _same(have[path], value)
    }
    for name in previously_managed:
        path = tuple(name.split(SEP))
        if path not in want and path in have and have[path] is not None:
            changes[path] = None
    out: dict[str, Any] = {}
    for path in sorted(changes):
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = changes[path]
    return out


def describe(p: Mapping[str, Any]) -> str:
    """The changed keys of a patch, for an operation's name (values are not shown)."""
    names = sorted(SEP.join(path) for path in leaves(p))
    return ", ".join(names) if names else "nothing"


def hba_lines(s: Settings, cluster: Cluster) -> list[str]:
    """The cluster's pg_hba: the single host's rules, with the members' addresses as the
    only client networks (clients come through a member's HAProxy, which filters them by
    postgres_allowed_networks) and TLS always required; PgBouncer's auth_query role, on
    the socket and from the members (their poolers reach the leader through HAProxy)."""
    from pgsteady.postgres.parameters import hba_rules
    from pgsteady.stack import pgbouncer
    from pgsteady.stack.compose import SUPERUSER

    networks = [str(ipaddress.ip_network(m.address)) for m in cluster.members]
    rules = hba_rules(
        networks,
        SUPERUSER,
        database=s.postgres_db,
        app_roles=[r for r in (s.postgres_user, s.postgres_readonly_user) if r],
        monitor_role=s.postgres_monitor_user,
        require_ssl=True,
        pooler_role=pgbouncer.AUTH_USER if s.pgbouncer_enabled else None,
        pooler_networks=networks,  # every member's pooler dials the leader via HAProxy
    )
    return [
        " ".join(x for x in (r.type, r.database, r.user, r.address, r.method) if x) for r in rules
    ]


def parameters(s: Settings) -> dict[str, str]:
    """The cluster's postgresql.conf values: the single host's tuning, archiving and
    overrides, and TLS with the same container paths on every member."""
    from pgsteady.postgres.conf_files import expected_settings, tls_settings
    from pgsteady.stack.layout import KEY_MOUNT, TLS_MOUNT

    return {**tls_settings(TLS_MOUNT, KEY_MOUNT), **expected_settings(s)}


def desired(s: Settings, cluster: Cluster) -> dict[str, Any]:
    """The DCS document pgsteady converges (and seeds ``bootstrap.dcs`` with); with
    pgBackRest also the replicas' ``restore_command`` (pgsteady.backup.cluster_archive)."""
    from pgsteady.backup.cluster_archive import recovery_conf
    from pgsteady.cluster.patroni import dcs_document

    doc = dcs_document(cluster, parameters(s), hba_lines(s, cluster))
    if recovery_conf(s):
        doc["postgresql"]["recovery_conf"] = recovery_conf(s)
    return doc


def show_argv(config_dir: str) -> list[str]:
    """patronictl printing the DCS configuration (YAML) of the member at ``config_dir``."""
    return ["patronictl", "-c", config_dir, "show-config"]


def apply_argv(config_dir: str) -> list[str]:
    """patronictl merging a patch read from stdin into the DCS (``null`` deletes a key),
    without a prompt: the same merge as Patroni's ``PATCH /config``."""
    return ["patronictl", "-c", config_dir, "edit-config", "--apply", "-", "--force", "--quiet"]
