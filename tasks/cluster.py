"""The current host's cluster, validated across the whole inventory (issue 15)."""

from __future__ import annotations

from pyinfra import host, inventory
from pyinfra.api.exceptions import DeployError
from pyinfra.facts.files import File

from pgsteady.cluster import adopt
from pgsteady.cluster.inventory import cluster_of
from pgsteady.cluster.member_service import PATRONI_YML
from pgsteady.cluster.topology import Cluster, ClusterError
from pgsteady.settings import Settings, defaults
from tasks.facts import VolumePgVersion


def load_cluster(s: Settings) -> Cluster | None:
    """The cluster ``s`` belongs to (None for a single host), or a DeployError naming every
    problem before any operation runs."""
    if s.postgres_cluster_name is None:
        return None
    hosts = [(h.name, h.data.dict()) for h in inventory]
    try:
        return cluster_of(s.postgres_cluster_name, hosts, defaults())
    except ClusterError as exc:
        raise DeployError(f"{host.name}: {exc}") from None


def refuse_foreign_data(s: Settings) -> None:
    """Stop the run before any operation when a member's data volume holds data Patroni
    never managed (a single host's): pgsteady.cluster.adopt says why and what to do.
    Every member reads every member's facts, so each host's deploy names the same hosts."""
    cluster = load_cluster(s)
    if cluster is None:
        return
    base = defaults()
    found = []
    for member in cluster.members:
        other = inventory.get_host(member.name)
        data = other.data.dict()
        app_dir = data.get("app_dir", base.get("app_dir"))
        volume = adopt.data_volume(data, base)
        found.append(
            adopt.MemberData(
                member.name,
                other.get_fact(VolumePgVersion, volume=volume),
                bool(other.get_fact(File, path=f"{app_dir}/config/{PATRONI_YML}")),
            )
        )
    problems = adopt.refusals(cluster, s.postgres_version, found)
    if problems:
        raise DeployError(f"{host.name}: " + "\n  ".join(problems))
