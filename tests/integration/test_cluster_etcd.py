"""Three REAL etcd members started from pgsteady's rendered arguments, bootstrapped with
the rendered RBAC steps, on 127.0.0.2-4 with the cluster's etcd CA (pgsteady.cluster.certs).

Proves: the members form one cluster; Patroni's user may write under its cluster prefix
and nowhere else; a client without credentials or without a certificate is refused; after
2 of 3 members die a write fails (quorum lost) and after one restarts writes work again;
a certificate of the inventory CA is refused, and only members' certificates reach the
peer port.
Every process is started here and stopped by its PID.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pgsteady.cluster import certs, etcd
from tests.support.etcd_lab import EtcdLab, running_etcd


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdLab]:
    with running_etcd(tmp_path_factory.mktemp("etcd")) as lab:
        yield lab


def test_the_three_members_form_one_cluster(lab: EtcdLab) -> None:
    proc = lab.ctl("member", "list", user="root")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert sorted(line.split(", ")[2] for line in lines) == ["m1", "m2", "m3"]
    assert all(", started, " in line for line in lines), lines


def test_patroni_writes_under_its_prefix_only(lab: EtcdLab) -> None:
    key = lab.cluster.prefix + "leader"
    assert lab.ctl("put", key, "m1", user="patroni").returncode == 0
    got = lab.ctl("get", key, "--print-value-only", user="patroni")
    assert got.stdout.strip() == "m1", got.stderr
    outside = lab.ctl("put", "/service/other/leader", "m1", user="patroni")
    assert outside.returncode != 0
    assert "permission denied" in outside.stderr
    sibling = lab.ctl("put", "/service/itestx/leader", "m1", user="patroni")
    assert "permission denied" in sibling.stderr


def test_a_client_without_credentials_is_refused(lab: EtcdLab) -> None:
    proc = lab.ctl("get", lab.cluster.prefix + "leader")
    assert proc.returncode != 0
    assert "etcdserver: permission denied" in proc.stderr, proc.stderr
    control = lab.ctl("get", lab.cluster.prefix + "leader", user="patroni")
    assert control.returncode == 0, control.stderr


def test_a_client_without_a_certificate_is_refused(lab: EtcdLab) -> None:
    """The TLS handshake fails (etcd logs why); the same call with the certificate works."""

    def refusals() -> int:
        return sum(
            (lab.tmp / f"{n}.log").read_text().count("client didn't provide a certificate")
            for n in lab.procs
        )

    before = refusals()
    proc = lab.ctl("put", lab.cluster.prefix + "x", "1", cert=False, user="patroni")
    assert proc.returncode != 0
    assert refusals() > before
    control = lab.ctl("put", lab.cluster.prefix + "x", "1", user="patroni")
    assert control.returncode == 0, control.stderr


def test_writes_stop_without_quorum_and_resume_with_it(lab: EtcdLab) -> None:
    key = lab.cluster.prefix + "quorum"
    lab.stop("m2")
    lab.stop("m3")
    survivor = etcd.client_urls(lab.cluster)[:1]
    proc = lab.ctl("put", key, "lost", user="patroni", endpoints=survivor)
    assert proc.returncode != 0, proc.stdout
    assert "context deadline exceeded" in proc.stderr, proc.stderr  # no leader to commit it
    lab.start("m2")
    deadline = time.monotonic() + 60
    while lab.ctl("put", key, "back", user="patroni", endpoints=survivor).returncode != 0:
        assert time.monotonic() < deadline, "writes did not resume after m2 came back"
        time.sleep(0.5)
    got = lab.ctl("get", key, "--print-value-only", user="patroni", endpoints=survivor)
    assert got.stdout.strip() == "back"


def _handshake(lab: EtcdLab, port: int, crt: Path, key: Path) -> str:
    """'ok' or the TLS error of a handshake with m1 on ``port`` presenting ``crt``."""
    ctx = ssl.create_default_context(cafile=str(lab.tmp / "ca.crt"))
    ctx.load_cert_chain(str(crt), str(key))
    address = lab.cluster.member("m1").address
    try:
        with (
            socket.create_connection((address, port), timeout=5) as raw,
            ctx.wrap_socket(raw, server_hostname=address) as tls_sock,
        ):
            tls_sock.sendall(b"GET /version HTTP/1.0\r\n\r\n")
            return "ok" if tls_sock.recv(64).startswith(b"HTTP/") else "no answer"
    except (ssl.SSLError, OSError) as exc:
        return f"refused: {exc}"


def test_a_certificate_of_the_inventory_ca_is_refused(lab: EtcdLab) -> None:
    """R8 M1: a host's Postgres certificate (inventory CA, clientAuth, CN ``root``) is no
    etcd client nor peer: the handshake fails, so no lease keep-alive, no member list, no
    root. Before, etcd trusted the inventory CA and this certificate was etcd's root."""
    inventory = lab.tmp / "inventory"
    crt, key = inventory / "server.crt", inventory / "server.key"
    client, peer = lab.cluster.etcd_client_port, lab.cluster.etcd_peer_port
    assert _handshake(lab, client, crt, key).startswith("refused"), "client port"
    assert _handshake(lab, peer, crt, key).startswith("refused"), "peer port"
    logs = "".join((lab.tmp / f"{n}.log").read_text() for n in lab.procs)
    assert "certificate signed by unknown authority" in logs
    # the control: the etcd CA's own client certificate is through
    assert _handshake(lab, client, lab.tmp / "client.crt", lab.tmp / "client.key") == "ok"


def test_the_peer_port_takes_member_certificates_only(lab: EtcdLab) -> None:
    """Patroni's kind of certificate (the etcd CA's, clientAuth, no CN), even naming the
    address it dials from, is no peer (--peer-cert-allowed-cn); a member's is."""
    port = lab.cluster.etcd_peer_port
    cert, key = certs.issue_etcd_client_cert(lab.ca, "127.0.0.1")
    (lab.tmp / "patroni-kind.crt").write_bytes(cert)
    (lab.tmp / "patroni-kind.key").write_bytes(key)
    patroni_kind = (lab.tmp / "patroni-kind.crt", lab.tmp / "patroni-kind.key")
    assert _handshake(lab, port, *patroni_kind).startswith("refused")
    # the same certificate is a client (the control: only the peer port refuses it)
    assert _handshake(lab, lab.cluster.etcd_client_port, *patroni_kind) == "ok"
    member = lab.tmp / "m2"
    assert _handshake(lab, port, member / "server.crt", member / "server.key") == "ok"
