"""TLS and pg_hba end to end: the real deploy issues, pushes, renews and reloads.

One stack for the module: the CA lands beside the inventory, the host gets the CA, a
certificate and a private key the server accepts; the published port speaks TLS that
verifies by name; the superuser cannot log in through it; a converge renews a
certificate that is about to expire or lacks a name, reloads without a restart, and
the next converge changes nothing.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator

import psycopg2
import pytest
from cryptography import x509

from pgsteady.stack import pgbouncer
from pgsteady.stack.exporters import METRICS_CA_DIR
from pgsteady.tls import Authority, create_ca, days_left, issue_server_cert
from tests.support.stack import Stack

pytestmark = pytest.mark.timeout(900)

EXTRA = "db.e2e.example"


@pytest.fixture(scope="module")
def st() -> Iterator[Stack]:
    stack = Stack()
    result = stack.deploy("--diff")
    if result.returncode != 0:
        stack.destroy()
        pytest.fail(f"deploy failed:\n{result.output[-4000:]}")
    stack.first_output = result.output  # type: ignore[attr-defined]
    yield stack
    stack.destroy()


def _cert(st: Stack) -> x509.Certificate:
    return x509.load_pem_x509_certificate((st.app_dir / "tls" / "server.crt").read_bytes())


def test_ca_beside_the_inventory_and_files_on_the_host(st: Stack) -> None:
    ca_dir = st.dir / ".pgsteady" / "inventory"
    assert ca_dir.stat().st_mode & 0o777 == 0o700
    assert (ca_dir / "ca.key").stat().st_mode & 0o777 == 0o600
    tls = st.app_dir / "tls"
    assert (tls / "ca.crt").read_bytes() == (ca_dir / "ca.crt").read_bytes()
    key = (tls / "private" / "server.key").stat()
    assert (key.st_uid, key.st_gid, key.st_mode & 0o777) == (0, 999, 0o640)
    private = (tls / "private").stat()
    assert (private.st_uid, private.st_gid, private.st_mode & 0o777) == (0, 0, 0o700)
    # the key's content never appears in the deploy's output, even with --diff
    body = (tls / "private" / "server.key").read_text().splitlines()[1]
    assert body not in st.first_output  # type: ignore[attr-defined]
    assert st.psql("SHOW ssl") == "on"


def test_published_port_speaks_verified_tls(st: Stack) -> None:
    with st.connect() as conn, conn.cursor() as cur:  # sslmode=verify-full, host 127.0.0.1
        cur.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        assert cur.fetchone() == (True,)
    conn.close()


def test_superuser_refused_on_the_published_port(st: Stack) -> None:
    with pytest.raises(psycopg2.OperationalError, match="pg_hba.conf rejects connection"):
        psycopg2.connect(
            host="127.0.0.1", port=st.port, user="postgres", dbname="postgres",
            password=st.secret("postgres_password"), connect_timeout=5,
            sslmode="verify-full", sslrootcert=str(st.ca_file),
        )  # fmt: skip
    with pytest.raises(psycopg2.OperationalError, match="pg_hba.conf rejects connection"):
        psycopg2.connect(
            host="127.0.0.1", port=st.port, user="app", dbname="postgres",
            password=st.secret("app_password"), connect_timeout=5,
            sslmode="verify-full", sslrootcert=str(st.ca_file),
        )  # fmt: skip


def test_converge_renews_an_expiring_certificate_and_reloads(st: Stack) -> None:
    ca_dir = st.dir / ".pgsteady" / "inventory"
    ca = Authority((ca_dir / "ca.crt").read_bytes(), (ca_dir / "ca.key").read_bytes())
    old = _cert(st)
    soon = dt.datetime.now(dt.UTC) - dt.timedelta(days=355)  # 10 days left
    sans = old.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    listed = [*sans.get_values_for_type(x509.DNSName)]
    listed += [str(a) for a in sans.get_values_for_type(x509.IPAddress)]
    cert, key = issue_server_cert(ca, listed, now=soon)  # same names, 10 days left
    (st.app_dir / "tls" / "server.crt").write_bytes(cert)
    (st.app_dir / "tls" / "private" / "server.key").write_bytes(key)
    st.psql("SELECT pg_reload_conf()")
    assert days_left(_cert(st)) < 11
    started = st.postmaster_start()

    result = st.deploy()
    assert result.returncode == 0, result.output[-3000:]
    changed = " ".join(result.changed_operations())
    assert "days left" in changed and "Reload Postgres for the new TLS certificate" in changed
    assert days_left(_cert(st)) > 300
    assert st.postmaster_start() == started  # reloaded, not restarted
    with st.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT 1")
    conn.close()


def test_converge_adds_a_name_then_changes_nothing(st: Stack) -> None:
    started = st.postmaster_start()
    result = st.deploy(postgres_tls_extra_names=[EXTRA])
    assert result.returncode == 0, result.output[-3000:]
    assert "names changed" in " ".join(result.changed_operations())
    with psycopg2.connect(
        host=EXTRA, hostaddr="127.0.0.1", port=st.port, user="app", dbname="app",
        password=st.secret("app_password"), connect_timeout=5,
        sslmode="verify-full", sslrootcert=str(st.ca_file),
    ) as conn, conn.cursor() as cur:  # fmt: skip
        cur.execute("SELECT 1")
    conn.close()
    assert st.postmaster_start() == started
    again = st.deploy(postgres_tls_extra_names=[EXTRA])
    assert again.returncode == 0, again.output[-3000:]
    assert again.changed == 0, again.changed_operations()


def test_operator_supplied_certificate_is_served(new_stack: Stack) -> None:
    ca = create_ca("operator pki")
    cert, key = issue_server_cert(ca, ["db.operator.example", "127.0.0.1"])
    files = {}
    for name, data in (("cert", cert), ("key", key), ("ca", ca.cert_pem)):
        path = new_stack.dir / f"supplied-{name}.pem"
        path.write_bytes(data)
        files[f"postgres_tls_{name}_file"] = str(path)
    result = new_stack.deploy(**files)
    assert result.returncode == 0, result.output[-3000:]
    # The host serves and trusts the operator's PKI; pgsteady's CAs on the deploy machine
    # (the metrics CA, and the inventory CA its directory is made with) sign nothing of it.
    assert (new_stack.app_dir / "tls" / "ca.crt").read_bytes() == ca.cert_pem
    assert (new_stack.dir / ".pgsteady" / "inventory" / METRICS_CA_DIR / "ca.key").exists()
    assert (new_stack.app_dir / "tls" / "server.crt").read_bytes() == cert
    with psycopg2.connect(
        host="db.operator.example", hostaddr="127.0.0.1", port=new_stack.port, user="app",
        dbname="app", password=new_stack.secret("app_password"), connect_timeout=5,
        sslmode="verify-full", sslrootcert=files["postgres_tls_ca_file"],
    ) as conn, conn.cursor() as cur:  # fmt: skip
        cur.execute("SELECT 1")
    conn.close()
    # The pooler serves copies of the operator's pair (docs/security.md says so).
    tls = new_stack.app_dir / "tls"
    assert (tls / pgbouncer.POOLER_CERT).read_bytes() == cert
    assert (tls / pgbouncer.POOLER_KEY).read_bytes() == key
    deadline = time.monotonic() + 60
    while True:
        try:
            pooled = psycopg2.connect(
                host="db.operator.example", hostaddr="127.0.0.1", port=new_stack.pgbouncer_port,
                user="app", dbname="app", password=new_stack.secret("app_password"),
                connect_timeout=5, sslmode="verify-full",
                sslrootcert=files["postgres_tls_ca_file"],
            )  # fmt: skip
            break
        except psycopg2.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)
    pooled.close()
    again = new_stack.deploy(**files)
    assert again.returncode == 0 and again.changed == 0, again.changed_operations()
