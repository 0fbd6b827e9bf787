"""TLS for the server: one CA per inventory, a server certificate per host, renewal.

Pure logic on PEM text (the ``cryptography`` library, no openssl CLI): what names a host's
certificate lists, whether the certificate on the host must be replaced, and how to make
a CA and a server certificate. The CA lives on the deploy machine
(:func:`pgsteady.ca_store.load_or_create_ca`); tasks/tls.py pushes ``ca.crt``,
``server.crt`` and ``server.key`` to the host.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

#: A generated server certificate is valid this long and replaced by the converge that
#: finds fewer than RENEW_DAYS left; `make verify` fails below VERIFY_MIN_DAYS.
SERVER_DAYS = 365
CA_DAYS = 3650
RENEW_DAYS = 30
VERIFY_MIN_DAYS = 14
#: Inside the container (compose mounts app_dir/tls here, read-only).
CA_FILE, CERT_FILE, KEY_FILE = "ca.crt", "server.crt", "private/server.key"
#: The key alone is bind-mounted here: app_dir/tls/private is root-only (0700), so no host
#: group (gid 999 is often systemd-journal) can reach it; pyinfra rewrites the file in
#: place, so a renewed key reaches the running container without a restart.

_DNS_NAME = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?\.?)+$")


_SERVER_AND_PEER = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
SERVER_ONLY = (ExtendedKeyUsageOID.SERVER_AUTH,)
CLIENT_ONLY = (ExtendedKeyUsageOID.CLIENT_AUTH,)


class TlsError(ValueError):
    """A certificate, key or CA directory that cannot be used, with what to do about it."""


@dataclass(frozen=True)
class Authority:
    """A CA: its certificate and private key (PEM)."""

    cert_pem: bytes
    key_pem: bytes

    @property
    def cert(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_pem)

    @property
    def key(self) -> ec.EllipticCurvePrivateKey:
        key = serialization.load_pem_private_key(self.key_pem, password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return key


# --- names ------------------------------------------------------------------------------


def is_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def valid_name(name: str) -> bool:
    """An IP address or a DNS name a certificate can list."""
    return isinstance(name, str) and (is_address(name) or bool(_DNS_NAME.match(name)))


def server_names(
    hostname: str,
    fqdn: str,
    bind: str,
    inventory_name: str,
    extra: list[str] | tuple[str, ...] = (),
) -> list[str]:
    """The names a host's certificate lists, in order, without duplicates: the extra names,
    the FQDN and short hostname, the published address (unless a wildcard), the inventory
    name (an address or a DNS name, not ``@local``), then localhost and loopback."""
    wildcard = bind in ("0.0.0.0", "::")
    candidates = [*extra, fqdn, hostname, "" if wildcard else bind, inventory_name]
    candidates += ["localhost", "127.0.0.1", "::1"]
    names: list[str] = []
    for raw in candidates:
        name = (raw or "").strip().rstrip(".")
        name = str(ipaddress.ip_address(name)) if is_address(name) else name.lower()
        if name and valid_name(name) and name not in names:
            names.append(name)
    return names


def _san(names: list[str]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for name in names:
        if is_address(name):
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        else:
            entries.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(entries)


def cert_names(cert: x509.Certificate) -> set[str]:
    """The DNS names and addresses of a certificate's subjectAltName."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    dns = set(san.get_values_for_type(x509.DNSName))
    return dns | {str(a) for a in san.get_values_for_type(x509.IPAddress)}


# --- making certificates ----------------------------------------------------------------


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def create_ca(label: str, now: dt.datetime | None = None, days: int = CA_DAYS) -> Authority:
    """A new CA (ECDSA P-256) named after ``label`` (the inventory)."""
    now = now or _now()
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "pgsteady"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"pgsteady CA {label}"[:64]),
        ]
    )
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    return Authority(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def issue_cert(
    ca: Authority,
    names: list[str],
    usages: tuple[x509.ObjectIdentifier, ...],
    now: dt.datetime | None = None,
    days: int = SERVER_DAYS,
    common_name: bool | str = True,
) -> tuple[bytes, bytes]:
    """(certificate PEM, key PEM): a new P-256 key's end-entity certificate for ``names``
    (subjectAltName), signed by ``ca``, with extended key usages ``usages``; valid ``days``
    but never past the CA. The subject is CN = the first name (``common_name`` a string:
    that string), or empty when ``common_name`` is false (then the SAN is critical, as
    RFC 5280 requires)."""
    if not names:
        raise TlsError("a certificate needs at least one name")
    bad = [n for n in names if not valid_name(n)]
    if bad:
        raise TlsError(f"{bad[0]!r}: not a DNS name or an address a certificate can list")
    now = now or _now()
    key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = ca.cert
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cn = common_name if isinstance(common_name, str) else names[0]
    subject = [x509.NameAttribute(NameOID.COMMON_NAME, cn[:64])] if common_name else []
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name(subject))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(min(now + dt.timedelta(days=days), ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(list(usages)), critical=False)
        .add_extension(_san(names), critical=not common_name)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
        .sign(ca.key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)


def issue_server_cert(
    ca: Authority,
    names: list[str],
    now: dt.datetime | None = None,
    days: int = SERVER_DAYS,
    usages: tuple[x509.ObjectIdentifier, ...] = tuple(_SERVER_AND_PEER),
) -> tuple[bytes, bytes]:
    """(certificate PEM, key PEM) for a server known by ``names``, signed by ``ca``;
    ``usages``: its extended key usages (default serverAuth and clientAuth: a cluster's
    members verify each other with the same CA; the exporters' certificates are serverAuth
    only, Prometheus's clientAuth)."""
    return issue_cert(ca, names, usages, now=now, days=days)


# --- deciding ---------------------------------------------------------------------------


def days_left(cert: x509.Certificate, now: dt.datetime | None = None) -> float:
    return (cert.not_valid_after_utc - (now or _now())).total_seconds() / 86400


def issued_by(cert: x509.Certificate, ca_cert: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def renewal_reason(
    current_pem: str | bytes | None,
    ca_cert_pem: bytes,
    names: list[str],
    now: dt.datetime | None = None,
    renew_days: int = RENEW_DAYS,
) -> str | None:
    """Why the host's certificate must be replaced, or None when it is good as it is."""
    if not current_pem:
        return "no certificate on the host"
    data = current_pem.encode() if isinstance(current_pem, str) else current_pem
    try:
        cert = x509.load_pem_x509_certificate(data)
    except ValueError:
        return "the certificate on the host cannot be read"
    if not issued_by(cert, x509.load_pem_x509_certificate(ca_cert_pem)):
        return "the certificate was not issued by this inventory's CA"
    left = days_left(cert, now)
    if left < renew_days:
        return f"{max(left, 0):.0f} days left (renewed below {renew_days})"
    if cert.not_valid_before_utc > (now or _now()):
        return "the certificate is not valid yet"
    if cert_names(cert) != set(names):
        return "the host's names changed"
    return None


# --- operator-supplied files ------------------------------------------------------------


def check_supplied(
    cert_file: str, key_file: str, ca_file: str, now: dt.datetime | None = None
) -> list[str]:
    """Problems with an operator's certificate, key and CA (local files), as setting errors."""
    errors: list[str] = []
    loaded: dict[str, bytes] = {}
    for key, path in (
        ("postgres_tls_cert_file", cert_file),
        ("postgres_tls_key_file", key_file),
        ("postgres_tls_ca_file", ca_file),
    ):
        try:
            loaded[key] = Path(path).read_bytes()
        except OSError as exc:
            errors.append(
                f"{key} = {path!r}: cannot be read here ({exc.strerror}; paths are read on "
                "the machine that runs the deploy)"
            )
    if errors:
        return errors
    try:
        cert, *chain = x509.load_pem_x509_certificates(loaded["postgres_tls_cert_file"])
    except ValueError:
        return [f"postgres_tls_cert_file = {cert_file!r}: not a PEM certificate"]
    try:
        cas = x509.load_pem_x509_certificates(loaded["postgres_tls_ca_file"])
    except ValueError:
        return [f"postgres_tls_ca_file = {ca_file!r}: not a PEM certificate"]
    try:
        key = serialization.load_pem_private_key(loaded["postgres_tls_key_file"], password=None)
    except (ValueError, TypeError):
        return [f"postgres_tls_key_file = {key_file!r}: not an unencrypted PEM private key"]
    if key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) != cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ):
        errors.append(
            f"postgres_tls_key_file = {key_file!r}: does not belong to postgres_tls_cert_file"
        )
    if days_left(cert, now) <= 0:
        errors.append(
            f"postgres_tls_cert_file = {cert_file!r}: expired on "
            f"{cert.not_valid_after_utc:%Y-%m-%d}; supply a valid certificate"
        )
    if not any(issued_by(cert, ca) for ca in [*cas, *chain]):
        errors.append(
            f"postgres_tls_ca_file = {ca_file!r}: did not issue postgres_tls_cert_file "
            "(clients verify the server with this file: sslmode=verify-full)"
        )
    return errors
