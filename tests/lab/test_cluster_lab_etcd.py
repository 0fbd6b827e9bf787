"""A 3-host cluster lab (issue 15, M2): `make deploy` of the inventory `make lab N=3
CLUSTER=1` writes brings up 3 healthy etcd members with TLS and auth on, their secrets
0600 on the hosts, and `make verify` runs every etcd check on each. These run on the
session's shared cluster lab (tests/lab/conftest.py); test_cluster_lab_bootstrap checks
that a second deploy changes nothing."""

from __future__ import annotations

import json
import re
import shlex

import pytest

from pgsteady.cluster import etcd_health
from pgsteady.cluster import etcd_service as svc
from pgsteady.cluster import member_service as ms
from pgsteady.cluster.inventory import cluster_of
from pgsteady.cluster.topology import Cluster
from pgsteady.settings import defaults
from tests.lab.conftest import ClusterLab, LabTarget

#: the shared lab's first use builds the cluster image on 3 hosts (8-10 min under load)
pytestmark = pytest.mark.timeout(3600)


@pytest.fixture(scope="module")
def lab(deployed_cluster_lab: ClusterLab) -> list[LabTarget]:
    """The session's shared cluster lab (tests/lab/conftest.py), deployed once."""
    deployed_cluster_lab.wait_whole()  # etcd healthy before its checks read it
    return deployed_cluster_lab.targets


def _cluster(target: LabTarget) -> Cluster:
    namespace: dict = {}
    exec(target.inventory.read_text(), namespace)  # the lab's own inventory file
    return cluster_of("lab", namespace["hosts"], defaults())


def _ctl(target: LabTarget, cluster: Cluster, *args: str):
    argv = ["docker", "exec", svc.container_name(target.settings)]
    return target.ssh(shlex.join([*argv, *svc.local_ctl(cluster.etcd_client_port), *args]))


def test_deploy_brings_up_three_etcd_members_with_auth_on(lab: list[LabTarget]) -> None:
    first = lab[0]
    cluster = _cluster(first)
    for target in lab:
        health = _ctl(target, cluster, *etcd_health.HEALTH)
        assert health.returncode == 0, health.stderr
        assert etcd_health.health_problems(etcd_health.healthy_endpoints(health.stdout), 3) == []
        listed = _ctl(target, cluster, *etcd_health.MEMBER_LIST)
        actual = etcd_health.members(listed.stdout)
        assert etcd_health.member_problems(actual, etcd_health.expected_peers(cluster)) == []
        # auth is on: the member's certificate without a password reads nothing
        denied = _ctl(target, cluster, "get", "--prefix", "--keys-only", "/")
        assert denied.returncode != 0
        info = json.loads(
            target.ssh(f"docker inspect {svc.container_name(target.settings)}").stdout
        )
        hc = info[0]["HostConfig"]
        assert info[0]["Config"]["User"] == f"{svc.ETCD_UID}:{svc.ETCD_UID}"
        assert hc["ReadonlyRootfs"] and hc["CapDrop"] == ["ALL"] and hc["NetworkMode"] == "host"
        # the etcd passwords only on the host that bootstraps RBAC (R8 L5)
        modes = target.ssh(f"stat -c '%a %u' {svc.secrets_dir(target.settings)}/*_password")
        want = ["600 0", "600 0"] if target is first else []
        assert modes.stdout.split("\n")[:-1] == want, (target.host.name, modes.stdout)
        # etcd reads its key through its group; only root may write it
        key = target.ssh(f"stat -c '%a %u %g' {svc.tls_dir(target.settings)}/server.key")
        assert key.stdout.strip() == f"440 0 {svc.ETCD_UID}", key.stdout
    # the guard exists on the first etcd host only
    assert first.ssh(f"test -e {first.settings.layout.state}/{svc.AUTH_DONE}").returncode == 0
    assert lab[1].ssh(f"test -e {first.settings.layout.state}/{svc.AUTH_DONE}").returncode != 0


#: In a member's Postgres container as postgres: a TLS handshake with the member's etcd
#: client port presenting a certificate and key (argv 3, 4), verifying etcd with the etcd
#: CA; prints "refused" or "accepted".
HANDSHAKE = """
import socket, ssl, sys
ctx = ssl.create_default_context(cafile="/etc/pgsteady-tls/etcd-ca.crt")
ctx.check_hostname = False
ctx.load_cert_chain(sys.argv[3], sys.argv[4])
try:
    with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5) as raw:
        with ctx.wrap_socket(raw) as tls:
            tls.sendall(b"GET /version HTTP/1.0\\r\\n\\r\\n")
            print("accepted" if tls.recv(16).startswith(b"HTTP/") else "refused")
except (ssl.SSLError, OSError):
    print("refused")
"""


def test_a_postgres_certificate_is_no_etcd_client(lab: list[LabTarget]) -> None:
    """R8 M1 on the deployed hosts: the postgres uid reads its server key, but etcd trusts
    only the cluster's etcd CA: the handshake fails (before, it was a passwordless client,
    enough to keep a dead leader's lease alive)."""
    first = lab[0]
    cluster = _cluster(first)
    member = cluster.member(first.host.name)
    argv = ["docker", "exec", "-u", "postgres", first.settings.container_name, "python3", "-c"]
    where = [member.address, str(cluster.etcd_client_port)]

    def handshake(cert: str, key: str) -> str:
        got = first.ssh(shlex.join([*argv, HANDSHAKE, *where, cert, key]))
        return got.stdout.strip() or got.stderr

    postgres = handshake("/etc/pgsteady-tls/server.crt", "/etc/pgsteady-tls-key/server.key")
    assert postgres == "refused", postgres
    # the control: Patroni's etcd client certificate, from the same place, is accepted
    patroni = handshake("/etc/pgsteady-tls/etcd-client.crt", ms.ETCD_CLIENT_KEY_MOUNT)
    assert patroni == "accepted", patroni


def test_verify_runs_every_etcd_check_on_each_etcd_host(
    lab: list[LabTarget], deployed_cluster_lab: ClusterLab
) -> None:
    result = deployed_cluster_lab.verify()
    rows = {
        m.group(1): tuple(int(n) for n in m.groups()[1:])
        for m in re.finditer(r"(\S+)\s*│\s*etcd\s*│\s*(\d+)\s*│\s*(\d+)\s*│\s*(\d+)", result.output)
    }
    # healthy, confined, quorum, members_match_the_inventory, auth_on: passed, none skipped
    assert rows == {t.host.name: (5, 0, 0) for t in lab}, result.output[-6000:]
    # R8 M3: Patroni's etcd client certificate and etcd's own, current and of the etcd CA
    pattern = r"(\S+)\s*│\s*cluster_tls\s*│\s*(\d+)\s*│\s*(\d+)\s*│\s*(\d+)"
    certs = {
        m.group(1): tuple(int(n) for n in m.groups()[1:])
        for m in re.finditer(pattern, result.output)
    }
    assert certs == {t.host.name: (2, 0, 0) for t in lab}, result.output[-6000:]
