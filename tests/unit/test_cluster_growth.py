"""Growing a running cluster: which inventories keep etcd's membership and which are
refused, with the key, the value and what is accepted (pgsteady/cluster/growth.py)."""

from __future__ import annotations

import pytest

from pgsteady.cluster import etcd_service as svc
from pgsteady.cluster.growth import etcd_change, initial_members
from pgsteady.cluster.topology import Cluster, cluster_from_mapping


def cluster(names: list[str]) -> Cluster:
    members = [{"name": n, "address": f"10.0.0.{10 + i}"} for i, n in enumerate(names)]
    return cluster_from_mapping({"postgres_cluster_name": "main", "members": members})


def env(names: list[str]) -> str:
    """What tasks/etcd.py wrote on the etcd hosts of the cluster ``names`` formed then."""
    return svc.initial_env(cluster(names), "abc123")


def pgs(n: int) -> list[str]:
    return [f"pg{i}" for i in range(1, n + 1)]


def test_the_written_initial_env_names_the_etcd_members() -> None:
    assert initial_members(env(pgs(3))) == ("pg1", "pg2", "pg3")
    assert initial_members(env(pgs(7))) == ("pg1", "pg2", "pg3", "pg4", "pg5")
    assert initial_members("ETCD_INITIAL_CLUSTER_STATE=new\n") == ()


def test_a_cluster_that_never_ran_etcd_is_a_bootstrap_of_any_size() -> None:
    assert etcd_change(cluster(pgs(7)), {}) is None


@pytest.mark.parametrize(("before", "after"), [(3, 4), (3, 5), (4, 6), (3, 6), (7, 9)])
def test_growth_that_keeps_the_etcd_hosts_is_accepted(before: int, after: int) -> None:
    found = {n: env(pgs(before)) for n in pgs(before)[:3]}
    assert etcd_change(cluster(pgs(after)), found) is None


def test_reordering_the_etcd_hosts_among_themselves_is_accepted() -> None:
    found = {"pg1": env(pgs(3))}
    assert etcd_change(cluster(["pg2", "pg1", "pg3", "pg4"]), found) is None


def test_six_to_seven_members_would_make_five_etcd_members_and_is_refused() -> None:
    found = {n: env(pgs(6)) for n in pgs(3)}
    problem = etcd_change(cluster(pgs(7)), found)
    assert problem is not None
    assert "postgres_cluster_name = 'main'" in problem  # the key and its value
    assert "7 members" in problem and "pg1, pg2, pg3, pg4, pg5" in problem  # the change
    assert "running etcd's are pg1, pg2, pg3" in problem
    assert "(pg4, pg5)" in problem  # what would move
    assert "Accepted:" in problem and "3 to 6 members" in problem


def test_a_new_host_listed_before_an_etcd_host_is_refused() -> None:
    found = {"pg2": env(pgs(3))}  # read from another host than the first: still found
    problem = etcd_change(cluster(["pg9", "pg1", "pg2", "pg3"]), found)
    assert problem is not None and "(pg3, pg9)" in problem and "from pg2" in problem


def test_shrinking_five_etcd_members_to_three_is_refused() -> None:
    found = {"pg1": env(pgs(7))}
    problem = etcd_change(cluster(pgs(6)), found)
    assert problem is not None and "7 or more members" in problem
