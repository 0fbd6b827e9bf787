"""Which cluster members may bring an existing data directory (issue 15, design §7).

A cluster's seed (its first member in inventory order) starts Patroni alone; the other
members clone it. A member whose data volume already holds a Postgres cluster that Patroni
never managed (a single host's data) changes that: its data must never be initialised
over, its passwords must stay valid, and an empty member must never win the leader race.
Such an inventory is refused before any operation, with the reason and the way forward
(:func:`refusals`, from each member's facts), except one case: the seed holds the data,
at the cluster's major version, and ``make cluster-adopt HOST=<seed>`` has copied its
password files into the cluster's secrets on the deploy machine (:data:`MARKER` names the
seed). Then the seed's deploy restarts its stack under Patroni on the same volume, which
adopts the data as leader, and creates the replication and pg_rewind roles Patroni makes
only when it initialises (:func:`roles_sql`); only then do the other members clone it.

The seed records a completed adoption in its state directory (:data:`ADOPTED`). A deploy
that died between writing patroni.yml and that record (the single host stopped, Patroni
not yet leading, the roles missing) leaves the seed a member without it: the next deploy
finishes the adoption (:func:`adoption` says :data:`FINISH`) instead of converging it as
an ordinary member, and no other member starts until the seed leads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pgsteady.cluster.topology import Cluster

RUNBOOK = "docs/operations.md, 'Single host to cluster'"
#: In the cluster's folder of the deploy machine: the seed whose passwords were copied.
MARKER = "adopt-seed"


def cluster_dir(ca_dir: Path, cluster: str) -> Path:
    """The cluster's folder on the deploy machine, under the inventory's CA directory."""
    return ca_dir / "clusters" / cluster


def marked_seed(ca_dir: Path, cluster: str) -> str:
    """The seed make cluster-adopt named for ``cluster`` ("" without its marker)."""
    try:
        return (cluster_dir(ca_dir, cluster) / MARKER).read_text().strip()
    except OSError:  # none (or unreadable: then make cluster-adopt's refusal says so)
        return ""


#: In the seed's state directory (root, 0644): written when its adoption completed.
ADOPTED = "adopted"
#: :func:`adoption`'s answers: no adoption, a first one, the end of an interrupted one.
NONE, START, FINISH = "", "start", "finish"


@dataclass(frozen=True)
class MemberData:
    """What a member's host holds: its data volume's major version (None: no data),
    whether pgsteady converged it as a cluster member before (its patroni.yml exists) and
    whether it completed an adoption (its state file :data:`ADOPTED`)."""

    name: str
    data_version: int | None
    was_member: bool
    adopted: bool = False


def foreign(members: Sequence[MemberData]) -> list[MemberData]:
    """The members whose data volume holds data Patroni never managed (a single host's)."""
    return [m for m in members if m.data_version is not None and not m.was_member]


def adoption(cluster: Cluster, version: int, members: Sequence[MemberData], marked: str) -> str:
    """What this run does with the seed's data (``marked``: the MARKER file's seed name):
    :data:`START` when the seed holds a single host's data the inventory may adopt;
    :data:`FINISH` when an adoption began (make cluster-adopt named the seed, its data is
    at the cluster's version, its patroni.yml is written) but never recorded
    :data:`ADOPTED` while no other member holds data (none cloned it yet); else
    :data:`NONE`. Members that cloned the seed mean its adoption completed (before the
    record existed)."""
    if refusals(cluster, version, members, marked):
        return NONE
    if foreign(members):
        return START
    name = cluster.members[0].name
    seed = next((m for m in members if m.name == name), None)
    interrupted = (
        seed is not None
        and marked == name
        and seed.data_version == version
        and seed.was_member
        and not seed.adopted
        and all(m.data_version is None for m in members if m.name != name)
    )
    return FINISH if interrupted else NONE


def unrecorded(cluster: Cluster, version: int, members: Sequence[MemberData], marked: str) -> bool:
    """The seed's adoption completed before the record existed (another member cloned it)
    but :data:`ADOPTED` is missing: write it, so make status stops showing an adoption in
    progress and later deploys skip the adoption facts."""
    if adoption(cluster, version, members, marked) != NONE:
        return False
    name = cluster.members[0].name
    seed = next((m for m in members if m.name == name), None)
    return (
        seed is not None
        and marked == name
        and seed.was_member
        and not seed.adopted
        and any(m.data_version is not None for m in members if m.name != name)
    )


def adopting(cluster: Cluster, version: int, members: Sequence[MemberData], marked: str) -> bool:
    """The seed's data is adopted in this run, first or to finish an interrupted one."""
    return adoption(cluster, version, members, marked) != NONE


def refusals(
    cluster: Cluster, version: int, members: Sequence[MemberData], marked: str = ""
) -> list[str]:
    """One message per reason the inventory cannot converge without risking a member's
    data; empty when every member with data is one Patroni manages already, or when the
    seed's data is to be adopted (``marked`` names it: make cluster-adopt ran)."""
    found = foreign(members)
    if not found:
        return []
    seed = cluster.members[0].name
    names = ", ".join(m.name for m in found)
    old = [m for m in members if m.data_version is not None and m.was_member]
    if old:
        return [
            f"{names}: its data volume holds a single host's Postgres data while cluster "
            f"{cluster.name!r} already runs on {', '.join(m.name for m in old)}; joining "
            "would replace that data by a clone. Accepted: an empty data volume (take a "
            "backup, then remove the volume) to add the host as a replica"
        ]
    if len(found) > 1:
        return [
            f"{names}: more than one member's data volume holds Postgres data; accepted: "
            "at most one host with data, the seed (the first member of the group). Keep the "
            "data you need on one host, empty the others' data volumes"
        ]
    m = found[0]
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
    if marked == m.name:
        return []
    return [
        f"{m.name}: its data volume holds a single host's Postgres {version} data; run "
        f"`make cluster-adopt HOST={m.name}` first, which copies its passwords into the "
        "cluster's secrets so that clients keep them, then deploy (the seed adopts its data, "
        f"the others clone it): {RUNBOOK}"
    ]


#: The file functions pg_rewind calls, granted to its role as Patroni does at bootstrap.
REWIND_FUNCTIONS = (
    "pg_ls_dir(text, boolean, boolean)",
    "pg_stat_file(text, boolean)",
    "pg_read_binary_file(text)",
    "pg_read_binary_file(text, bigint, bigint, boolean)",
)


def roles_sql(replication: tuple[str, str], rewind: tuple[str, str]) -> str:
    """psql script creating (or updating) the replication and pg_rewind roles, each
    ``(role, password file in the container)``: the roles Patroni creates only after an
    initdb. The passwords are read by psql in the container and kept out of the logs."""
    lines = [
        "\\set ON_ERROR_STOP on",
        "SET search_path = pg_catalog, pg_temp;",
        "SET log_statement = 'none';",
        "SET log_min_duration_statement = -1;",
        "SET log_min_error_statement = 'panic';",
        "SET pg_stat_statements.track = 'none';",
        "SET pg_stat_statements.track_utility = off;",
    ]
    for (role, path), options in ((replication, "REPLICATION"), (rewind, "NOREPLICATION")):
        lines += [
            f"\\set pgsteady_pw `cat {path}`",
            f"SELECT 'CREATE ROLE {role}' WHERE NOT EXISTS "
            f"(SELECT FROM pg_catalog.pg_roles WHERE rolname = '{role}') \\gexec",
            f"ALTER ROLE {role} WITH LOGIN NOSUPERUSER {options} PASSWORD :'pgsteady_pw';",
        ]
    lines += [f"GRANT EXECUTE ON FUNCTION pg_catalog.{f} TO {rewind[0]};" for f in REWIND_FUNCTIONS]
    return "\n".join(lines) + "\n"
