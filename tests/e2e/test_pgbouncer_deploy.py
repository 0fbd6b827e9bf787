"""PgBouncer in a deployed stack (issue 18, item 1).

The shared default stack (pgbouncer_enabled by default): the application role logs in
through the pooler with SCRAM over TLS, verifying its certificate (its own key pair, of the
inventory's CA, for the server's names); plain TCP is
refused; the superuser and pgsteady's own roles are refused; the auth function is out of
the application's reach; the session database holds session state; 1,000 concurrent
clients are served with no error by at most the pool's server connections.
"""

from __future__ import annotations

import contextlib
import importlib.util
import socket
import ssl
import struct
import subprocess
import threading
import time
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import ExtendedKeyUsageOID

from pgsteady.settings import HostFacts, build_settings
from pgsteady.stack import pgbouncer
from pgsteady.tls import cert_names, issued_by
from tests.support.stack import Stack, docker

pytestmark = pytest.mark.timeout(900)

CLIENTS = 1000
REPO = Path(__file__).resolve().parents[2]
FACTS = HostFacts(ram_mb=4096, cpus=2, has_systemd=True)  # pool sizes read from the file


@pytest.fixture(scope="module")
def stack(shared_stack: Stack) -> Iterator[Stack]:
    """The shared stack, with its pooler healthy."""
    name = f"{shared_stack.name}-pgbouncer"
    deadline = time.monotonic() + 90
    state = ""
    while time.monotonic() < deadline:
        state = docker("inspect", "-f", "{{.State.Health.Status}}", name, check=False).stdout
        if state.strip() == "healthy":
            break
        time.sleep(1)
    assert state.strip() == "healthy", docker("logs", "--tail", "50", name, check=False).stderr
    yield shared_stack


def pooled(stack: Stack, user: str = "app", dbname: str = "app", password: str | None = None,
           sslmode: str = "verify-full", timeout: int = 10):  # fmt: skip
    """A connection through the pooler, verifying the server as the README says."""
    secret = "app_password" if user == "app" else f"{user}_password"
    return psycopg2.connect(
        host="127.0.0.1",
        port=stack.pgbouncer_port,
        user=user,
        password=password if password is not None else stack.secret(secret),
        dbname=dbname,
        connect_timeout=timeout,
        sslmode=sslmode,
        sslrootcert=str(stack.ca_file),
    )


def test_the_app_logs_in_with_scram_over_verified_tls(stack: Stack) -> None:
    with pooled(stack) as conn, conn.cursor() as cur:
        assert conn.info.ssl_in_use
        cur.execute("SELECT current_user, current_database(), inet_server_addr() IS NULL")
        # The pooler reached the server over its Unix socket (no server address).
        assert cur.fetchone() == ("app", "app", True)
    conn.close()


def _served_certificate(stack: Stack) -> x509.Certificate:
    """The certificate the pooler presents after an SSLRequest."""
    with socket.create_connection(("127.0.0.1", stack.pgbouncer_port), timeout=10) as raw:
        raw.sendall(struct.pack("!ii", 8, 80877103))
        assert raw.recv(1) == b"S"
        ctx = ssl.create_default_context(cafile=str(stack.ca_file))
        ctx.check_hostname = False
        with ctx.wrap_socket(raw) as tls:
            return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))


def _public(cert: x509.Certificate) -> bytes:
    return cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def test_the_pooler_serves_a_key_pair_of_its_own(stack: Stack) -> None:
    """With pgsteady's CA the pooler holds no copy of the server's key (review R6-L2): its
    own key and certificate, of the inventory's CA, for the server's names, serverAuth."""
    tls = stack.app_dir / "tls"
    served = _served_certificate(stack)
    mine = x509.load_pem_x509_certificate((tls / pgbouncer.POOLER_CERT).read_bytes())
    theirs = x509.load_pem_x509_certificate((tls / "server.crt").read_bytes())
    assert served == mine
    assert _public(mine) != _public(theirs)
    assert issued_by(mine, x509.load_pem_x509_certificate((tls / "ca.crt").read_bytes()))
    assert cert_names(mine) == cert_names(theirs)
    usage = mine.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.SERVER_AUTH]
    key = tls / pgbouncer.POOLER_KEY
    assert key.read_bytes() != (tls / "private" / "server.key").read_bytes()
    st = key.stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (0, 64188, 0o440)


def _load(path: str, name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, REPO / path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _LocalHost:
    """The slice of a testinfra host the verify suite's Host uses, run here."""

    def run(self, command: str) -> types.SimpleNamespace:
        proc = subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=60)
        return types.SimpleNamespace(rc=proc.returncode, stdout=proc.stdout, stderr=proc.stderr)


def test_verify_confined_fails_when_the_pooler_holds_the_servers_key(stack: Stack) -> None:
    """verify's pooler/confined key check on the deployed files: clean as deployed; a copy
    of the server's pair (what the pooler held before), or of its key alone, fails it."""
    s = build_settings(stack.host_data(), FACTS)
    host_class = _load("tests/verify/conftest.py", "pgsteady_verify_conftest").Host
    check = _load("tests/verify/test_pooler.py", "pgsteady_verify_pooler")._same_key
    on = host_class(_LocalHost(), s)
    tls = stack.app_dir / "tls"
    cert, key = tls / pgbouncer.POOLER_CERT, tls / pgbouncer.POOLER_KEY
    saved = cert.read_bytes(), key.read_bytes()
    assert check(on, s) == []
    try:
        key.write_bytes((tls / "private" / "server.key").read_bytes())
        assert check(on, s) == ["holds a copy of the server's key"]
        cert.write_bytes((tls / "server.crt").read_bytes())
        assert check(on, s) == ["serves the server's key pair"]
    finally:
        cert.write_bytes(saved[0])
        key.write_bytes(saved[1])
    assert check(on, s) == []


def test_a_wrong_password_and_plain_tcp_are_refused(stack: Stack) -> None:
    with pytest.raises(psycopg2.OperationalError, match="authentication failed"):
        pooled(stack, password="not-the-password")
    with pytest.raises(psycopg2.OperationalError):
        pooled(stack, sslmode="disable")


@pytest.mark.parametrize("user", ["postgres", "monitor", pgbouncer.AUTH_USER])
def test_superuser_and_pgsteadys_roles_are_refused(stack: Stack, user: str) -> None:
    secret = {
        "postgres": "postgres_password",
        "monitor": "monitor_password",
        pgbouncer.AUTH_USER: pgbouncer.AUTH_SECRET,
    }[user]
    with pytest.raises(psycopg2.OperationalError):
        pooled(stack, user=user, password=stack.secret(secret))


def test_the_auth_function_is_out_of_the_apps_reach(stack: Stack) -> None:
    conn = stack.connect()  # direct, as the application
    conn.autocommit = True
    with conn.cursor() as cur:
        with pytest.raises(psycopg2.errors.InsufficientPrivilege):
            cur.execute(f"SELECT * FROM {pgbouncer.AUTH_FUNCTION}('app')")
        with pytest.raises(psycopg2.errors.InsufficientPrivilege):
            cur.execute(f"CREATE TABLE {pgbouncer.AUTH_SCHEMA}.planted (x int)")
    conn.close()
    # What it answers, asked as its role: the app's SCRAM verifier, nothing for the rest.
    got = stack.psql(
        f"SET ROLE {pgbouncer.AUTH_USER}; "
        f"SELECT usename FROM {pgbouncer.AUTH_FUNCTION}('app') "
        f"UNION ALL SELECT usename FROM {pgbouncer.AUTH_FUNCTION}('postgres') "
        f"UNION ALL SELECT usename FROM {pgbouncer.AUTH_FUNCTION}('monitor')",
        db="app",
    )
    assert got.split() == ["app"]


def test_the_session_database_keeps_session_state(stack: Stack) -> None:
    conn = pooled(stack, dbname="app_session")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("SET application_name = 'pgsteady-migration'")
        cur.execute("SELECT pg_advisory_lock(4242)")
        cur.execute("SELECT current_setting('application_name')")
        assert cur.fetchone() == ("pgsteady-migration",)
        cur.execute("SELECT pg_advisory_unlock(4242)")
        assert cur.fetchone() == (True,)
    conn.close()


def pools(stack: Stack) -> dict[tuple[str, str], dict[str, str]]:
    """SHOW POOLS through the admin console, by (database, user)."""
    s = build_settings(stack.host_data(), FACTS)
    proc = subprocess.run(pgbouncer.admin_command(s, "SHOW POOLS"), capture_output=True,
                          text=True, check=True)  # fmt: skip
    return {(p["database"], p["user"]): p for p in pgbouncer.parse_show(proc.stdout)}


def server_connections(stack: Stack) -> int:
    """The server connections of the application's transaction pool (the pooler's count,
    checked against the server's: the pools only grow during the test, so the app's
    backends counted first never exceed what both pools hold a moment later)."""
    backends = int(
        stack.psql(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = 'app' AND datname = 'app'"
        )
    )
    held = pools(stack)
    pool = pgbouncer.server_connections(held[("app", "app")])
    both = pool + pgbouncer.server_connections(held.get(("app_session", "app"), {}))
    assert backends <= both, (backends, both)
    return pool


def test_a_thousand_clients_share_the_pool(stack: Stack) -> None:
    """1,000 connections held at once, each running queries: no error, and never more
    server connections than default_pool_size."""
    ini = (stack.app_dir / "config" / pgbouncer.CONFIG).read_text()
    pool_size = int(
        next(x for x in ini.splitlines() if x.startswith("default_pool_size")).split("=")[1]
    )
    connected = threading.Barrier(CLIENTS + 1, timeout=600)
    errors: list[str] = []
    served = []
    peak = [0]
    stop = threading.Event()

    def client() -> None:
        conn = None
        try:
            conn = pooled(stack, timeout=120)
            conn.autocommit = True
            connected.wait()
            with conn.cursor() as cur:
                for _ in range(3):
                    cur.execute("SELECT pg_sleep(0.02), 1")
                    assert cur.fetchone()[1] == 1
            served.append(1)
        except Exception as exc:  # noqa: BLE001 - every failure is the finding
            errors.append(repr(exc))
            if not connected.broken:
                connected.abort()
        finally:
            if conn is not None:
                conn.close()

    def watch() -> None:
        try:
            while not stop.is_set():
                peak[0] = max(peak[0], server_connections(stack))
                time.sleep(0.1)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(f"watcher: {exc!r}")

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    for t in threads:
        t.start()
    # All 1,000 clients are connected at once (a broken barrier: see ``errors``).
    with contextlib.suppress(threading.BrokenBarrierError):
        connected.wait()
    watcher = threading.Thread(target=watch)
    watcher.start()
    for t in threads:
        t.join()
    stop.set()
    watcher.join()
    # The pool keeps its server connections idle after the rush: count once more.
    peak[0] = max(peak[0], server_connections(stack))
    assert not errors, errors[:5]
    assert len(served) == CLIENTS
    assert 0 < peak[0] <= pool_size, (peak[0], pool_size)
    print(f"pooler_clients_served={len(served)} peak_server_connections={peak[0]} "
          f"default_pool_size={pool_size}")  # fmt: skip


def test_a_server_restart_delays_pooled_clients_without_an_error(stack: Stack) -> None:
    """pgsteady-ctl apply-config restarts the server for a postmaster setting: it PAUSEs
    the pooler's pool first and RESUMEs it once the server is healthy, so clients that
    query through the pooler all along see a delay, never an error. (Without the PAUSE
    they get "SSL connection has been closed unexpectedly".)"""
    conf = stack.app_dir / "config" / "postgresql.conf"
    original = conf.read_text()
    started = stack.postmaster_start()
    errors: list[str] = []
    slowest = [0.0]
    queries = [0]
    stop = threading.Event()

    def client() -> None:
        try:
            conn = pooled(stack, timeout=30)
        except psycopg2.Error as exc:
            errors.append(repr(exc))
            return
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                while not stop.is_set():
                    t0 = time.monotonic()
                    cur.execute("SELECT 1")
                    slowest[0] = max(slowest[0], time.monotonic() - t0)
                    queries[0] += 1
                    time.sleep(0.05)
        except psycopg2.Error as exc:
            errors.append(repr(exc))
        finally:
            conn.close()

    threads = [threading.Thread(target=client) for _ in range(5)]
    for t in threads:
        t.start()
    try:
        time.sleep(1)
        # A postmaster-context setting: the reload cannot apply it, so ctl restarts.
        conf.write_text(original + "\nmax_locks_per_transaction = 96\n")
        ctl = subprocess.run([str(stack.app_dir / "bin" / "pgsteady-ctl"), "apply-config"],
                             capture_output=True, text=True, timeout=300)  # fmt: skip
        assert ctl.returncode == 0, ctl.stderr
        assert "paused the pooler's app pool" in ctl.stderr, ctl.stderr
        assert "resumed the pooler's app pool" in ctl.stderr, ctl.stderr
        time.sleep(1)
    finally:
        stop.set()
        for t in threads:
            t.join()
        conf.write_text(original)  # back as the converge wrote it, restarted once more
        subprocess.run([str(stack.app_dir / "bin" / "pgsteady-ctl"), "apply-config"],
                       capture_output=True, text=True, timeout=300, check=True)  # fmt: skip
    assert stack.postmaster_start() != started  # the server did restart
    assert not errors, errors
    assert queries[0] > 50
    assert slowest[0] > 0.5, slowest  # the clients waited for the restart
    print(f"pooled clients waited up to {slowest[0]:.1f}s across the restart, no error")


def test_turned_off_it_leaves_nothing_and_turned_on_again_it_serves(stack: Stack) -> None:
    """pgbouncer_enabled = False: the container, its files, the auth role's password and
    the pooler's two roles (with the owner's schema) go; the next converge with the default
    brings it back (the shared stack is handed on as found)."""
    container = f"{stack.name}-pgbouncer"
    own = [
        stack.app_dir / "config" / pgbouncer.CONFIG,
        stack.app_dir / "config" / pgbouncer.HBA,
        stack.app_dir / "tls" / pgbouncer.POOLER_KEY,
        stack.app_dir / "tls" / pgbouncer.POOLER_CERT,
        stack.app_dir / "secrets" / pgbouncer.USERLIST,
        stack.app_dir / "secrets" / pgbouncer.AUTH_SECRET,
    ]
    roles = (
        "SELECT pg_catalog.count(*) FROM pg_catalog.pg_roles WHERE rolname IN "
        f"('{pgbouncer.AUTH_USER}', '{pgbouncer.OWNER_ROLE}')"
    )
    try:
        off = stack.deploy(pgbouncer_enabled=False)
        assert off.returncode == 0, off.output[-3000:]
        assert docker("inspect", container, check=False).returncode != 0
        assert [p for p in own if p.exists()] == []
        assert stack.psql(roles) == "0"
        with pytest.raises(psycopg2.OperationalError):
            pooled(stack, timeout=3)
        stack.connect().close()  # the direct port is untouched
    finally:
        on = stack.deploy()
    assert on.returncode == 0, on.output[-3000:]
    assert all(p.exists() for p in own)
    assert stack.psql(roles) == "2"
    deadline = time.monotonic() + 60
    while True:
        try:
            conn = pooled(stack)
            break
        except psycopg2.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)
    conn.close()


def test_a_pool_size_change_reloads_the_pooler_and_keeps_its_clients(stack: Stack) -> None:
    """A converge that changes pgbouncer.ini sends the pooler SIGHUP (no restart, no new
    container): a client connected through it keeps its connection."""
    conn = pooled(stack)
    conn.autocommit = True
    started = docker("inspect", "-f", "{{.State.StartedAt}}", f"{stack.name}-pgbouncer").stdout
    try:
        result = stack.deploy(pgbouncer_default_pool_size=30)
        assert result.returncode == 0, result.output[-3000:]
        assert any("Reload PgBouncer" in op for op in result.changed_operations())
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
            assert cur.fetchone() == (1,)
        s = build_settings(stack.host_data(pgbouncer_default_pool_size=30), FACTS)
        shown = subprocess.run(pgbouncer.admin_command(s, "SHOW CONFIG"), capture_output=True,
                               text=True, check=True).stdout  # fmt: skip
        config = {r["key"]: r["value"] for r in pgbouncer.parse_show(shown)}
        assert config["default_pool_size"] == "30"
    finally:
        back = stack.deploy()
        conn.close()
    assert back.returncode == 0, back.output[-3000:]
    now = docker("inspect", "-f", "{{.State.StartedAt}}", f"{stack.name}-pgbouncer").stdout
    assert now == started  # never restarted


def test_a_client_outside_the_allowed_networks_is_refused(stack: Stack) -> None:
    """The pooler's rules follow postgres_allowed_networks as the server's pg_hba.conf
    does: with only 10.99.0.0/16 allowed, this machine's client (the Docker bridge's
    gateway address) is refused; the default admits it again."""
    try:
        narrowed = stack.deploy(postgres_allowed_networks=["10.99.0.0/16"])
        assert narrowed.returncode == 0, narrowed.output[-3000:]
        with pytest.raises(psycopg2.OperationalError, match="login rejected"):
            pooled(stack)
    finally:
        back = stack.deploy()
    assert back.returncode == 0, back.output[-3000:]
    pooled(stack).close()
