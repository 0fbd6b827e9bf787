"""A cluster member's compose file gains the etcd service (issue 15, M2): host network,
its own uid, read-only, no capabilities, data in <project>_etcd, and the first-start
values only in state/etcd-initial.env; a member without etcd renders none."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from pgsteady.cluster import etcd_service as svc
from pgsteady.cluster.inventory import cluster_of
from pgsteady.cluster.topology import Cluster
from pgsteady.settings import HostFacts, Settings, build_settings, defaults
from pgsteady.stack.compose import render_compose

FACTS = HostFacts(ram_mb=4096, cpus=2)
#: a member's data: what a cluster does not support yet is off
MEMBER = {
    "postgres_cluster_name": "main",
    "pgbackrest_enabled": False,
    "pgbouncer_enabled": False,
    "metrics_enabled": False,
    "postgres_allowed_networks": ["10.0.0.0/24"],
}


def member(n: int = 4) -> tuple[Settings, Cluster]:
    hosts = [
        (f"pg{i}", {"postgres_cluster_name": "main", "ssh_hostname": f"10.0.0.{i}"})
        for i in range(1, n + 1)
    ]
    return build_settings(MEMBER, FACTS), cluster_of("main", hosts, defaults())


def compose(s: Settings, cluster: Cluster, name: str) -> dict[str, Any]:
    return yaml.safe_load(render_compose(s, svc.service(s, cluster, cluster.member(name))))


def test_an_etcd_member_runs_etcd_confined_on_the_host_network() -> None:
    s, cluster = member()
    doc = compose(s, cluster, "pg2")
    e = doc["services"]["etcd"]
    assert e["network_mode"] == "host" and "ports" not in e
    assert e["user"] == f"{svc.ETCD_UID}:{svc.ETCD_UID}" and svc.ETCD_UID not in (0, 999)
    assert e["read_only"] is True and e["cap_drop"] == ["ALL"]
    assert e["security_opt"] == ["no-new-privileges:true"]
    assert e["image"] == s.image_alias and e["entrypoint"] == []
    assert f"etcd:{svc.DATA_MOUNT}" in e["volumes"]
    # <project>_etcd, backed by a directory of etcd's uid (the deploy makes it 0700)
    assert doc["volumes"]["etcd"]["driver_opts"] == {
        "type": "none",
        "o": "bind",
        "device": f"{s.app_dir}/etcd/data",
    }
    assert e["env_file"] == f"{s.app_dir}/state/{svc.INITIAL_ENV}"
    command = e["command"]
    assert command[:2] == ["etcd", "--name=pg2"]
    assert "--listen-peer-urls=https://10.0.0.2:2380" in command
    assert "--client-cert-auth" in command and "--peer-client-cert-auth" in command
    # the inventory's etcd hosts are read once from the env file, never from the argv
    assert not any(a.startswith("--initial-cluster") for a in command)
    assert e["healthcheck"]["test"][:2] == ["CMD", "etcdctl"]
    # no secret in the service: the passwords stay in root's files on the host
    assert "secrets" not in e and set(e["environment"]) == {"ETCDCTL_API"}


def test_a_member_beyond_the_etcd_hosts_renders_no_etcd() -> None:
    s, cluster = member()
    assert svc.service(s, cluster, cluster.member("pg4")) is None
    doc = compose(s, cluster, "pg4")
    assert "etcd" not in doc["services"] and "etcd" not in doc["volumes"]


def test_initial_env_lists_the_etcd_hosts_and_the_state() -> None:
    _, cluster = member()
    text = svc.initial_env(cluster, "0a1b")
    assert text.splitlines() == [
        "ETCD_INITIAL_CLUSTER=pg1=https://10.0.0.1:2380,pg2=https://10.0.0.2:2380,"
        "pg3=https://10.0.0.3:2380",
        "ETCD_INITIAL_CLUSTER_STATE=new",
        "ETCD_INITIAL_CLUSTER_TOKEN=0a1b",
    ]
    with pytest.raises(ValueError, match="token"):
        svc.initial_env(cluster, "a b\nX=1")


def test_bootstrap_feeds_passwords_from_root_files_and_writes_its_guard_last() -> None:
    s, cluster = member()
    lines = svc.bootstrap_commands(s, cluster)
    ctl = f"docker exec -i {svc.container_name(s)} etcdctl"
    assert all(line.startswith((ctl, "{ ! " + ctl)) for line in lines[:-1])
    assert (
        "user add root --interactive=false < /opt/pgsteady/secrets/etcd/root_password" in (lines[0])
    )
    # a root user that exists already is deleted first, then made with this password
    first = lines[0].split(" || ")
    assert first[0].startswith("{ ! " + ctl) and first[0].endswith(
        " user get root </dev/null >/dev/null 2>&1"
    )
    assert " user delete root </dev/null >/dev/null; } && " in first[1], first
    assert "auth enable" in lines[-2]
    assert lines[-1] == f"touch {s.app_dir}/state/{svc.AUTH_DONE}"
