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
        "max_connections": "200",
        "shared_buffers": "1GB",
        "wal_log_hints": "on",
    }
    assert pg["use_pg_rewind"] is True
    assert pg["pg_hba"][0] == HBA[0]
    assert "hostssl replication replicator 10.0.0.14/32 scram-sha-256" in pg["pg_hba"]


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
    assert rest["verify_client"] == "optional" and rest["cafile"] == PATHS.ca_file
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
    doc = yaml.safe_load(patroni.render_secrets_yml("s'u", "re:pl", "rest\npw", "e#tcd"))
    assert doc["restapi"]["authentication"] == {"username": "patroni", "password": "rest\npw"}
    assert doc["etcd3"]["password"] == "e#tcd"
    auth = doc["postgresql"]["authentication"]
    assert auth["superuser"]["password"] == auth["rewind"]["password"] == "s'u"
    assert auth["replication"]["password"] == "re:pl"


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
        "hostssl replication replicator fd00::2/128 scram-sha-256" in (doc["bootstrap"]["pg_hba"])
    )
