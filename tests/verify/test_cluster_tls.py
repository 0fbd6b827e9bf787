"""cluster_tls: a cluster member's etcd certificates are current (review R8, M3).

Patroni's etcd client certificate (every member) and etcd's member certificate (the etcd
hosts) were issued by the cluster's own etcd CA (app_dir/tls/etcd-ca.crt, etcd's
etcd/tls/ca.crt) and have at least VERIFY_MIN_DAYS left: on expiry Patroni loses etcd
and the leader demotes (failsafe off), or etcd's members stop talking to each other. A
deploy renews both below RENEW_DAYS.

Skipped on a single host (no postgres_cluster_name); the etcd checks on a member that
runs no etcd.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from pgsteady.cluster import etcd_service as svc
from pgsteady.cluster import member_service as ms
from pgsteady.settings import Settings
from pgsteady.tls import VERIFY_MIN_DAYS, days_left, issued_by
from pgsteady.verify import Fixes, VerifyContext, check

if TYPE_CHECKING:
    from conftest import Host


@pytest.fixture(scope="module", autouse=True)
def _cluster(s: Settings) -> None:
    if s.postgres_cluster_name is None:
        pytest.skip("not a cluster member (no postgres_cluster_name)")


def _current(on: Host, cert_path: str, ca_path: str, fixes: Fixes, what: str) -> None:
    cert, ca = on.certificate(cert_path), on.certificate(ca_path)
    fix = f"{fixes.deploy} (issues {what} anew from the cluster's etcd CA)"
    check(issued_by(cert, ca), f"{cert_path} was not issued by {ca_path}", fix)
    left = days_left(cert)
    check(
        left >= VERIFY_MIN_DAYS,
        f"{cert_path} ({what}) expires in {left:.0f} days "
        f"({cert.not_valid_after_utc:%Y-%m-%d}; at least {VERIFY_MIN_DAYS} wanted)",
        fix,
    )


def test_patroni_etcd_client_days_left(on: Host, s: Settings, fixes: Fixes) -> None:
    tls = f"{s.app_dir}/tls"
    crt, ca = f"{tls}/{ms.ETCD_CLIENT_CERT}", f"{tls}/{ms.ETCD_CA_CERT}"
    _current(on, crt, ca, fixes, "Patroni's etcd client certificate")


def test_etcd_server_days_left(on: Host, s: Settings, ctx: VerifyContext, fixes: Fixes) -> None:
    if ctx.host not in ctx.etcd_peers:
        pytest.skip(f"{ctx.host} runs no etcd")
    tls = svc.tls_dir(s)
    _current(on, f"{tls}/server.crt", f"{tls}/ca.crt", fixes, "etcd's member certificate")
