"""pgsteady.tls: certificate names, renewal decision, the CA directory, supplied files."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest
from cryptography import x509

from pgsteady.ca_store import load_or_create_ca
from pgsteady.postgres.conf_files import render_pg_hba_conf, render_postgresql_conf, requires_tls
from pgsteady.settings import HostFacts, SettingsError, build_settings
from pgsteady.tls import (
    RENEW_DAYS,
    SERVER_DAYS,
    TlsError,
    cert_names,
    check_supplied,
    create_ca,
    issue_server_cert,
    renewal_reason,
    server_names,
)

NOW = dt.datetime(2026, 11, 29, 12, 0, tzinfo=dt.UTC)
FACTS = HostFacts(ram_mb=4096, cpus=2)


@pytest.fixture(scope="module")
def ca():
    return create_ca("unit", now=NOW)


def test_server_names_list_host_names_addresses_and_loopback():
    names = server_names("db1", "db1.example.internal", "10.0.1.10", "10.0.1.10", ["DB.Alias."])
    assert names == [
        "db.alias",
        "db1.example.internal",
        "db1",
        "10.0.1.10",
        "localhost",
        "127.0.0.1",
        "::1",
    ]


def test_server_names_skip_wildcard_bind_and_local_inventory_name():
    names = server_names("db1", "db1", "0.0.0.0", "@local")
    assert names == ["db1", "localhost", "127.0.0.1", "::1"]
    assert "db2.example.org" in server_names("db1", "db1", "::", "db2.example.org")


def test_issued_certificate_lists_the_names_as_dns_and_ip_entries(ca):
    names = server_names("db1", "db1.lan", "10.0.1.10", "@local")
    pem, key = issue_server_cert(ca, names, now=NOW)
    cert = x509.load_pem_x509_certificate(pem)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.DNSName)) == {"db1.lan", "db1", "localhost"}
    assert {str(a) for a in san.get_values_for_type(x509.IPAddress)} == {
        "10.0.1.10",
        "127.0.0.1",
        "::1",
    }
    assert cert_names(cert) == set(names)
    assert cert.issuer == ca.cert.subject
    assert cert.not_valid_after_utc - NOW > dt.timedelta(days=SERVER_DAYS - 1)
    assert b"PRIVATE KEY" in key


def test_renewal_reason(ca):
    names = ["db1", "127.0.0.1"]
    pem, _ = issue_server_cert(ca, names, now=NOW)
    assert renewal_reason(pem, ca.cert_pem, names, now=NOW) is None
    assert renewal_reason(pem.decode(), ca.cert_pem, list(reversed(names)), now=NOW) is None
    assert renewal_reason(None, ca.cert_pem, names, now=NOW) == "no certificate on the host"
    assert "cannot be read" in renewal_reason("garbage", ca.cert_pem, names, now=NOW)
    assert "names changed" in renewal_reason(pem, ca.cert_pem, [*names, "db1.lan"], now=NOW)
    late = NOW + dt.timedelta(days=SERVER_DAYS - RENEW_DAYS + 1)
    assert "days left" in renewal_reason(pem, ca.cert_pem, names, now=late)
    just_in_time = NOW + dt.timedelta(days=SERVER_DAYS - RENEW_DAYS - 1)
    assert renewal_reason(pem, ca.cert_pem, names, now=just_in_time) is None
    other = create_ca("other", now=NOW)
    assert "not issued by" in renewal_reason(pem, other.cert_pem, names, now=NOW)


def test_ca_directory_created_once_private_and_reused(tmp_path: Path):
    directory = tmp_path / ".pgsteady" / "production"
    first = load_or_create_ca(directory, "production")
    assert directory.stat().st_mode & 0o777 == 0o700
    assert (directory / "ca.key").stat().st_mode & 0o777 == 0o600
    assert "production" in first.cert.subject.rfc4514_string()
    again = load_or_create_ca(directory, "production")
    assert again == first
    assert [p.name for p in tmp_path.joinpath(".pgsteady").iterdir()] == ["production"]


def test_ca_directory_refuses_readable_key_and_missing_files(tmp_path: Path):
    directory = tmp_path / "ca"
    load_or_create_ca(directory, "x")
    os.chmod(directory / "ca.key", 0o644)
    with pytest.raises(TlsError, match="chmod 600"):
        load_or_create_ca(directory, "x")
    (directory / "ca.key").unlink()
    with pytest.raises(TlsError, match="holds no ca.key"):
        load_or_create_ca(directory, "x")


def test_ca_parent_is_made_0700_whatever_the_umask(tmp_path: Path):
    old = os.umask(0)
    try:
        load_or_create_ca(tmp_path / ".pgsteady" / "inv", "inv")
    finally:
        os.umask(old)
    assert (tmp_path / ".pgsteady").stat().st_mode & 0o777 == 0o700
    assert (tmp_path / ".pgsteady" / "inv").stat().st_mode & 0o777 == 0o700
    assert (tmp_path / ".pgsteady" / "inv" / "ca.key").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("which", ["parent", "directory"])
def test_ca_refused_in_a_directory_others_can_write(tmp_path: Path, which: str):
    directory = tmp_path / "state" / "inv"
    load_or_create_ca(directory, "inv")
    loose = directory.parent if which == "parent" else directory
    loose.chmod(0o775)
    with pytest.raises(TlsError, match=f"{loose} is mode 0775 .*chmod go-w"):
        load_or_create_ca(directory, "inv")
    loose.chmod(0o1777)  # sticky like /tmp: others still create and rename their own entries
    with pytest.raises(TlsError, match="mode 1777"):
        load_or_create_ca(directory, "inv")
    fresh = tmp_path / "open" / "new"
    fresh.parent.mkdir(mode=0o777)
    fresh.parent.chmod(0o777)
    with pytest.raises(TlsError, match="is mode 0777"):
        load_or_create_ca(fresh, "new")
    assert not fresh.exists()  # refused before any CA was made


@pytest.mark.parametrize("mode", [0o775, 0o757])
def test_ca_refused_under_a_grandparent_others_can_write(tmp_path: Path, mode: int):
    """Every directory above the CA counts, not only its parent (review R7 L3): a
    group-writable grandparent lets another uid rename the parent away and put its own
    CA in its place."""
    directory = tmp_path / "home" / "state" / "inv"
    load_or_create_ca(directory, "inv")
    grandparent = tmp_path / "home"
    grandparent.chmod(mode)
    with pytest.raises(TlsError, match=f"{grandparent} is mode {mode:04o} .*chmod go-w"):
        load_or_create_ca(directory, "inv")
    with pytest.raises(TlsError, match=f"{grandparent} is mode"):
        load_or_create_ca(tmp_path / "home" / "other" / "new", "new")
    assert not (tmp_path / "home" / "other").exists()  # refused before anything was made
    grandparent.chmod(0o755)
    assert load_or_create_ca(directory, "inv").cert_pem


def test_ca_allowed_under_a_root_owned_sticky_ancestor(tmp_path: Path):
    """Like /tmp: a root-owned sticky directory above the CA's parent is fine."""
    if os.getuid() != 0:
        pytest.skip("a root-owned directory needs root")
    sticky = tmp_path / "shared"
    sticky.mkdir()
    sticky.chmod(0o1777)
    load_or_create_ca(sticky / "me" / "inv", "inv")
    assert (sticky / "me" / "inv" / "ca.key").exists()


@pytest.mark.skipif(os.getuid() != 0, reason="chown to another uid needs root")
def test_ca_refused_in_a_directory_another_uid_owns(tmp_path: Path):
    directory = tmp_path / "state" / "inv"
    directory.parent.mkdir(mode=0o755)
    os.chown(directory.parent, 4242, 4242)
    with pytest.raises(TlsError, match="owned by uid 4242"):
        load_or_create_ca(directory, "inv")
    assert not directory.exists()


def _write(tmp_path: Path, name: str, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def test_check_supplied(tmp_path: Path, ca):
    pem, key = issue_server_cert(ca, ["db1"], now=NOW)
    cert, key_file, ca_file = (
        _write(tmp_path, "c.pem", pem),
        _write(tmp_path, "k.pem", key),
        _write(tmp_path, "ca.pem", ca.cert_pem),
    )
    assert check_supplied(cert, key_file, ca_file, now=NOW) == []
    _, other_key = issue_server_cert(ca, ["db1"], now=NOW)
    wrong = _write(tmp_path, "k2.pem", other_key)
    assert "does not belong" in check_supplied(cert, wrong, ca_file, now=NOW)[0]
    other_ca = _write(tmp_path, "ca2.pem", create_ca("o", now=NOW).cert_pem)
    assert "did not issue" in check_supplied(cert, key_file, other_ca, now=NOW)[0]
    later = NOW + dt.timedelta(days=SERVER_DAYS + 1)
    assert "expired" in check_supplied(cert, key_file, ca_file, now=later)[0]
    assert "not a PEM certificate" in check_supplied(key_file, key_file, ca_file)[0]
    assert "cannot be read here" in check_supplied(cert, "/nonexistent/k", ca_file)[0]


def test_settings_validate_tls_keys(tmp_path: Path, ca):
    with pytest.raises(SettingsError, match="set all three"):
        build_settings({"postgres_tls_cert_file": "/x.pem"}, FACTS)
    with pytest.raises(SettingsError, match=r"postgres_tls_extra_names\[0\] = 'a b'"):
        build_settings({"postgres_tls_extra_names": ["a b"]}, FACTS)
    pem, key = issue_server_cert(ca, ["db1"])
    data = {
        "postgres_tls_cert_file": _write(tmp_path, "c.pem", pem),
        "postgres_tls_key_file": _write(tmp_path, "k.pem", key),
        "postgres_tls_ca_file": _write(tmp_path, "ca.pem", create_ca("o").cert_pem),
    }
    with pytest.raises(SettingsError, match="did not issue"):
        build_settings(data, FACTS)
    data["postgres_tls_ca_file"] = _write(tmp_path, "ca.pem", ca.cert_pem)
    assert build_settings(data, FACTS).postgres_tls_cert_file == data["postgres_tls_cert_file"]


@pytest.mark.parametrize(
    ("bind", "ssl_only"),
    [("127.0.0.1", False), ("::1", False), ("10.0.1.10", True), ("0.0.0.0", True)],
)
def test_rendered_files_serve_tls_and_refuse_plain_tcp_off_loopback(bind, ssl_only):
    # Off loopback the client networks are CIDRs (samenet is refused with the pooler on).
    nets = {"postgres_allowed_networks": ["10.0.1.0/24"]} if ssl_only else {}
    s = build_settings({"postgres_bind": bind, **nets}, FACTS)
    assert requires_tls(s) is ssl_only
    conf = render_postgresql_conf(s)
    assert "\nssl = on\n" in conf
    assert "ssl_key_file = '/etc/pgsteady-tls-key/server.key'" in conf
    hba = render_pg_hba_conf(s)
    assert ("hostnossl all" in hba) is ssl_only
    assert ("\nhostssl " in hba) is ssl_only
