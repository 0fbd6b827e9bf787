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
