"""A cluster member's compose services (issue 15, M3): Postgres run by Patroni on the host
network with its passwords in a private tmpfs, HAProxy confined under its own uid; and
what a cluster refuses until later milestones."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from pgsteady.cluster import etcd_service as svc
from pgsteady.cluster import member_service as ms
from pgsteady.settings import SettingsError, build_settings
from pgsteady.stack.compose import render_compose
from tests.unit.test_cluster_etcd_compose import FACTS, MEMBER, member


def services(name: str = "pg4") -> dict[str, Any]:
    s, cluster = member(4)
    return yaml.safe_load(render_compose(s, svc.service(s, cluster, cluster.member(name))))[
        "services"
    ]


def test_postgres_runs_patroni_on_the_host_network_with_a_private_tmpfs() -> None:
    pg = services()["postgres"]
    assert pg["command"] == ["patroni"]
    assert pg["network_mode"] == "host" and "ports" not in pg
    assert pg["stop_signal"] == "SIGTERM"  # Patroni stops Postgres and releases the key
    assert pg["tmpfs"] == ["/run/patroni:mode=0700,uid=999,gid=999"]
    assert pg["environment"]["PGPORT"] == "15432"
    assert pg["environment"]["PGSTEADY_PATRONI_CONFIG"] == "/etc/pgsteady/patroni.yml"
    assert set(ms.CLUSTER_SECRETS) <= set(pg["secrets"])
    # passwords only as secret files: none in the environment
    assert not any(
        "password" in str(v).lower() for v in pg["environment"].values() if "/" not in str(v)
    )
    assert (
        "/opt/pgsteady/tls/private/etcd-client.key:/etc/pgsteady-tls-key/etcd-client.key:ro"
        in pg["volumes"]
    )


def test_haproxy_is_confined_under_its_own_uid() -> None:
    all_services = services()
    ha = all_services["haproxy"]
    assert ha["user"] == f"{ms.HAPROXY_UID}:{ms.HAPROXY_UID}"
    assert ha["network_mode"] == "host" and ha["read_only"] is True
    assert ha["cap_drop"] == ["ALL"] and ha["security_opt"] == ["no-new-privileges:true"]
    assert ha["command"][:3] == ["haproxy", "-W", "-db"]
    assert all(v.endswith(":ro") for v in ha["volumes"])
    assert "secrets" not in ha  # HAProxy reads no password
    assert "etcd" not in all_services  # pg4 is beyond the 3 etcd hosts


def test_a_cluster_refuses_a_supplied_certificate() -> None:
    files = {f"postgres_tls_{k}_file": f"/nonexistent/{k}.pem" for k in ("cert", "key", "ca")}
    with pytest.raises(SettingsError) as exc:
        build_settings({**MEMBER, **files}, FACTS)
    assert any("must name every member" in e for e in exc.value.errors), exc.value.errors


def test_haproxy_admits_loopback_and_the_allowed_networks_never_any() -> None:
    s = build_settings({**MEMBER, "postgres_allowed_networks": []}, FACTS)
    assert ms.client_sources(s) == ["127.0.0.1/32", "::1/128"]  # no networks: loopback only
    s = build_settings({**MEMBER, "postgres_allowed_networks": ["10.9.0.0/16"]}, FACTS)
    assert ms.client_sources(s) == ["127.0.0.1/32", "::1/128", "10.9.0.0/16"]


def test_a_cluster_needs_client_networks_as_addresses() -> None:
    with pytest.raises(SettingsError) as exc:
        build_settings({**MEMBER, "postgres_allowed_networks": ["samenet"]}, FACTS)
    assert any("'samenet'" in e and "CIDRs" in e for e in exc.value.errors), exc.value.errors


def test_preflight_takes_postgres_port_held_by_the_stacks_haproxy_as_ours() -> None:
    from pgsteady.stack.preflight import port_is_ours

    s, _ = member(4)
    haproxy = {
        "State": {"Running": True},
        "Config": {"Labels": {"io.pgsteady.project": "pgsteady"}},
    }
    assert port_is_ours(s, haproxy, "haproxy")  # a redeploy of a running member
    assert not port_is_ours(s, haproxy, "nginx")  # someone else holds the port
    other = {**haproxy, "Config": {"Labels": {"io.pgsteady.project": "other"}}}
    assert not port_is_ours(s, other, "haproxy")  # another stack's HAProxy
    assert not port_is_ours(s, None, "haproxy")  # no HAProxy of ours yet
