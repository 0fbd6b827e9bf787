"""Growing a running cluster: which inventory changes keep etcd's membership (issue 15
item 3). Pure: the members' ``state/etcd-initial.env`` texts come from the deploy.

pgsteady runs etcd on the first 3 members in inventory order (the first 5 from 7 members
up, :func:`pgsteady.cluster.topology.etcd_count`) and never changes a running etcd's
membership: there is no ``etcdctl member add``/``remove`` step. Adding hosts is safe while
the etcd members stay the same hosts (3 -> 4..6 members; 7 -> 8 and up). A change that
would move etcd (6 -> 7 members makes 3 etcd members 5; a new host listed before an etcd
host takes its place) would start etcd on hosts that no running member knows and write
Patroni configurations naming them, so it is refused before any operation.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from pgsteady.cluster.topology import Cluster, etcd_count

INITIAL_CLUSTER = "ETCD_INITIAL_CLUSTER="


def initial_members(env_text: str) -> tuple[str, ...]:
    """The member names of ``ETCD_INITIAL_CLUSTER`` in an etcd-initial.env text (the
    running etcd's first membership, written once by tasks/etcd.py); () when absent."""
    for line in env_text.splitlines():
        if line.startswith(INITIAL_CLUSTER):
            value = line[len(INITIAL_CLUSTER) :].strip()
            return tuple(p.split("=", 1)[0] for p in value.split(",") if "=" in p)
    return ()


def accepted_sizes(etcd_members: int) -> str:
    """The member counts that keep ``etcd_members`` etcd members, in words."""
    return "3 to 6 members" if etcd_members == 3 else "7 or more members"


def etcd_change(cluster: Cluster, found: Mapping[str, str]) -> str | None:
    """Why this inventory would change the running etcd's membership, or None.

    ``found``: member host -> its etcd-initial.env text, for the members that have one
    (the hosts that ran etcd). A cluster with none has never started etcd: nothing runs,
    any layout is a bootstrap."""
    running = _running(found.values())
    if not running:
        return None
    wanted = tuple(m.name for m in cluster.etcd_members)
    if set(running) == set(wanted):
        return None
    size = len(cluster.members)
    now = len(running)
    moved = sorted(set(running) ^ set(wanted))
    return (
        f"postgres_cluster_name = {cluster.name!r}: the inventory lists {size} members, "
        f"whose etcd members would be {', '.join(wanted)}; the running etcd's are "
        f"{', '.join(running)} (from {', '.join(sorted(found))}), so this would change etcd's "
        f"membership ({', '.join(moved)}), which pgsteady does not do on a running cluster. "
        f"Accepted: keep {', '.join(running)} as the first {now} hosts of the group, and "
        f"{accepted_sizes(now)} "
        f"(this layout puts etcd on {etcd_count(size)})"
    )


def _running(texts: Iterable[str]) -> tuple[str, ...]:
    """The etcd members every recorded initial membership names (the first one found;
    every etcd host's file is written from the same inventory)."""
    for text in texts:
        names = initial_members(text)
        if names:
            return names
    return ()
