"""haproxy.cfg rendering (pgsteady/cluster/haproxy.py); the real HAProxy checks and runs it
in tests/integration/test_cluster_haproxy.py."""

from __future__ import annotations

import pytest

from pgsteady.cluster.haproxy import render_haproxy_cfg
from pgsteady.cluster.topology import cluster_from_mapping

CLUSTER = cluster_from_mapping(
    {
        "postgres_cluster_name": "main",
        "members": [{"name": f"pg{i}", "address": f"10.0.0.{10 + i}"} for i in range(1, 4)],
        "postgres_replica_max_lag": "8MB",
        "haproxy_check_interval_ms": 2000,
    }
)


def section(cfg: str, name: str) -> str:
    return cfg.split(f"\nlisten {name}\n", 1)[1].split("\n\n", 1)[0]


def test_primary_and_replica_routes() -> None:
    cfg = render_haproxy_cfg(CLUSTER, CLUSTER.members[1], "/tls/ca.crt", "/run/h.sock")
    primary, replicas = section(cfg, "primary"), section(cfg, "replicas")
    assert "bind 10.0.0.12:5432\n    bind 127.0.0.1:5432" in primary
    assert "http-check send meth GET uri /primary\n" in primary
    assert f"uri /replica?lag={8 * 1024**2}\n" in replicas
    assert "bind 10.0.0.12:5433" in replicas
    for block in (primary, replicas):
        assert "check-ssl verify required ca-file /tls/ca.crt" in block
        assert "on-marked-down shutdown-sessions" in block
        assert "inter 2000ms fastinter 500ms" in block
        for i in range(1, 4):
            line = f"server pg{i} 10.0.0.1{i}:15432 check port 8008 verifyhost pg{i}"
            assert line in [x.strip() for x in block.splitlines()]
    assert "stats socket /run/h.sock mode 600" in cfg
    assert "tcp-request" not in cfg


def test_allowed_sources_filter_clients() -> None:
    cfg = render_haproxy_cfg(
        CLUSTER, CLUSTER.members[0], "/ca", "/s", allowed_sources=["192.168.1.7/24", "10.0.0.0/8"]
    )
    rule = "tcp-request connection reject unless { src 192.168.1.0/24 10.0.0.0/8 }"
    assert section(cfg, "primary").count(rule) == 1
    assert section(cfg, "replicas").count(rule) == 1
    with pytest.raises(ValueError):
        render_haproxy_cfg(CLUSTER, CLUSTER.members[0], "/ca", "/s", allowed_sources=["nope"])


def test_only_members_get_a_config() -> None:
    from pgsteady.cluster.topology import Member

    with pytest.raises(ValueError, match="not a member"):
        render_haproxy_cfg(CLUSTER, Member("pg9", "10.0.0.99"), "/ca", "/s")


def test_checks_present_a_client_certificate_when_given() -> None:
    """R8 L1: Patroni's REST API requires a client certificate, HAProxy's checks too."""
    crt = "/etc/pgsteady-tls/haproxy-client.crt"
    cfg = render_haproxy_cfg(CLUSTER, CLUSTER.members[0], "/tls/ca.crt", "/run/h.sock", (), crt)
    for name in ("primary", "replicas"):
        default = next(
            x for x in section(cfg, name).splitlines() if x.strip().startswith("default-server")
        )
        assert default.endswith(f"ca-file /tls/ca.crt crt {crt}")
    without = render_haproxy_cfg(CLUSTER, CLUSTER.members[0], "/tls/ca.crt", "/run/h.sock")
    assert " crt " not in without
