"""verify's cluster_tls checks (tests/verify/test_cluster_tls.py) on real files read by the
suite's own Host through testinfra's local backend: a current certificate of the etcd CA
passes; one with fewer than VERIFY_MIN_DAYS left, or from another CA, fails with a fix."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from types import SimpleNamespace

import pytest
import testinfra

from pgsteady import tls
from pgsteady.cluster import certs
from pgsteady.cluster import etcd_service as svc
from pgsteady.cluster import member_service as ms
from pgsteady.verify import CheckFailed, Fixes, VerifyContext
from tests.support.verify_module import load_verify_module

checks = load_verify_module("test_cluster_tls")
conftest = load_verify_module("conftest")
FIXES = Fixes("inventory.py")


def _files(app: Path, ca: tls.Authority, days: int, signer: tls.Authority | None = None) -> None:
    """Patroni's client pair and etcd's member pair under ``app`` as the deploy lays them
    out, issued ``days`` long by ``signer`` (default: the etcd CA ``ca``)."""
    signer = signer or ca
    now = dt.datetime.now(dt.UTC)
    (app / "tls").mkdir(parents=True, exist_ok=True)
    (app / "tls" / ms.ETCD_CA_CERT).write_bytes(ca.cert_pem)
    client = certs.issue_etcd_client_cert(signer, "pg1", now=now, days=days)[0]
    (app / "tls" / ms.ETCD_CLIENT_CERT).write_bytes(client)
    s = SimpleNamespace(app_dir=str(app))
    etcd_tls = Path(svc.tls_dir(s))  # type: ignore[arg-type]
    etcd_tls.mkdir(parents=True, exist_ok=True)
    (etcd_tls / "ca.crt").write_bytes(ca.cert_pem)
    member = certs.issue_etcd_member_cert(signer, "pg1", "10.0.0.1", now=now, days=days)[0]
    (etcd_tls / "server.crt").write_bytes(member)


def _run(app: Path) -> list[str]:
    """The failures of both checks on this machine's files (empty: both pass)."""
    on = conftest.Host(testinfra.get_host("local://"), None)
    s = SimpleNamespace(app_dir=str(app))
    ctx = SimpleNamespace(host="pg1", etcd_peers={"pg1": "https://10.0.0.1:2380"})
    out = []
    for call in (
        lambda: checks.test_patroni_etcd_client_days_left(on, s, FIXES),
        lambda: checks.test_etcd_server_days_left(on, s, ctx, FIXES),
    ):
        try:
            call()
        except CheckFailed as exc:
            assert exc.fix and FIXES.deploy in exc.fix
            out.append(exc.what)
    return out


def test_current_certificates_pass(tmp_path: Path) -> None:
    _files(tmp_path, certs.create_etcd_ca("inv", "main"), days=365)
    assert _run(tmp_path) == []


def test_near_expiry_fails_both(tmp_path: Path) -> None:
    _files(tmp_path, certs.create_etcd_ca("inv", "main"), days=tls.VERIFY_MIN_DAYS - 1)
    failed = _run(tmp_path)
    assert len(failed) == 2 and all(" expires in 13 days " in f for f in failed), failed
    assert "etcd-client.crt" in failed[0] and "etcd/tls/server.crt" in failed[1]


def test_a_certificate_of_the_inventory_ca_fails(tmp_path: Path) -> None:
    """A cluster deployed before it had an etcd CA, not converged yet."""
    inventory = tls.create_ca("inv")
    _files(tmp_path, certs.create_etcd_ca("inv", "main"), days=365, signer=inventory)
    failed = _run(tmp_path)
    assert len(failed) == 2 and all("was not issued by" in f for f in failed), failed


def test_skipped_off_etcd_hosts(tmp_path: Path) -> None:
    _files(tmp_path, certs.create_etcd_ca("inv", "main"), days=1)
    on = conftest.Host(testinfra.get_host("local://"), None)
    ctx = VerifyContext("pg4", "inv.py", {}, None, etcd_peers={"pg1": "x"})  # type: ignore[arg-type]
    with pytest.raises(pytest.skip.Exception):
        checks.test_etcd_server_days_left(on, SimpleNamespace(app_dir=str(tmp_path)), ctx, FIXES)
