"""The cluster's etcd PKI (pgsteady/cluster/certs.py): Patroni's client certificate (no
Common Name, clientAuth only), the members' certificates (a fixed CN that is no etcd user),
their renewal decision, and etcd's peer CN rule. tests/integration/test_cluster_patroni.py
shows Patroni reaching etcd with its certificate (one with a CN is refused by etcd's
gateway)."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pgsteady import tls
from pgsteady.cluster import certs, etcd
from pgsteady.cluster.certs import issue_etcd_client_cert
from pgsteady.cluster.topology import ETCD_USERS, Cluster, Member, cluster_from_mapping


def test_no_common_name_client_auth_only_and_issued_by_the_ca() -> None:
    ca = tls.create_ca("t")
    pem, key = issue_etcd_client_cert(ca, "pg1")
    cert = x509.load_pem_x509_certificate(pem)
    assert list(cert.subject) == []
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.critical and san.value.get_values_for_type(x509.DNSName) == ["pg1"]
    assert tls.issued_by(cert, ca.cert)
    assert b"PRIVATE KEY" in key


def test_a_bad_name_is_refused() -> None:
    with pytest.raises(tls.TlsError):
        issue_etcd_client_cert(tls.create_ca("t"), "not a name")


def test_built_like_a_server_certificate_but_for_the_subject_and_usage() -> None:
    """One builder for both (pgsteady.tls.issue_cert): the same key usage, identifiers,
    constraints and validity; only the subject, the SAN's criticality and the EKU differ."""
    ca = tls.create_ca("t")
    client = x509.load_pem_x509_certificate(issue_etcd_client_cert(ca, "pg1")[0])
    server = x509.load_pem_x509_certificate(tls.issue_server_cert(ca, ["pg1"])[0])
    own = {x509.SubjectAlternativeName, x509.ExtendedKeyUsage, x509.SubjectKeyIdentifier}

    def shape(cert: x509.Certificate) -> dict:
        """Each shared extension's criticality and value (the key identifier: its type)."""
        out = {type(e.value): (e.critical, e.value) for e in cert.extensions}
        out[x509.SubjectKeyIdentifier] = x509.SubjectKeyIdentifier in out
        return {k: v for k, v in out.items() if k not in own - {x509.SubjectKeyIdentifier}}

    assert shape(client) == shape(server)
    assert shape(client)[x509.KeyUsage][1].digital_signature
    assert abs(client.not_valid_after_utc - server.not_valid_after_utc).total_seconds() < 60
    assert client.issuer == server.issuer == ca.cert.subject


def test_an_address_name_is_an_ip_entry() -> None:
    cert = x509.load_pem_x509_certificate(issue_etcd_client_cert(tls.create_ca("t"), "10.0.0.5")[0])
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(a) for a in san.get_values_for_type(x509.IPAddress)] == ["10.0.0.5"]


def test_a_member_certificate_has_the_fixed_cn_no_etcd_user_and_both_usages() -> None:
    """R8 M1: etcd maps a client certificate's CN to a user; the members' CN is none."""
    ca = certs.create_etcd_ca("inv", "main")
    cert = x509.load_pem_x509_certificate(certs.issue_etcd_member_cert(ca, "pg1", "10.0.0.1")[0])
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert cn == certs.MEMBER_CN and cn not in ETCD_USERS
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert tls.cert_names(cert) == {"pg1", "10.0.0.1", "127.0.0.1"}
    assert tls.issued_by(cert, ca.cert)
    assert "etcd main" in ca.cert.subject.rfc4514_string()


def test_renewal_decision_for_the_etcd_certificates() -> None:
    """R8 M3: what tasks/tls.renewal_needed decides for Patroni's client certificate and
    etcd's member certificate (the names the tasks pass): current -> None; near expiry,
    another CA (a cluster from before the etcd CA) or other names -> a reason."""
    ca, inventory = certs.create_etcd_ca("inv", "main"), tls.create_ca("inv")
    now = dt.datetime.now(dt.UTC)
    names = certs.member_names("pg1", "10.0.0.1")
    member = certs.issue_etcd_member_cert(ca, "pg1", "10.0.0.1")[0]
    client = certs.issue_etcd_client_cert(ca, "pg1")[0]
    assert tls.renewal_reason(member, ca.cert_pem, names) is None
    assert tls.renewal_reason(client, ca.cert_pem, ["pg1"]) is None
    later = now + dt.timedelta(days=tls.SERVER_DAYS - tls.RENEW_DAYS + 1)
    assert "days left" in (tls.renewal_reason(client, ca.cert_pem, ["pg1"], now=later) or "")
    assert "days left" in (tls.renewal_reason(member, ca.cert_pem, names, now=later) or "")
    old = certs.issue_etcd_client_cert(inventory, "pg1")[0]
    assert "not issued by" in (tls.renewal_reason(old, ca.cert_pem, ["pg1"]) or "")
    moved = certs.member_names("pg1", "10.0.0.9")
    assert tls.renewal_reason(member, ca.cert_pem, moved) == "the host's names changed"


def test_etcd_admits_only_member_certificates_as_peers() -> None:
    argv = etcd.member_args(*_cluster_and_member(), etcd.EtcdPaths(*"abcdef"), "t")
    assert f"--peer-cert-allowed-cn={certs.MEMBER_CN}" in argv
    assert "--trusted-ca-file=b" in argv and "--peer-trusted-ca-file=b" in argv


def _cluster_and_member() -> tuple[Cluster, Member]:
    cluster = cluster_from_mapping(
        {
            "postgres_cluster_name": "main",
            "members": [{"name": f"pg{i}", "address": f"10.0.0.{i}"} for i in (1, 2, 3)],
        }
    )
    return cluster, cluster.member("pg1")
