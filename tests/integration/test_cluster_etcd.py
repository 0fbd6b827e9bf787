"""Three REAL etcd members started from pgsteady's rendered arguments, bootstrapped with
the rendered RBAC steps, on 127.0.0.2-4 with TLS certificates from pgsteady.tls.

Proves: the members form one cluster; Patroni's user may write under its cluster prefix
and nowhere else; a client without credentials or without a certificate is refused; after
2 of 3 members die a write fails (quorum lost) and after one restarts writes work again.
Every process is started here and stopped by its PID.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from pgsteady.cluster import etcd
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
