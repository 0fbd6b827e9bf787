"""The etcd client certificate Patroni presents: no Common Name, on purpose.

etcd runs with ``--client-cert-auth``, so every client must present a certificate from the
cluster CA. Patroni speaks to etcd through its gRPC gateway (HTTP/JSON), and once RBAC is
on etcd answers every gateway request whose client certificate carries a Common Name with
HTTP 400 ("CommonName of client sending a request against gateway will be ignored ...",
etcd's embed/serve.go; the CN-as-username rule cannot cross the gateway). A member's
server certificate (CN = its name) therefore cannot be Patroni's etcd client certificate:
this one has an empty subject, its name only in the subjectAltName, and clientAuth only.
Patroni authenticates with its etcd user's password instead.
"""

from __future__ import annotations

import datetime as dt

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from pgsteady import tls


def issue_etcd_client_cert(
    ca: tls.Authority, name: str, now: dt.datetime | None = None, days: int = tls.SERVER_DAYS
) -> tuple[bytes, bytes]:
    """(certificate PEM, key PEM): a clientAuth certificate for ``name`` (in the SAN, which
    is then critical as RFC 5280 requires for an empty subject), signed by ``ca``."""
    if not tls.valid_name(name):
        raise tls.TlsError(f"{name!r}: not a DNS name or an address a certificate can list")
    now = now or dt.datetime.now(dt.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = ca.cert
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    san = x509.SubjectAlternativeName([x509.DNSName(name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(min(now + dt.timedelta(days=days), ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(san, critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
        .sign(ca.key, hashes.SHA256())
    )
    pem_key = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), pem_key
