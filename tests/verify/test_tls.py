"""tls: the server encrypts, with a certificate clients can verify that is not about to expire."""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING

import pytest
from cryptography import x509

from pgsteady.postgres.conf_files import requires_tls
from pgsteady.settings import Settings
from pgsteady.stack.layout import TLS_MOUNT
from pgsteady.tls import (
    CA_FILE,
    CERT_FILE,
    KEY_FILE,
    VERIFY_MIN_DAYS,
    days_left,
    issued_by,
)
from pgsteady.verify import Fixes, check

if TYPE_CHECKING:
    from conftest import Host

APPLY = "{paths.bin}/pgsteady-ctl apply-config"


def _tls_dir(s: Settings) -> str:
    return f"{s.app_dir}/tls"


def _renew_fix(s: Settings, fixes: Fixes) -> str:
    if s.postgres_tls_cert_file:
        return f"put a renewed certificate at postgres_tls_cert_file, then {fixes.deploy}"
    return f"{fixes.deploy} (issues a new certificate from the inventory's CA and reloads)"


def _cert(on: Host, s: Settings, name: str) -> x509.Certificate:
    return on.certificate(f"{_tls_dir(s)}/{name}")


@pytest.mark.fix("{deploy} (sets ssl = on and reloads)")
def test_ssl_on(pg: Host) -> None:
    got = pg.value("SHOW ssl")
    check(got == "on", f"ssl is {got}: the server accepts unencrypted connections only")


def test_certificate_days_left(on: Host, s: Settings, fixes: Fixes) -> None:
    cert = _cert(on, s, CERT_FILE)
    left = days_left(cert)
    check(
        left >= VERIFY_MIN_DAYS,
        f"{_tls_dir(s)}/{CERT_FILE} expires in {left:.0f} days "
        f"({cert.not_valid_after_utc:%Y-%m-%d}; at least {VERIFY_MIN_DAYS} wanted)",
        _renew_fix(s, fixes),
    )


def test_certificate_issued_by_ca_file(on: Host, s: Settings, fixes: Fixes) -> None:
    """Clients verify the server with app_dir/tls/ca.crt (sslmode=verify-full)."""
    cert, ca = _cert(on, s, CERT_FILE), _cert(on, s, CA_FILE)
    check(
        issued_by(cert, ca),
        f"{_tls_dir(s)}/{CERT_FILE} was not issued by {_tls_dir(s)}/{CA_FILE}: "
        "clients using verify-full refuse the server",
        _renew_fix(s, fixes),
    )


def test_key_private(on: Host, s: Settings, fixes: Fixes) -> None:
    """The key's directory is root's alone (no host group reaches it; the container gets
    the key file bind-mounted), the key itself root:<postgres uid> 0640."""
    private = f"{_tls_dir(s)}/{KEY_FILE.rsplit('/', 1)[0]}"
    st = on.stat(private)
    check(st is not None, f"{private} is missing", fixes.deploy)
    check(
        st[0] == 0 and st[1] == 0 and st[2] == 0o700,
        f"{private} is owned by {st[0]}:{st[1]}, mode {st[2]:04o}; must be root:root 0700",
        fixes.on_host(f"chown 0:0 {private} && chmod 700 {private}"),
    )
    path = f"{_tls_dir(s)}/{KEY_FILE}"
    got = on.stat(path)
    check(got is not None, f"{path} is missing", fixes.deploy)
    uid = s.postgres_uid
    check(
        got[0] == 0 and got[1] == uid and got[2] == 0o640,
        f"{path} is owned by {got[0]}:{got[1]}, mode {got[2]:04o}; must be root:{uid} 0640",
        fixes.on_host(f"chown 0:{uid} {path} && chmod 640 {path}"),
    )


@pytest.mark.fix(APPLY, on_host=True)
def test_server_loaded_current_certificate(pg: Host, s: Settings) -> None:
    """The server reloaded its configuration after the certificate file last changed."""
    path = f"{_tls_dir(s)}/{CERT_FILE}"
    changed = int(pg.out(f"stat -c %Y {shlex.quote(path)}").strip())
    loaded = float(pg.value("SELECT extract(epoch FROM pg_conf_load_time())"))
    check(loaded >= changed, f"{path} changed after the server last loaded its configuration")


def _psql_in_container(pg: Host, s: Settings, conninfo: str) -> tuple[int, str]:
    script = 'PGPASSWORD="$(cat /run/secrets/app_password)" psql -XAtq -d "$1" -c "SELECT 1"'
    res = pg.run(
        f"{pg.docker} exec -u postgres {s.container_name} sh -c {shlex.quote(script)} sh "
        f"{shlex.quote(conninfo)}"
    )
    return res.rc, (res.stdout.strip() if res.rc == 0 else res.stderr.strip())


def test_app_login_tls(pg: Host, s: Settings) -> None:
    """The app role logs in over TLS verifying the server's certificate and name
    (sslmode=verify-full); with the port published off loopback, plain TCP is refused."""
    conninfo = (
        f"host=localhost user={s.postgres_user} dbname={s.postgres_db} sslmode=verify-full "
        f"sslrootcert={TLS_MOUNT}/{CA_FILE}"
    )
    rc, out = _psql_in_container(pg, s, conninfo)
    check(rc == 0 and out == "1", f"sslmode=verify-full login fails: {out[:160]}")
    if requires_tls(s):
        plain = f"host=127.0.0.1 user={s.postgres_user} dbname={s.postgres_db} sslmode=disable"
        rc, out = _psql_in_container(pg, s, plain)
        check(
            rc != 0 and "no encryption" in out,
            f"postgres_bind is {s.postgres_bind}, yet a login without TLS was accepted",
        )
