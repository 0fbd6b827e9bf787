"""The DCS patch (issue 15, M3): the smallest PATCH /config that converges Patroni's
dynamic configuration, empty once converged, and null for keys pgsteady stopped managing."""

from __future__ import annotations

import pytest

from pgsteady.cluster import dcs, patroni
from pgsteady.cluster.topology import cluster_from_mapping

CLUSTER = cluster_from_mapping(
    {
        "postgres_cluster_name": "main",
        "members": [{"name": f"pg{i}", "address": f"10.0.0.{i}"} for i in (1, 2, 3)],
    }
)


def desired(**params: str) -> dict:
    return patroni.dcs_document(
        CLUSTER, {"shared_buffers": "1GB", **params}, ["local all all peer"]
    )


def test_a_converged_cluster_gets_an_empty_patch() -> None:
    want = desired()
    assert dcs.patch(want, want, dcs.managed_paths(want)) == {}
    assert dcs.describe({}) == "nothing"


def test_a_changed_parameter_is_the_only_key_sent() -> None:
    current = desired()
    want = desired(work_mem="8MB")
    want["postgresql"]["parameters"]["shared_buffers"] = "2GB"
    p = dcs.patch(current, want, dcs.managed_paths(current))
    assert p == {"postgresql": {"parameters": {"shared_buffers": "2GB", "work_mem": "8MB"}}}
    assert dcs.describe(p) == "postgresql/parameters/shared_buffers, postgresql/parameters/work_mem"


def test_a_key_no_longer_managed_becomes_null_and_an_operators_key_stays() -> None:
    current = desired(work_mem="8MB")
    current["postgresql"]["parameters"]["log_min_duration_statement"] = "1s"  # operator's
    managed = dcs.managed_paths(desired(work_mem="8MB"))
    p = dcs.patch(current, desired(), managed)
    assert p == {"postgresql": {"parameters": {"work_mem": None}}}


def test_a_key_already_gone_is_not_deleted_again() -> None:
    current = desired()
    assert dcs.patch(current, desired(), dcs.managed_paths(desired(work_mem="8MB"))) == {}


def test_pg_hba_is_a_list_sent_whole_and_numbers_compare_with_their_text() -> None:
    current = desired()
    current["ttl"] = str(current["ttl"])  # what a YAML or JSON round trip may give back
    current["postgresql"]["pg_hba"] = current["postgresql"]["pg_hba"][:-1]
    p = dcs.patch(current, desired(), [])
    assert p == {"postgresql": {"pg_hba": desired()["postgresql"]["pg_hba"]}}


def test_booleans_are_not_numbers() -> None:
    current = {"synchronous_mode": 0}
    assert dcs.patch(current, {"synchronous_mode": False}, []) == {"synchronous_mode": False}


def test_a_key_with_a_dot_cannot_be_tracked() -> None:
    with pytest.raises(ValueError, match="cannot be tracked"):
        dcs.managed_paths({"postgresql": {"parameters": {"a/b": "1"}}})
