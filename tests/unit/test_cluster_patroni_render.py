"""patroni.yml, its secrets overlay and the DCS document (pgsteady/cluster/patroni.py);
the real Patroni validates them in tests/integration/test_cluster_patroni.py."""

from __future__ import annotations

import pytest
import yaml

from pgsteady.cluster import patroni
from pgsteady.cluster.topology import ClusterError, cluster_from_mapping

CLUSTER = cluster_from_mapping(
    {
        "postgres_cluster_name": "main",
        "members": [{"name": f"pg{i}", "address": f"10.0.0.{10 + i}"} for i in range(1, 5)],
        "postgres_synchronous_mode": True,
        "postgres_maximum_lag_on_failover": "2MB",
    }
)
HBA = ["hostssl all all 0.0.0.0/0 scram-sha-256"]
PATHS = patroni.container_paths(15)


def dcs() -> dict:
    return patroni.dcs_document(CLUSTER, {"shared_buffers": "1GB", "max_connections": "200"}, HBA)


def test_dcs_document_carries_timings_durability_parameters_and_hba() -> None:
    doc = dcs()
    assert (doc["ttl"], doc["loop_wait"], doc["retry_timeout"]) == (24, 4, 10)
    assert doc["maximum_lag_on_failover"] == 2 * 1024**2
    assert doc["synchronous_mode"] is True and doc["failsafe_mode"] is False
    pg = doc["postgresql"]
    assert pg["parameters"] == {
        "hot_standby_feedback": "on",
        "max_connections": "200",
        "shared_buffers": "1GB",
        "wal_log_hints": "on",
    }
    assert pg["use_pg_rewind"] is True
    assert pg["pg_hba"][0] == HBA[0]
    assert (
        "hostssl replication replicator 10.0.0.14/32 scram-sha-256 clientcert=verify-ca"
        in pg["pg_hba"]
    )


def test_standby_feedback_is_on_unless_the_settings_say_otherwise() -> None:
    """A dump on a standby keeps its snapshot; an operator's explicit value wins."""
    assert dcs()["postgresql"]["parameters"]["hot_standby_feedback"] == "on"
    doc = patroni.dcs_document(CLUSTER, {"hot_standby_feedback": "off"}, HBA)
    assert doc["postgresql"]["parameters"]["hot_standby_feedback"] == "off"


def test_parameters_patroni_manages_are_refused_by_name() -> None:
    with pytest.raises(ClusterError) as exc:
        patroni.dcs_document(CLUSTER, {"port": 6543, "hba_file": "/x", "work_mem": "4MB"}, HBA)
    assert exc.value.errors == [
        "postgres_settings['hba_file'] = '/x': Patroni manages this parameter in a cluster; "
        "remove it",
        "postgres_settings['port'] = 6543: Patroni manages this parameter in a cluster; remove it",
    ]


def test_member_config_binds_the_private_address_with_tls_and_no_password() -> None:
    text = patroni.render_patroni_yml(CLUSTER, CLUSTER.members[3], PATHS, dcs())
    doc = yaml.safe_load(text)
    assert doc["scope"] == "main" and doc["name"] == "pg4" and doc["namespace"] == "/service/"
    rest = doc["restapi"]
    assert rest["listen"] == rest["connect_address"] == "10.0.0.14:8008"
    assert rest["verify_client"] == "required" and rest["cafile"] == PATHS.ca_file
    assert rest["allowlist"] == ["10.0.0.11", "10.0.0.12", "10.0.0.13", "10.0.0.14", "127.0.0.1"]
    etcd3 = doc["etcd3"]
    assert etcd3["hosts"] == ["10.0.0.11:2379", "10.0.0.12:2379", "10.0.0.13:2379"]
    assert etcd3["protocol"] == "https" and etcd3["username"] == "patroni"
    # the CN-less client certificate, not the member's server certificate
    assert (etcd3["cert"], etcd3["key"]) == (PATHS.etcd_cert_file, PATHS.etcd_key_file)
    assert etcd3["cert"] != rest["certfile"]
    pg = doc["postgresql"]
    assert pg["listen"] == "10.0.0.14,127.0.0.1:15432"
    assert pg["connect_address"] == "10.0.0.14:15432"
    assert pg["bin_dir"] == "/usr/lib/postgresql/15/bin"
    for role in ("replication", "rewind"):
        assert pg["authentication"][role]["sslmode"] == "verify-full"
        assert pg["authentication"][role]["sslrootcert"] == PATHS.ca_file
    assert doc["bootstrap"]["dcs"] == dcs()
    assert "password:" not in text  # the passwords live in 90-secrets.yml only


def test_secrets_overlay_holds_every_password() -> None:
    doc = yaml.safe_load(patroni.render_secrets_yml("s'u", "re:pl", "re wind", "rest\npw", "e#tcd"))
    assert doc["restapi"]["authentication"] == {"username": "patroni", "password": "rest\npw"}
    assert doc["etcd3"]["password"] == "e#tcd"
    auth = doc["postgresql"]["authentication"]
    assert auth["superuser"]["password"] == "s'u"
    assert auth["replication"]["password"] == "re:pl"
    assert auth["rewind"]["password"] == "re wind"  # its own, never the superuser's


def test_pg_rewind_logs_in_as_its_own_role_which_the_cluster_hba_admits() -> None:
    """pg_hba rejects the superuser over TCP before any allow rule, so a rewind as the
    superuser could never connect: the rewind role is its own, with one hostssl line per
    member to the postgres database, before the catch-all rejects."""
    from pgsteady.cluster import dcs as dcs_module
    from pgsteady.settings import HostFacts, build_settings

    doc = yaml.safe_load(patroni.render_patroni_yml(CLUSTER, CLUSTER.members[0], PATHS, dcs()))
    auth = doc["postgresql"]["authentication"]
    assert auth["superuser"]["username"] == "postgres"
    assert auth["rewind"]["username"] == patroni.REWIND_USER != "postgres"
    data = {
        "postgres_cluster_name": "main",
        "pgbackrest_enabled": False,
        "pgbouncer_enabled": False,
        "metrics_enabled": False,
        "postgres_allowed_networks": ["10.0.0.0/24"],
    }
    s = build_settings(data, HostFacts(ram_mb=4096, cpus=2))
    hba = patroni.dcs_document(CLUSTER, {}, dcs_module.hba_lines(s, CLUSTER))["postgresql"][
        "pg_hba"
    ]
    rewind = [
        f"hostssl postgres pgsteady_rewind 10.0.0.1{i}/32 scram-sha-256 clientcert=verify-ca"
        for i in range(1, 5)
    ]
    at = hba.index(rewind[0])
    assert hba[at : at + 4] == rewind
    rows = [line.replace('"', "").split() for line in hba]  # type, database, user, ...
    su_rejects = [i for i, r in enumerate(rows) if r[0] == "host" and r[2] == "postgres"]
    final = [i for i, r in enumerate(rows) if r[0] in ("local", "host") and r[1:3] == ["all"] * 2]
    assert su_rejects and max(su_rejects) < at < min(final)
    # the first line a member's rewind connection (TLS, to postgres) matches is its own
    first = next(
        hba[i]
        for i, r in enumerate(rows)
        if r[0] in ("host", "hostssl")
        and r[1] in ("all", "postgres")
        and patroni.REWIND_USER in (*r[2].split(","), "all")
        and r[3] in ("10.0.0.12/32", "0.0.0.0/0")
    )
    assert first == rewind[1]
    # no TCP line admits the superuser
    assert not any(
        r[0].startswith("host") and r[2] == "postgres" and r[-1] != "reject" for r in rows
    )
    replication = [
        f"hostssl replication replicator 10.0.0.1{i}/32 scram-sha-256 clientcert=verify-ca"
        for i in (1, 2, 3, 4)
    ]
    # and loopback: Patroni reads a stopped leader's local timeline that way before pg_rewind
    replication += [
        f"hostssl replication replicator {a} scram-sha-256 clientcert=verify-ca"
        for a in ("127.0.0.1/32", "::1/128")
    ]
    assert [hba[i] for i, r in enumerate(rows) if r[1] == "replication"] == hba[-6:] == replication


def test_the_superuser_cannot_be_a_role_patroni_makes() -> None:
    with pytest.raises(ValueError, match="pgsteady_rewind"):
        patroni.patroni_config(CLUSTER, CLUSTER.members[0], PATHS, dcs(), patroni.REWIND_USER)


def test_ipv6_members() -> None:
    c = cluster_from_mapping(
        {
            "postgres_cluster_name": "v6",
            "members": [{"name": f"m{i}", "address": f"fd00::{i}"} for i in range(1, 4)],
        }
    )
    doc = patroni.patroni_config(c, c.members[0], PATHS, patroni.dcs_document(c, {}, []))
    assert doc["restapi"]["listen"] == "[fd00::1]:8008"
    assert doc["postgresql"]["listen"] == "fd00::1,127.0.0.1:15432"
    assert (
        "hostssl replication replicator fd00::2/128 scram-sha-256 clientcert=verify-ca"
        in (doc["bootstrap"]["pg_hba"])
    )


def test_members_only_lines_want_a_client_certificate_which_patroni_presents() -> None:
    """R8 L2: HAProxy relays clients with a member's source address, so every replication
    and pg_rewind line also needs a client certificate from the CA, and Patroni's
    replication and rewind connections present the member's own (ctl's for the REST API)."""
    hba = dcs()["postgresql"]["pg_hba"]
    members = [line for line in hba if f" {patroni.REPLICATION_USER} " in line]
    members += [line for line in hba if f" {patroni.REWIND_USER} " in line]
    assert len(members) == 4 + 2 + 4  # replication per member and loopback, rewind
    assert all(line.endswith(" scram-sha-256 clientcert=verify-ca") for line in members)
    doc = yaml.safe_load(patroni.render_patroni_yml(CLUSTER, CLUSTER.members[0], PATHS, dcs()))
    auth = doc["postgresql"]["authentication"]
    for role in ("replication", "rewind"):
        assert (auth[role]["sslcert"], auth[role]["sslkey"]) == (PATHS.cert_file, PATHS.key_file)
        assert auth[role]["sslmode"] == "verify-full"
    assert (doc["ctl"]["certfile"], doc["ctl"]["keyfile"]) == (PATHS.cert_file, PATHS.key_file)
