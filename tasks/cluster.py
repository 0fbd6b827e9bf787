"""The current host's cluster, validated across the whole inventory (issue 15)."""

from __future__ import annotations

import os
import stat
from dataclasses import replace
from pathlib import Path

from pyinfra import host, inventory
from pyinfra.api.exceptions import DeployError
from pyinfra.facts.files import File

from pgsteady.ca_store import load_or_create_ca
from pgsteady.cluster import adopt
from pgsteady.cluster.inventory import cluster_of
from pgsteady.cluster.member_service import PATRONI_YML
from pgsteady.cluster.topology import Cluster, ClusterError
from pgsteady.settings import HostFacts, Settings, SettingsError, build_settings, defaults
from pgsteady.tls import TlsError
from tasks.facts import VolumePgVersion
from tasks.tls import ca_directory


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


def member_settings(name: str) -> Settings:
    """Another host's Settings, from its inventory data alone (its paths and names; no
    host facts: the values sized from RAM and CPUs are not for use)."""
    try:
        return build_settings(inventory.get_host(name).data.dict(), HostFacts(0, 0), host=name)
    except SettingsError as exc:
        raise DeployError(f"{host.name}: member {name}: {exc}") from None


def member_data(cluster: Cluster, marked: str) -> list[adopt.MemberData]:
    """Every member's data volume version, whether it was converged as a member (its
    patroni.yml) and whether the seed recorded its adoption (adopt.ADOPTED), read from each
    member's own host. Only what the decision can use (``marked``: the seed make
    cluster-adopt named): the record only while the marker names the seed, and a former
    member's data volume only while a member holds a single host's data or the seed's
    adoption is unrecorded, so a converged cluster's deploy skips those round trips."""
    seed = cluster.members[0].name
    rows = []
    for member in cluster.members:
        other, m = inventory.get_host(member.name), member_settings(member.name)
        was = bool(other.get_fact(File, path=f"{m.layout.config}/{PATRONI_YML}"))
        adopted = member.name == seed == marked and bool(
            other.get_fact(File, path=f"{m.layout.state}/{adopt.ADOPTED}")
        )
        version = None if was else other.get_fact(VolumePgVersion, volume=m.data_volume)
        rows.append((other, m, adopt.MemberData(member.name, version, was, adopted)))
    found = [row[2] for row in rows]
    if adopt.foreign(found) or (marked == seed and not found[0].adopted):
        found = [
            replace(d, data_version=o.get_fact(VolumePgVersion, volume=m.data_volume))
            if d.was_member
            else d
            for o, m, d in rows
        ]
    return found


def _private_dir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
        raise DeployError(f"{path}: must be your own private directory (0700): it holds secrets")


def cluster_folder(s: Settings, cluster: Cluster) -> Path:
    """The cluster's folder on the deploy machine, <CA dir>/clusters/<cluster>, 0700 (its
    shared secrets, its etcd CA, the adoption marker), after the inventory CA (which is
    made only in a new directory)."""
    directory, label = ca_directory(s)
    try:
        load_or_create_ca(directory, label)
    except TlsError as exc:
        raise DeployError(f"TLS: {exc}") from None
    folder = adopt.cluster_dir(directory, cluster.name)
    _private_dir(directory / "clusters")
    _private_dir(folder)
    return folder


def adopt_marker(s: Settings, cluster: Cluster) -> Path:
    """The deploy machine's record that make cluster-adopt copied the seed's passwords."""
    return cluster_folder(s, cluster) / adopt.MARKER


def _marked(s: Settings, cluster: Cluster) -> str:
    cluster_folder(s, cluster)  # checked (0700, the deploy user's) before its marker is read
    return adopt.marked_seed(ca_directory(s)[0], cluster.name)


def _data_and_marker(s: Settings, cluster: Cluster) -> tuple[list[adopt.MemberData], str]:
    marked = _marked(s, cluster)
    return member_data(cluster, marked), marked


def refuse_foreign_data(s: Settings) -> None:
    """Stop the run before any operation when a member's data volume holds data Patroni
    never managed (a single host's), unless the seed's is to be adopted:
    pgsteady.cluster.adopt says why and what to do. Every member reads every member's
    facts, so each host's deploy names the same hosts."""
    cluster = load_cluster(s)
    if cluster is None:
        return
    problems = adopt.refusals(cluster, s.postgres_version, *_data_and_marker(s, cluster))
    if problems:
        raise DeployError(f"{host.name}: " + "\n  ".join(problems))


def adoption(s: Settings) -> str:
    """What this run does with the seed's data: adopt.START, adopt.FINISH (an interrupted
    adoption) or adopt.NONE (a single host, an ordinary cluster converge)."""
    cluster = load_cluster(s)
    if cluster is None:
        return adopt.NONE
    return adopt.adoption(cluster, s.postgres_version, *_data_and_marker(s, cluster))


def adoption_unrecorded(s: Settings) -> bool:
    """The seed completed its adoption before the record existed and lacks it."""
    cluster = load_cluster(s)
    if cluster is None:
        return False
    return adopt.unrecorded(cluster, s.postgres_version, *_data_and_marker(s, cluster))


def adopting(s: Settings) -> bool:
    """This run adopts the seed's single-host data (make cluster-adopt ran), or finishes
    an adoption a failed deploy left."""
    return adoption(s) != adopt.NONE
