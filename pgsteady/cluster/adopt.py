"""Which cluster members may bring an existing data directory (issue 15, design §7).

A cluster's seed (its first member in inventory order) starts Patroni alone; the other
members clone it. A member whose data volume already holds a Postgres cluster that Patroni
never managed (a single host's data) changes that: its data must never be initialised
over, its passwords must stay valid, and an empty member must never win the leader race.
Converging such a host into a cluster (adoption) is not automated yet, so every such
inventory is refused before any operation, with the reason and the way forward;
:func:`refusals` decides it from each member's facts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pgsteady.cluster.topology import Cluster

RUNBOOK = "docs/operations.md, 'Single host to cluster'"


@dataclass(frozen=True)
class MemberData:
    """What a member's host holds: its data volume's major version (None: no data) and
    whether pgsteady converged it as a cluster member before (its patroni.yml exists)."""

    name: str
    data_version: int | None
    was_member: bool


def data_volume(data: Mapping[str, Any], defaults: Mapping[str, Any]) -> str:
    """A host's data volume from its inventory data (Settings.data_volume's rule)."""
    named = data.get("postgres_data_volume", defaults.get("postgres_data_volume"))
    project = data.get("compose_project", defaults.get("compose_project"))
    return named or f"{project}_pgdata"


def refusals(cluster: Cluster, version: int, members: Sequence[MemberData]) -> list[str]:
    """One message per reason the inventory cannot converge without risking a member's
    data; empty when every member with data is one Patroni manages already."""
    foreign = [m for m in members if m.data_version is not None and not m.was_member]
    if not foreign:
        return []
    seed = cluster.members[0].name
    names = ", ".join(m.name for m in foreign)
    old = [m for m in members if m.data_version is not None and m.was_member]
    if old:
        return [
            f"{names}: its data volume holds a single host's Postgres data while cluster "
            f"{cluster.name!r} already runs on {', '.join(m.name for m in old)}; joining "
            "would replace that data by a clone. Accepted: an empty data volume (take a "
            "backup, then remove the volume) to add the host as a replica"
        ]
    if len(foreign) > 1:
        return [
            f"{names}: more than one member's data volume holds Postgres data; accepted: "
            "at most one host with data, the seed (the first member of the group). Keep the "
            "data you need on one host, empty the others' data volumes"
        ]
    m = foreign[0]
    if m.name != seed:
        return [
            f"{m.name}: its data volume holds Postgres data, but the seed of cluster "
            f"{cluster.name!r} (the first member in inventory order) is {seed}, which would "
            f"initialise a new cluster without that data; accepted: {m.name} first in the group"
        ]
    if m.data_version != version:
        return [
            f"{m.name}: its data volume holds Postgres {m.data_version} data and "
            f"postgres_version is {version}; a cluster runs one major version. Upgrade "
            f"the single host first (postgres_upgrade_from_volume, docs/operations.md "
            "'Major version upgrade'), then see " + RUNBOOK
        ]
    return [
        f"{m.name}: its data volume holds a single host's Postgres {version} data; "
        "converging a running single host into a cluster in place is not automated yet "
        f"(its passwords and system identifier would not carry over safely). Accepted: "
        f"keep {m.name} a single host, or move the data into a new cluster: {RUNBOOK}"
    ]
