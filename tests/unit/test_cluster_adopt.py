"""Members with data: which inventories converge, which are refused and what each refusal
names (pgsteady.cluster.adopt; the lab proves the refusal on a real single host)."""

from __future__ import annotations

import pytest

from pgsteady.cluster.adopt import (
    FINISH,
    NONE,
    START,
    MemberData,
    adopting,
    adoption,
    refusals,
    roles_sql,
)
from pgsteady.cluster.topology import cluster_from_mapping

CLUSTER = cluster_from_mapping(
    {
        "postgres_cluster_name": "main",
        "members": [{"name": f"pg{i}", "address": f"10.0.0.{10 + i}"} for i in (1, 2, 3)],
    }
)


def hosts(*data: tuple[int | None, bool]) -> list[MemberData]:
    return [MemberData(f"pg{i}", v, was) for i, (v, was) in enumerate(data, 1)]


@pytest.mark.parametrize(
    "members",
    [
        hosts((None, False), (None, False), (None, False)),  # a new cluster
        hosts((17, True), (17, True), (17, True)),  # a converged cluster
        hosts((17, True), (None, True), (None, False)),  # a replica to clone, a new host
    ],
)
def test_members_without_a_single_hosts_data_converge(members: list[MemberData]) -> None:
    assert refusals(CLUSTER, 17, members) == []


def test_the_seed_with_a_single_hosts_data_waits_for_make_cluster_adopt() -> None:
    members = hosts((17, False), (None, False), (None, False))
    (msg,) = refusals(CLUSTER, 17, members)
    assert msg.startswith("pg1: ") and "make cluster-adopt HOST=pg1" in msg
    assert not adopting(CLUSTER, 17, members, "")
    assert refusals(CLUSTER, 17, members, "pg1") == []  # its passwords were copied
    assert adopting(CLUSTER, 17, members, "pg1")
    assert refusals(CLUSTER, 17, members, "pg2") == [msg]  # copied from another host


def test_no_adoption_once_the_seed_is_a_member_or_without_data() -> None:
    assert not adopting(CLUSTER, 17, hosts((17, True), (17, True), (None, False)), "pg1")
    assert not adopting(CLUSTER, 17, hosts((None, False), (None, False), (None, False)), "pg1")
    # the marker never lets data on another member, or an older major, through
    assert refusals(CLUSTER, 17, hosts((None, False), (17, False), (None, False)), "pg2")
    assert refusals(CLUSTER, 17, hosts((15, False), (None, False), (None, False)), "pg1")


def test_roles_sql_reads_passwords_in_the_container_and_grants_rewind_functions() -> None:
    sql = roles_sql(("replicator", "/run/secrets/r"), ("pgsteady_rewind", "/run/secrets/w"))
    assert "\\set pgsteady_pw `cat /run/secrets/r`" in sql
    assert (
        "ALTER ROLE replicator WITH LOGIN NOSUPERUSER REPLICATION PASSWORD :'pgsteady_pw';" in sql
    )
    assert "SET log_statement = 'none';" in sql.split("\\set pgsteady_pw")[0]  # before any password
    assert sql.count("TO pgsteady_rewind;") == 4


def test_data_on_a_member_that_is_not_the_seed_names_it_and_the_seed() -> None:
    (msg,) = refusals(CLUSTER, 17, hosts((None, False), (17, False), (None, False)))
    assert msg.startswith("pg2: ") and "is pg1" in msg and "pg2 first in the group" in msg


def test_two_members_with_data_are_named_together() -> None:
    (msg,) = refusals(CLUSTER, 17, hosts((17, False), (None, False), (17, False)))
    assert msg.startswith("pg1, pg3: ") and "at most one host with data" in msg


def test_an_older_major_points_at_the_single_host_upgrade_first() -> None:
    (msg,) = refusals(CLUSTER, 17, hosts((15, False), (None, False), (None, False)))
    assert "Postgres 15 data and postgres_version is 17" in msg
    assert "postgres_upgrade_from_volume" in msg and "'Major version upgrade'" in msg


def test_a_single_hosts_data_beside_a_running_cluster_is_not_cloned_over() -> None:
    (msg,) = refusals(CLUSTER, 17, hosts((17, True), (17, True), (17, False)))
    assert msg.startswith("pg3: ") and "already runs on pg1, pg2" in msg
    assert "an empty data volume" in msg


def member(name: str, version: int | None, was: bool, adopted: bool = False) -> MemberData:
    return MemberData(name, version, was, adopted)


def test_a_seed_whose_adoption_was_interrupted_finishes_it() -> None:
    """M6: the deploy died after patroni.yml was written on every member, before the
    seed's record: the seed's data looks like a member's, yet its adoption is unfinished."""
    members = [member("pg1", 17, True), member("pg2", None, True), member("pg3", None, True)]
    assert refusals(CLUSTER, 17, members, "pg1") == []
    assert adoption(CLUSTER, 17, members, "pg1") == FINISH
    assert adopting(CLUSTER, 17, members, "pg1")
    # the order of the facts is not the decision's: the seed is the inventory's first
    assert adoption(CLUSTER, 17, members[::-1], "pg1") == FINISH


def test_a_first_adoption_starts_and_a_recorded_one_is_an_ordinary_member() -> None:
    fresh = [member("pg1", 17, False), member("pg2", None, False), member("pg3", None, False)]
    assert adoption(CLUSTER, 17, fresh, "pg1") == START
    done = [member("pg1", 17, True, adopted=True), member("pg2", None, True)]
    done.append(member("pg3", None, False))
    assert adoption(CLUSTER, 17, done, "pg1") == NONE
    assert not adopting(CLUSTER, 17, done, "pg1")


@pytest.mark.parametrize(
    ("members", "marked"),
    [
        # no make cluster-adopt: a new cluster's seed that bootstrapped
        ([member("pg1", 17, True), member("pg2", None, True), member("pg3", None, True)], ""),
        # the marker names another host
        ([member("pg1", 17, True), member("pg2", None, True), member("pg3", None, True)], "pg2"),
        # another member cloned the seed: its adoption completed before the record existed
        ([member("pg1", 17, True), member("pg2", 17, True), member("pg3", None, True)], "pg1"),
        # the seed lost its data (an emptied volume): nothing to adopt
        ([member("pg1", None, True), member("pg2", None, True), member("pg3", None, True)], "pg1"),
        # another major than the cluster's: never finished under this version
        ([member("pg1", 15, True), member("pg2", None, True), member("pg3", None, True)], "pg1"),
    ],
)
def test_no_adoption_to_finish(members: list[MemberData], marked: str) -> None:
    assert adoption(CLUSTER, 17, members, marked) == NONE


def test_an_adoption_completed_before_records_existed_gets_its_record() -> None:
    """R11 L2: a seed adopted before the record existed (a member cloned it) has the
    marker and no record: without one, make status showed an adoption in progress forever
    and every deploy read every member's volume."""
    from pgsteady.cluster.adopt import unrecorded

    cloned = [member("pg1", 17, True), member("pg2", 17, True), member("pg3", None, True)]
    assert adoption(CLUSTER, 17, cloned, "pg1") == NONE
    assert unrecorded(CLUSTER, 17, cloned, "pg1")
    recorded = [member("pg1", 17, True, adopted=True), *cloned[1:]]
    assert not unrecorded(CLUSTER, 17, recorded, "pg1")
    assert not unrecorded(CLUSTER, 17, cloned, "")  # no make cluster-adopt: nothing to record
    assert not unrecorded(CLUSTER, 17, cloned, "pg2")  # the marker names another host
    # an interrupted adoption is finished by the seed's step, not merely recorded
    interrupted = [member("pg1", 17, True), member("pg2", None, True), member("pg3", None, True)]
    assert not unrecorded(CLUSTER, 17, interrupted, "pg1")
    # a first adoption neither
    fresh = [member("pg1", 17, False), member("pg2", None, False), member("pg3", None, False)]
    assert not unrecorded(CLUSTER, 17, fresh, "pg1")
