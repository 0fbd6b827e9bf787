"""The cluster's inputs: defaults, etcd hosts by size, and errors that name key, value and
what is accepted (pgsteady/cluster/topology.py)."""

from __future__ import annotations

from typing import Any

import pytest

from pgsteady.cluster.topology import ClusterError, cluster_from_mapping


def data(n: int = 3, **extra: Any) -> dict[str, Any]:
    members = [{"name": f"pg{i}", "address": f"10.0.0.{10 + i}"} for i in range(1, n + 1)]
    return {"postgres_cluster_name": "main", "members": members, **extra}


def errors(**kw: Any) -> list[str]:
    n = kw.pop("n", 3)
    with pytest.raises(ClusterError) as exc:
        cluster_from_mapping(data(n, **kw))
    return exc.value.errors


def test_defaults() -> None:
    c = cluster_from_mapping(data())
    assert (c.ttl, c.loop_wait, c.retry_timeout) == (24, 4, 10)
    assert c.maximum_lag_on_failover == 1024**2 and c.replica_max_lag == 16 * 1024**2
    assert (c.etcd_client_port, c.etcd_peer_port, c.rest_port) == (2379, 2380, 8008)
    assert (c.postgres_port, c.replica_port, c.member_port) == (5432, 5433, 15432)
    assert c.synchronous_mode is True
    assert c.prefix == "/service/main/"


@pytest.mark.parametrize(("n", "etcd"), [(3, 3), (4, 3), (6, 3), (7, 5), (9, 5)])
def test_etcd_runs_on_the_first_members_in_inventory_order(n: int, etcd: int) -> None:
    c = cluster_from_mapping(data(n))
    assert [m.name for m in c.etcd_members] == [f"pg{i}" for i in range(1, etcd + 1)]


def test_timing_rule_names_both_keys_and_the_rule() -> None:
    [msg] = errors(patroni_ttl=24, patroni_loop_wait=5, patroni_retry_timeout=10)
    assert "patroni_loop_wait = 5" in msg and "patroni_retry_timeout = 10" in msg
    assert "loop_wait + 2 * retry_timeout <= ttl" in msg
    # the boundary is accepted
    cluster_from_mapping(data(patroni_ttl=24, patroni_loop_wait=4, patroni_retry_timeout=10))


def test_patroni_floors() -> None:
    msgs = errors(patroni_ttl=10, patroni_retry_timeout=2)
    assert any(m.startswith("patroni_ttl = 10: expected a whole number from 20") for m in msgs)
    assert any(m.startswith("patroni_retry_timeout = 2: expected") for m in msgs)


def test_fewer_than_three_members_is_refused() -> None:
    [msg] = errors(n=2)
    assert msg.startswith("members = ") and "at least 3" in msg


def test_duplicate_names_and_addresses_are_refused() -> None:
    d = data()
    d["members"][2] = {"name": "pg1", "address": "10.0.0.11"}
    with pytest.raises(ClusterError) as exc:
        cluster_from_mapping(d)
    assert "members[2].name = 'pg1': used by another member; each member needs its own name" in (
        exc.value.errors
    )
    assert any(e.startswith("members[2].address = '10.0.0.11': used") for e in exc.value.errors)


def test_bad_member_address_and_name() -> None:
    d = data()
    d["members"][1] = {"name": "PG_2", "address": "db2.example"}
    d["members"][2] = {"name": "pg3", "address": "0.0.0.0"}
    with pytest.raises(ClusterError) as exc:
        cluster_from_mapping(d)
    text = "\n".join(exc.value.errors)
    assert "members[1].name = 'PG_2': expected a host name" in text
    assert "members[1].address = 'db2.example': expected the host's private IP address" in text
    assert "members[2].address = '0.0.0.0': a wildcard" in text


def test_value_errors_name_key_value_and_what_is_accepted() -> None:
    msgs = errors(
        postgres_cluster_name="Main!",
        postgres_maximum_lag_on_failover="lots",
        postgres_synchronous_mode="yes",
        etcd_client_port=70000,
        postgres_replica_port=5432,
        postgres_synchronous_mode_strict=True,
        patroni_ttll=30,
    )
    text = "\n".join(msgs)
    assert "postgres_cluster_name = 'Main!': expected a lower-case letter" in text
    assert "postgres_maximum_lag_on_failover = 'lots': expected a whole or decimal number" in text
    assert "postgres_synchronous_mode = 'yes': expected true or false" in text
    assert "etcd_client_port = 70000: expected a whole number from 1 to 65535" in text
    assert "postgres_replica_port = 5432: also postgres_port" in text
    assert "postgres_synchronous_mode_strict = True: needs postgres_synchronous_mode" in text
    assert "patroni_ttll: unknown cluster key; accepted:" in text


def test_etcd_election_at_least_five_heartbeats() -> None:
    [msg] = errors(etcd_heartbeat_interval_ms=250, etcd_election_timeout_ms=1000)
    assert msg.startswith("etcd_election_timeout_ms = 1000: below 5 x")


def test_sizes_accept_units() -> None:
    c = cluster_from_mapping(data(postgres_replica_max_lag="64MB"))
    assert c.replica_max_lag == 64 * 1024**2


@pytest.mark.parametrize("name", ["root", "patroni"])
def test_a_member_named_like_an_etcd_user_is_refused(name: str) -> None:
    """etcd's gRPC API takes a certificate's Common Name as the user: a member certificate
    with CN=root would be etcd's root without a password."""
    d = data()
    d["members"][0]["name"] = name
    with pytest.raises(ClusterError) as exc:
        cluster_from_mapping(d)
    assert exc.value.errors[0].startswith(f"members[0].name = {name!r}: the name of an etcd user")


def test_asynchronous_replication_needs_the_commit_loss_opt_in() -> None:
    """R8 M2: an asynchronous failover drops acknowledged commits; refused unless accepted."""
    [msg] = errors(postgres_synchronous_mode=False)
    assert msg.startswith("postgres_synchronous_mode = False: a failover then loses")
    assert "postgres_accept_failover_commit_loss = True" in msg
    c = cluster_from_mapping(
        data(postgres_synchronous_mode=False, postgres_accept_failover_commit_loss=True)
    )
    assert c.synchronous_mode is False
    [msg] = errors(postgres_accept_failover_commit_loss="yes")
    assert msg == "postgres_accept_failover_commit_loss = 'yes': expected true or false"


def test_failover_lag_is_bounded_by_one_wal_segment() -> None:
    """R8 M2: maximum_lag_on_failover is what an async failover may drop; 1TB was accepted."""
    [msg] = errors(postgres_maximum_lag_on_failover="1TB")
    assert msg.startswith("postgres_maximum_lag_on_failover = '1TB': a failover may drop")
    assert "at most 16MB" in msg
    c = cluster_from_mapping(data(postgres_maximum_lag_on_failover="16MB"))
    assert c.maximum_lag_on_failover == 16 * 1024**2
