"""Patroni's etcd client certificate (pgsteady/cluster/certs.py): no Common Name, clientAuth
only, signed by the cluster CA. tests/integration/test_cluster_patroni.py shows Patroni
reaching etcd with it (a certificate with a CN is refused by etcd's gateway)."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from pgsteady import tls
from pgsteady.cluster.certs import issue_etcd_client_cert


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
