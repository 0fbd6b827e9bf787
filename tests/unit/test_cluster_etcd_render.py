"""etcd's rendered command line and RBAC bootstrap (pgsteady/cluster/etcd.py); the real
engine runs them in tests/integration/test_cluster_etcd.py."""

from __future__ import annotations

import pytest

from pgsteady.cluster import etcd
from pgsteady.cluster.topology import cluster_from_mapping

CLUSTER = cluster_from_mapping(
    {
        "postgres_cluster_name": "main",
        "members": [{"name": f"pg{i}", "address": f"10.0.0.{10 + i}"} for i in range(1, 5)],
    }
)
PATHS = etcd.EtcdPaths(
    "/var/lib/etcd", "/tls/ca.crt", "/tls/s.crt", "/tls/s.key", "/j.pub", "/j.key"
)


def flags(argv: list[str]) -> dict[str, str]:
    return dict((a.split("=", 1) + [""])[:2] for a in argv[1:])  # type: ignore[misc]


def test_member_listens_on_its_address_and_loopback_with_tls_both_ways() -> None:
    f = flags(etcd.member_args(CLUSTER, CLUSTER.members[1], PATHS, "tok"))
    assert f["--listen-client-urls"] == "https://10.0.0.12:2379,https://127.0.0.1:2379"
    assert f["--advertise-client-urls"] == "https://10.0.0.12:2379"
    assert f["--listen-peer-urls"] == f["--initial-advertise-peer-urls"] == "https://10.0.0.12:2380"
    assert f["--initial-cluster"] == (
        "pg1=https://10.0.0.11:2380,pg2=https://10.0.0.12:2380,pg3=https://10.0.0.13:2380"
    )
    for key in ("--client-cert-auth", "--peer-client-cert-auth"):
        assert key in f
    assert f["--trusted-ca-file"] == f["--peer-trusted-ca-file"] == "/tls/ca.crt"
    assert f["--auth-token"].startswith("jwt,pub-key=/j.pub,priv-key=/j.key,sign-method=ES256")
    assert f["--quota-backend-bytes"] == str(512 * 1024**2)
    assert f["--auto-compaction-mode"] == "periodic"
    assert (f["--heartbeat-interval"], f["--election-timeout"]) == ("100", "1000")
    assert not any(a.startswith("http://") or "=http://" in a for a in f.values())


def test_a_member_without_etcd_or_a_bad_state_is_refused() -> None:
    with pytest.raises(ValueError, match="pg4 does not run etcd"):
        etcd.member_args(CLUSTER, CLUSTER.members[3], PATHS, "tok")
    with pytest.raises(ValueError, match="expected 'new' or 'existing'"):
        etcd.member_args(CLUSTER, CLUSTER.members[0], PATHS, "tok", state="old")


def test_ipv6_members_are_bracketed() -> None:
    c = cluster_from_mapping(
        {
            "postgres_cluster_name": "v6",
            "members": [{"name": f"m{i}", "address": f"fd00::{i}"} for i in range(1, 4)],
        }
    )
    assert etcd.client_urls(c)[0] == "https://[fd00::1]:2379"


def test_bootstrap_limits_patroni_to_the_prefix_and_keeps_passwords_out_of_argv() -> None:
    steps = etcd.auth_bootstrap(CLUSTER)
    assert steps[-1].args == ("auth", "enable")
    grant = next(s for s in steps if s.args[:2] == ("role", "grant-permission"))
    assert grant.args == (
        "role",
        "grant-permission",
        "patroni-main",
        "--prefix=true",
        "readwrite",
        "/service/main/",
    )
    adds = [s for s in steps if s.args[:2] == ("user", "add")]
    assert [(s.args[2], s.stdin_secret) for s in adds] == [("root", "root"), ("patroni", "patroni")]
    assert all("--interactive=false" in s.args for s in adds)
    assert all(":" not in a for s in steps for a in s.args)  # no user:password anywhere
