"""PgBouncer on a cluster member (issue 15/17): every member's pooler listens on its own
addresses and reaches the current leader through its own HAProxy over verified TLS; the
auth_query role may log in from the members; the members' pools share the leader's
connections; what cannot work is refused with the key, the value and what is accepted.
tests/lab/test_cluster_lab_pooler.py runs it against a real cluster across a switchover."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from pgsteady.backup.pgbackrest import SOCKET_VOLUME
from pgsteady.cluster import dcs, pooler
from pgsteady.cluster import etcd_service as svc
from pgsteady.cluster.inventory import cluster_of
from pgsteady.cluster.topology import Cluster, ClusterError
from pgsteady.postgres.parameters import hba_rules
from pgsteady.settings import Settings, SettingsError, build_settings, defaults
from pgsteady.stack import pgbouncer
from pgsteady.stack.compose import render_compose, render_ctl_env
from tests.unit.test_cluster_etcd_compose import FACTS, MEMBER

POOLED = {**MEMBER, "pgbouncer_enabled": True}


def cluster(n: int = 3, **data: Any) -> tuple[Settings, Cluster]:
    hosts = [(f"pg{i}", {**POOLED, **data, "ssh_hostname": f"10.0.0.{i}"}) for i in range(1, n + 1)]
    return build_settings({**POOLED, **data}, FACTS), cluster_of("main", hosts, defaults())


def ini(s: Settings, c: Cluster, name: str = "pg2") -> dict[str, str]:
    """pgbouncer.ini's [pgbouncer] keys and [databases] entries of member ``name``."""
    text = pgbouncer.render_config(s, pooler.route(s, c, c.member(name)))
    pairs = [line.split(" = ", 1) for line in text.splitlines() if " = " in line]
    return {k: v for k, v in pairs}


def test_a_member_listens_on_its_addresses_and_pools_toward_its_haproxy_primary_port() -> None:
    s, c = cluster()
    conf = ini(s, c)
    assert conf["listen_addr"] == "10.0.0.2,127.0.0.1"
    assert conf["listen_port"] == str(s.pgbouncer_port)
    route = f"host=127.0.0.1 port={s.postgres_port} dbname={s.postgres_db}"
    assert conf[s.postgres_db].startswith(route + " pool_mode=transaction")
    assert conf[f"{s.postgres_db}_session"].startswith(route + " pool_mode=session")
    # the leader's certificate verified against the CA, for the name dialled (127.0.0.1)
    assert conf["server_tls_sslmode"] == "verify-full"
    assert conf["server_tls_ca_file"] == pgbouncer.CA_MOUNT
    # no 15 s pause of every client after the leaderless moment of a switchover
    assert conf["server_login_retry"] == str(pooler.LOGIN_RETRY_S) == "1"
    assert conf["client_tls_sslmode"] == "require"
    assert conf["auth_query"].startswith("SELECT usename, passwd FROM pgsteady_pooler.")


def test_a_single_host_keeps_its_socket_and_no_server_tls() -> None:
    s = build_settings({**POOLED, "postgres_cluster_name": None}, FACTS)
    conf = {
        k: v
        for k, v in (
            x.split(" = ", 1) for x in pgbouncer.render_config(s).splitlines() if " = " in x
        )
    }
    assert conf["listen_addr"] == "0.0.0.0" and conf["listen_port"] == str(pgbouncer.PORT)
    assert conf[s.postgres_db].startswith("host=/var/run/postgresql port=5432 ")
    assert conf["server_tls_sslmode"] == "disable" and "server_login_retry" not in conf


def test_the_members_pools_share_the_leaders_connections() -> None:
    s, c3 = cluster(3, postgres_max_connections=100)
    _, c5 = cluster(5, postgres_max_connections=100)
    # (100 - 3 reserved - 10 direct) / n - 5 session, halved
    assert ini(s, c3)["default_pool_size"] == str((87 // 3 - 5) // 2) == "12"
    assert ini(s, c5)["default_pool_size"] == str((87 // 5 - 5) // 2) == "6"
    # every member's pools (application and session) fit in the leader's max_connections
    for c in (c3, c5):
        pools = int(ini(s, c)["default_pool_size"]) + pgbouncer.SESSION_POOL_SIZE
        assert len(c.members) * pools <= 100 - 3 - pgbouncer.DIRECT_RESERVE


def test_an_explicit_pool_size_that_does_not_fit_on_the_leader_is_refused() -> None:
    s = build_settings({**POOLED, "postgres_max_connections": 100}, FACTS)
    assert pooler.pool_errors(s, 3) == []
    big = build_settings(
        {**POOLED, "postgres_max_connections": 100, "pgbouncer_default_pool_size": 30}, FACTS
    )
    assert pgbouncer.settings_errors(big) == []  # fits one pooler
    (error,) = pooler.pool_errors(big, 3)
    assert error.startswith("pgbouncer_default_pool_size = 30: the 3 members' poolers")
    assert "each pool may take 1 to 24" in error
    assert pooler.pool_errors(build_settings(MEMBER, FACTS), 3) == []  # pooler off


def test_a_cluster_member_accepts_the_pooler() -> None:
    s = build_settings(POOLED, FACTS)
    assert s.pgbouncer_enabled and s.postgres_cluster_name == "main"


@pytest.mark.parametrize(
    ("port", "other"),
    [
        (8008, "patroni_rest_port"),
        (15432, "postgres_member_port"),
        (2379, "etcd_client_port"),
        (5433, "postgres_replica_port"),
    ],
)
def test_a_port_another_member_listener_has_is_refused(port: int, other: str) -> None:
    data = {**POOLED, other: port, "pgbouncer_port": port}
    with pytest.raises(SettingsError) as exc:
        build_settings(data, FACTS)
    wanted = f"pgbouncer_port = {port}: also {other}'s port on a cluster member"
    assert any(e.startswith(wanted) and "accepted:" in e for e in exc.value.errors), exc.value
    build_settings({**data, "postgres_cluster_name": None}, FACTS)  # single host: its own


def test_the_pooler_is_on_every_member_or_none() -> None:
    hosts = [
        (f"pg{i}", {**MEMBER, "ssh_hostname": f"10.0.0.{i}", "pgbouncer_enabled": i == 1})
        for i in (1, 2, 3)
    ]
    with pytest.raises(ClusterError) as exc:
        cluster_of("main", hosts, defaults())
    assert any(e.startswith("pgbouncer_enabled: differs") for e in exc.value.errors)


def test_the_compose_service_uses_the_host_network_without_the_socket() -> None:
    s, c = cluster()
    doc = yaml.safe_load(render_compose(s, svc.service(s, c, c.member("pg2"))))
    pg = doc["services"]["pgbouncer"]
    assert pg["network_mode"] == "host" and "ports" not in pg
    assert not any(v.startswith(f"{SOCKET_VOLUME}:") for v in pg["volumes"])
    assert f"127.0.0.1:{s.pgbouncer_port} " in pg["healthcheck"]["test"][1]
    assert pg["user"] == f"{s.pgbouncer_uid}:{s.pgbouncer_uid}" and pg["read_only"] is True
    assert pg["cap_drop"] == ["ALL"]


def test_the_auth_role_may_log_in_from_the_members_over_tls_only() -> None:
    s, c = cluster()
    lines = dcs.hba_lines(s, c)
    auth = [line for line in lines if f'"{pgbouncer.AUTH_USER}"' in line]
    assert auth == [
        f'local "{s.postgres_db}" "{pgbouncer.AUTH_USER}" scram-sha-256',
        *(
            f'hostssl "{s.postgres_db}" "{pgbouncer.AUTH_USER}" 10.0.0.{i}/32 scram-sha-256'
            for i in (1, 2, 3)
        ),
    ]
    # before the final rejects, and never a rule for it from anywhere else
    assert lines.index(auth[-1]) < lines.index("local all all reject")
    off = dcs.hba_lines(build_settings(MEMBER, FACTS), c)
    assert not any(pgbouncer.AUTH_USER in line for line in off)


def test_a_single_hosts_auth_role_never_logs_in_over_tcp() -> None:
    rules = hba_rules(
        ["10.0.0.0/24"], "postgres", database="app", app_roles=["app"], pooler_role="pb"
    )
    assert [(r.type, r.address) for r in rules if r.user == '"pb"'] == [("local", "")]


def test_pgsteady_ctl_pauses_no_pooler_around_a_members_restart() -> None:
    """A member's pooler serves the leader, not its own server: a restart of the member's
    Postgres (the roll) must not hold its clients."""
    s, _ = cluster()
    assert "PGSTEADY_POOLER=''" in render_ctl_env(s, "docker compose").splitlines()
    single = build_settings({**POOLED, "postgres_cluster_name": None}, FACTS)
    assert (
        f"PGSTEADY_POOLER={pgbouncer.container_name(single)}"
        in render_ctl_env(single, "docker compose").splitlines()
    )


def test_the_settings_that_size_every_members_pool_are_the_clusters() -> None:
    """The leader runs the seed's max_connections (the DCS configuration is the seed's):
    a member whose own values differ would size its pool for another server (R11 M1)."""
    from pgsteady.cluster.inventory import cluster_of
    from pgsteady.cluster.topology import ClusterError
    from pgsteady.settings import defaults

    def hosts() -> list[tuple[str, dict]]:
        return [(f"pg{i}", {"postgres_cluster_name": "main", "ssh_hostname": f"10.0.0.{i}",
                            "pgbouncer_enabled": True}) for i in (1, 2, 3)]  # fmt: skip

    cluster_of("main", hosts(), defaults())
    for key, value in (
        ("postgres_max_connections", 400),
        ("postgres_db_type", "dw"),
        ("postgres_settings", {"max_connections": "400"}),
        ("pgbouncer_default_pool_size", 60),
    ):
        members = hosts()
        members[2][1][key] = value
        with pytest.raises(ClusterError) as exc:
            cluster_of("main", members, defaults())
        assert f"{key}: differs between the members of cluster 'main'" in str(exc.value)
        assert "on pg3" in str(exc.value)
