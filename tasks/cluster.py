"""The current host's cluster, validated across the whole inventory (issue 15)."""

from __future__ import annotations

from pyinfra import host, inventory
from pyinfra.api.exceptions import DeployError

from pgsteady.cluster.inventory import cluster_of
from pgsteady.cluster.topology import Cluster, ClusterError
from pgsteady.settings import Settings, defaults


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
