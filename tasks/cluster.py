"""The current host's cluster, validated across the whole inventory (issue 15)."""

from __future__ import annotations

from pathlib import Path

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


def member_data(cluster: Cluster) -> list[adopt.MemberData]:
    """Every member's data volume version and whether it was converged as a member (its
    patroni.yml), read from each member's own host."""
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
    return found


def adopt_marker(s: Settings, cluster: Cluster) -> Path:
    """The deploy machine's record that make cluster-adopt copied the seed's passwords."""
    from tasks.etcd import _cluster_folder  # tasks.etcd imports this module

    return _cluster_folder(s, cluster) / adopt.MARKER


def _marked(s: Settings, cluster: Cluster) -> str:
    path = adopt_marker(s, cluster)
    return path.read_text().strip() if path.is_file() else ""


def refuse_foreign_data(s: Settings) -> None:
    """Stop the run before any operation when a member's data volume holds data Patroni
    never managed (a single host's), unless the seed's is to be adopted:
    pgsteady.cluster.adopt says why and what to do. Every member reads every member's
    facts, so each host's deploy names the same hosts."""
    cluster = load_cluster(s)
    if cluster is None:
        return
    problems = adopt.refusals(
        cluster, s.postgres_version, member_data(cluster), _marked(s, cluster)
    )
    if problems:
        raise DeployError(f"{host.name}: " + "\n  ".join(problems))


def adopting(s: Settings) -> bool:
    """This run adopts the seed's single-host data (make cluster-adopt ran)."""
    cluster = load_cluster(s)
    if cluster is None:
        return False
    found = member_data(cluster)
    return adopt.adopting(cluster, s.postgres_version, found, _marked(s, cluster))
