"""Cluster settings (issue 15, M2): validated per host and across the inventory, and a host
without postgres_cluster_name renders exactly what it rendered before clusters existed."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from pgsteady.cluster.inventory import cluster_of
from pgsteady.cluster.topology import ClusterError
from pgsteady.settings import HostFacts, SettingsError, build_settings, defaults
from pgsteady.stack.compose import render_compose

FACTS = HostFacts(ram_mb=4096, cpus=2)

#: sha256 of the compose file main (no cluster code) renders for these single hosts,
#: re-taken from main at each merge (its own single-host changes); a cluster change that
#: leaks into a single host changes them.
GOLDEN_COMPOSE = {
    "default": ("2d5ba83239327789819ff14c28af42a12f7946b7fa88379dbfd0d15aa770cc74", {}),
    "pg15": (
        "0d49949b8af0a428937a66f5b6ef3df49cb07d5db44de13d716cabd08f557bf9",
        {"postgres_version": 15},
    ),
    "bare": (
        "27c87505ea862416a8c6859eb0db07adfa4f4c439c13c00b4ba7ca8555a01b83",
        {"pgbouncer_enabled": False, "metrics_enabled": False},
    ),
}


@pytest.mark.parametrize("case", sorted(GOLDEN_COMPOSE))
def test_a_single_host_renders_the_compose_file_of_before(case: str) -> None:
    digest, data = GOLDEN_COMPOSE[case]
    text = render_compose(build_settings(data, FACTS))
    assert hashlib.sha256(text.encode()).hexdigest() == digest


def errors(**data: Any) -> list[str]:
    with pytest.raises(SettingsError) as exc:
        build_settings(data, FACTS)
    return exc.value.errors


def test_cluster_settings_default_to_a_single_host() -> None:
    s = build_settings({}, FACTS)
    assert s.postgres_cluster_name is None
    assert (s.postgres_replica_port, s.postgres_member_port, s.patroni_rest_port) == (
        5433,
        15432,
        8008,
    )
    assert (s.patroni_ttl, s.patroni_loop_wait, s.patroni_retry_timeout) == (24, 4, 10)


@pytest.mark.parametrize(
    ("data", "fragments"),
    [
        ({"postgres_cluster_name": "Main"}, ["postgres_cluster_name = 'Main'", "lower-case"]),
        (
            {"postgres_cluster_name": "main", "patroni_loop_wait": 10},
            ["patroni_loop_wait = 10", "loop_wait + 2 * retry_timeout <= ttl"],
        ),
        (
            {"postgres_cluster_name": "main", "postgres_replica_port": 2379},
            ["etcd_client_port = 2379", "every cluster port must differ"],
        ),
        (
            {
                "postgres_cluster_name": "main",
                "postgres_synchronous_mode": False,
                "postgres_accept_failover_commit_loss": True,
                "postgres_synchronous_mode_strict": True,
            },
            ["postgres_synchronous_mode_strict = True", "postgres_synchronous_mode = True"],
        ),
        (
            {"postgres_cluster_name": "main", "postgres_synchronous_mode": False},
            ["postgres_synchronous_mode = False", "postgres_accept_failover_commit_loss = True"],
        ),
        (
            {"postgres_cluster_name": "main", "postgres_maximum_lag_on_failover": "1GB"},
            ["postgres_maximum_lag_on_failover = '1GB'", "at most 16MB"],
        ),
        (
            {"postgres_cluster_name": "main", "etcd_election_timeout_ms": 400},
            ["etcd_election_timeout_ms = 400", "5 x etcd_heartbeat_interval_ms"],
        ),
        (
            {"postgres_cluster_name": "main", "postgres_restore_on_empty": True},
            ["postgres_restore_on_empty = True", "refused in a cluster"],
        ),
        (
            {
                "postgres_cluster_name": "main",
                "postgres_image_source": "registry",
                "pgbackrest_enabled": False,
                "metrics_enabled": False,
                "pgbouncer_enabled": False,
            },
            ["postgres_image_source = 'registry'", "'debian' or 'auto'"],
        ),
        (
            {
                "postgres_cluster_name": "main",
                "postgres_image_source": "archive",
                "postgres_image": "x:1",
                "postgres_image_archive": "/x.tar",
            },
            ["postgres_image_source = 'archive'", "'debian' or 'auto'"],
        ),
        (
            {"postgres_cluster_name": "main", "postgres_version": 15},
            [
                "postgres_cluster_name = 'main'",
                "postgres_version = 15",
                "Patroni 3.0.2",
                "accepted: 17",
            ],
        ),
        ({"patroni_ttl": 19}, ["patroni_ttl", "19", "greater than or equal to 20"]),
    ],
)
def test_each_bad_cluster_setting_names_key_value_and_what_is_accepted(
    data: dict[str, Any], fragments: list[str]
) -> None:
    msgs = errors(**data)
    assert any(all(f in m for f in fragments) for m in msgs), msgs


def test_the_same_values_without_a_cluster_name_are_not_cluster_rules() -> None:
    # A single host runs no HAProxy, etcd or Patroni: their ports and timings are inert.
    build_settings({"postgres_replica_port": 2379, "patroni_loop_wait": 10}, FACTS)


def hosts(n: int = 3, **per_host: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for i in range(1, n + 1):
        name = f"pg{i}"
        data = {"postgres_cluster_name": "main", "ssh_hostname": f"10.0.0.{i}"}
        data.update(per_host.get(name, {}))
        out.append((name, data))
    return out


def test_the_inventory_makes_one_cluster_in_inventory_order() -> None:
    inv = [("other", {"ssh_hostname": "10.0.9.9"}), *hosts(4)]
    c = cluster_of("main", inv, defaults())
    assert [(m.name, m.address) for m in c.members] == [
        (f"pg{i}", f"10.0.0.{i}") for i in range(1, 5)
    ]
    assert [m.name for m in c.etcd_members] == ["pg1", "pg2", "pg3"]


def test_postgres_cluster_address_wins_over_ssh_hostname() -> None:
    c = cluster_of("main", hosts(pg2={"postgres_cluster_address": "192.168.5.2"}), defaults())
    assert c.member("pg2").address == "192.168.5.2"


def test_two_hosts_are_not_a_cluster() -> None:
    with pytest.raises(ClusterError) as exc:
        cluster_of("main", hosts(2), defaults())
    assert any("at least 3" in m for m in exc.value.errors)


def test_a_shared_private_address_is_refused() -> None:
    inv = hosts(pg3={"ssh_hostname": "10.0.0.1"})
    with pytest.raises(ClusterError) as exc:
        cluster_of("main", inv, defaults())
    assert any("'10.0.0.1': used by another member" in m for m in exc.value.errors)


def test_cluster_wide_settings_must_agree_and_the_error_lists_both_sides() -> None:
    inv = hosts(pg3={"patroni_ttl": 30, "postgres_version": 15})
    with pytest.raises(ClusterError) as exc:
        cluster_of("main", inv, defaults())
    msgs = exc.value.errors
    assert any(
        m.startswith("patroni_ttl: differs") and "24 on pg1, pg2; 30 on pg3" in m for m in msgs
    )
    assert any(m.startswith("postgres_version: differs") for m in msgs)


def test_the_lab_inventory_of_a_cluster_lab_is_one_valid_cluster() -> None:
    """`make lab N=3 CLUSTER=1`: the three hosts form cluster "lab" with the lab timings."""
    import ast

    from pgsteady.lab.recipe import cluster_data, host_data, render_inventory

    entries = []
    for i in (1, 2, 3):
        data = host_data(f"10.77.5.{10 + i}", "10.77.5.0/24", "/k", "/kh", cluster_data("lab"))
        entries.append((f"pgsteady-lab-{i}", data))
    namespace: dict[str, Any] = {}
    exec(
        compile(ast.parse(render_inventory("pgsteady-lab", entries)), "inventory", "exec"),
        namespace,
    )
    for name, data in namespace["hosts"]:
        build_settings(data, FACTS, host=name)  # every host's own settings are valid
    c = cluster_of("lab", namespace["hosts"], defaults())
    assert [(m.name, m.address) for m in c.etcd_members] == [
        (f"pgsteady-lab-{i}", f"10.77.5.{10 + i}") for i in (1, 2, 3)
    ]
    assert (c.etcd_heartbeat_ms, c.etcd_election_ms) == (250, 2500)


def test_a_single_host_needs_no_failover_commit_loss_opt_in() -> None:
    """R8 M2 touches clusters only: a single host has no failover to lose commits in."""
    s = build_settings({"postgres_synchronous_mode": False}, FACTS)
    assert s.postgres_cluster_name is None and s.postgres_synchronous_mode is False
