"""Adding hosts to a running cluster: the refusal of a change to etcd's membership,
before any operation (pgsteady/cluster/growth.py says which changes and why)."""

from __future__ import annotations

from pyinfra import host, inventory
from pyinfra.api.exceptions import DeployError
from pyinfra.facts.files import FileContents

from pgsteady.cluster import etcd_service as svc
from pgsteady.cluster.growth import etcd_change
from pgsteady.settings import Settings
from tasks.cluster import load_cluster, member_settings


def refuse_etcd_change(s: Settings) -> None:
    """Stop the run when the inventory would move etcd off the hosts it runs on. Every
    host reads every member's etcd-initial.env (written once, on the hosts that ran
    etcd), so a run limited to new hosts stops as well."""
    cluster = load_cluster(s)
    if cluster is None:
        return
    found: dict[str, str] = {}
    for member in cluster.members:
        state = member_settings(member.name).layout.state
        lines = inventory.get_host(member.name).get_fact(
            FileContents, path=f"{state}/{svc.INITIAL_ENV}"
        )
        if lines:
            found[member.name] = "\n".join(lines)
    problem = etcd_change(cluster, found)
    if problem:
        raise DeployError(f"{host.name}: {problem}")
