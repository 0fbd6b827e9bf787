"""A cluster seen across the inventory: its members, in inventory order, validated together.

Every host whose ``postgres_cluster_name`` is the same belongs to that cluster. Each one's
own deploy checks its own keys; what only the whole inventory shows is checked here, before
any operation: at least 3 members, unique names and private addresses (via
:func:`~pgsteady.cluster.topology.cluster_from_mapping`), and cluster-wide settings equal on
every member (a mismatch lists the hosts on each side).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pgsteady.cluster.topology import CLUSTER_KEYS, Cluster, ClusterError, cluster_from_mapping

#: Settings that must be equal on every member besides the cluster keys: one engine set
#: (version and image), one superuser and database, one pgBackRest stanza, one TLS CA,
#: PgBouncer on every member or none, one logical-backup plan (the primary leaves the
#: dump to its streaming standbys, so a standby with backups off would leave the cluster
#: with none: R10 M2).
SHARED_KEYS = (
    *CLUSTER_KEYS,
    "postgres_version",
    "postgres_image_source",
    "postgres_user",
    "postgres_db",
    "backup_enabled",
    "backup_schedule",
    "pgbackrest_enabled",
    "pgbackrest_stanza",
    "pgbackrest_repos",
    "postgres_tls_ca_file",
    "pgbouncer_enabled",  # the auth role, its secret and pg_hba rule are the cluster's
    # The leader runs the seed's max_connections (Patroni's dynamic configuration is the
    # seed's): every member's pool is sized against these, so a member with other values
    # would size its pool for a server that does not exist.
    "postgres_db_type",
    "postgres_max_connections",
    "postgres_settings",
    "pgbouncer_default_pool_size",
)


def member_address(name: str, data: Mapping[str, Any]) -> Any:
    """The private address the other members dial: postgres_cluster_address, else
    ssh_hostname, else the inventory name."""
    return data.get("postgres_cluster_address") or data.get("ssh_hostname") or name


def cluster_of(
    name: str, hosts: Sequence[tuple[str, Mapping[str, Any]]], defaults: Mapping[str, Any]
) -> Cluster:
    """The validated cluster ``name`` from ``hosts`` ((inventory name, merged data) in
    inventory order; ``defaults`` fills what a host does not set). Raises ClusterError."""
    members = [(h, data) for h, data in hosts if data.get("postgres_cluster_name") == name]
    errors: list[str] = []
    for key in SHARED_KEYS:
        sides: dict[str, list[str]] = {}
        for host, data in members:
            sides.setdefault(repr(data.get(key, defaults.get(key))), []).append(host)
        if len(sides) > 1:
            listed = "; ".join(f"{v} on {', '.join(hs)}" for v, hs in sides.items())
            errors.append(
                f"{key}: differs between the members of cluster {name!r} ({listed}); "
                "accepted: one value on every member"
            )
    first = members[0][1] if members else {}
    data = {k: first.get(k, defaults.get(k)) for k in CLUSTER_KEYS if k in first or k in defaults}
    data["postgres_cluster_name"] = name
    data["members"] = [{"name": h, "address": member_address(h, d)} for h, d in members]
    try:
        cluster = cluster_from_mapping(data)
    except ClusterError as exc:
        raise ClusterError(errors + exc.errors) from None
    if errors:
        raise ClusterError(errors)
    return cluster
