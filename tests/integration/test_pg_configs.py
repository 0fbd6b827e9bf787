"""Rendered postgresql.conf / pg_hba.conf checked by a real PostgreSQL 15 server.

Each test gets its own cluster (initdb in a temporary directory, as the postgres OS user),
a free port and a private socket directory; the postmaster is stopped by PID and the
directory removed afterwards. Skipped only when the server binaries are absent.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import psycopg2
import pytest
from pgserver import OS_USER, PG_BIN, SUPERUSER_PASSWORD, PgServer, available

from pgsteady.client import Pool, dsn
from pgsteady.postgres.conf_files import render_pg_hba_conf, tls_settings
from pgsteady.postgres.parameters import validate_overrides
from pgsteady.postgres.tuning import TuningInput, TuningResult, tune
from pgsteady.settings import HostFacts, build_settings
from pgsteady.tls import Authority, create_ca, server_names
from pgsteady.units import GIB, parse_size

pytestmark = pytest.mark.skipif(not available(), reason="PostgreSQL 15 server binaries absent")

PG_VERSION = 15


@pytest.fixture
def server():
    srv = PgServer()
    try:
        yield srv
    finally:
        srv.cleanup()


def configure(srv: PgServer, result: TuningResult, overrides: dict[str, str] | None = None) -> None:
    srv.configure(result, overrides)


def connect(srv: PgServer, user: str = OS_USER, password: str | None = SUPERUSER_PASSWORD, **kw):
    params = {"host": "127.0.0.1", "port": srv.port, "user": user, "dbname": "postgres"}
    if password is not None:
        params["password"] = password
    params.update(kw)
    return psycopg2.connect(connect_timeout=5, **params)


def sql_rows(srv: PgServer, sql: str) -> list[list[str]]:
    """Rows of ``sql`` run as the superuser on the socket (it may not log in over TCP)."""
    proc = srv.psql_as_os_user(sql)
    assert proc.returncode == 0, proc.stderr
    return [line.split("|") for line in proc.stdout.splitlines()]


def shown(srv: PgServer, names: list[str]) -> dict[str, str]:
    listed = ",".join(f"'{n}'" for n in names)
    rows = sql_rows(srv, f"SELECT name, current_setting(name) FROM unnest(ARRAY[{listed}]) name")
    return dict(rows)


def same_value(expected: str, actual: str) -> bool:
    """Equal as written, or the same size once the server rounds to its block unit."""
    if expected == actual:
        return True
    try:
        return abs(parse_size(expected) - parse_size(actual)) < 8192
    except ValueError:
        return False


SIZES = {
    "small-web": TuningInput(PG_VERSION, "web", 1 * GIB, 1),
    "medium-mixed-nvme": TuningInput(PG_VERSION, "mixed", 8 * GIB, 4, storage="nvme"),
    "large-oltp": TuningInput(PG_VERSION, "oltp", 64 * GIB, 16),
    "large-dw-hdd": TuningInput(PG_VERSION, "dw", 32 * GIB, 8, storage="hdd"),
    "desktop": TuningInput(PG_VERSION, "desktop", 2 * GIB, 2),
    "container": TuningInput(PG_VERSION, "web", 64 * GIB, 16, memory_limit=2 * GIB, cpu_limit=1.5),
}


@pytest.mark.parametrize("inp", SIZES.values(), ids=SIZES.keys())
def test_server_runs_with_tuned_config(server, inp):
    result = tune(inp)
    overrides = {"statement_timeout": "30s", "cluster_name": "it's pgsteady"}
    assert validate_overrides(PG_VERSION, overrides) == []
    configure(server, result, overrides)
    assert server.check_config().returncode == 0
    server.start()
    expected = {**result.as_dict(), **overrides}
    actual = shown(server, list(expected))
    mismatches = {
        name: (value, actual[name])
        for name, value in expected.items()
        if not same_value(value, actual[name])
    }
    assert mismatches == {}
    source = sql_rows(server, "SELECT sourcefile FROM pg_settings WHERE name = 'shared_buffers'")
    assert source[0][0].endswith("postgresql.conf")
    assert sql_rows(server, "SELECT count(*) FROM pg_file_settings WHERE error IS NOT NULL") == [
        ["0"]
    ]


def test_unknown_override_rejected_by_validator_and_server(server):
    overrides = {"shared_bufers": "1GB"}
    errors = validate_overrides(PG_VERSION, overrides)
    assert len(errors) == 1 and "did you mean 'shared_buffers'" in errors[0]
    configure(server, tune(SIZES["small-web"]), overrides)
    check = server.check_config()
    assert check.returncode != 0
    assert 'unrecognized configuration parameter "shared_bufers"' in check.stderr


def test_invalid_value_rejected_by_validator_and_server(server):
    overrides = {"huge_pages": "maybe"}
    assert "expected one of: off, on, try" in validate_overrides(PG_VERSION, overrides)[0]
    configure(server, tune(SIZES["small-web"]), overrides)
    check = server.check_config()
    assert check.returncode != 0
    assert 'invalid value for parameter "huge_pages"' in check.stderr


def test_validator_agrees_with_server_on_units(server):
    good = {"work_mem": "64MB", "statement_timeout": "1min"}
    bad = {"work_mem": "64mb"}
    assert validate_overrides(PG_VERSION, good) == []
    assert validate_overrides(PG_VERSION, bad)
    configure(server, tune(SIZES["small-web"]), bad)
    assert server.check_config().returncode != 0
    configure(server, tune(SIZES["small-web"]), good)
    assert server.check_config().returncode == 0


def test_authentication(server):
    configure(server, tune(SIZES["small-web"]))
    server.start()
    # peer: the postgres OS user gets in over the socket without a password
    created = server.psql_as_os_user("CREATE ROLE app LOGIN PASSWORD 'right-pass'")
    assert created.returncode == 0, created.stderr
    created = server.psql_as_os_user("CREATE DATABASE app OWNER app")
    assert created.returncode == 0, created.stderr
    # scram over TCP with the right password
    with (
        connect(server, user="app", password="right-pass", dbname="app") as conn,
        conn.cursor() as cur,
    ):
        cur.execute("SELECT current_user")
        assert cur.fetchone()[0] == "app"
    # the stored verifier is SCRAM
    stored = sql_rows(server, "SELECT rolpassword FROM pg_authid WHERE rolname = 'app'")
    assert stored[0][0].startswith("SCRAM-SHA-256$")
    for where in ("error IS NOT NULL", "auth_method = 'trust'"):
        assert sql_rows(server, f"SELECT count(*) FROM pg_hba_file_rules WHERE {where}") == [["0"]]
    # scram over the socket for a non-peer role
    with connect(server, user="app", password="right-pass", host=str(server.sockdir), dbname="app"):
        pass
    # wrong password
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        connect(server, user="app", password="wrong-pass", dbname="app")
    # anything that would need trust: no password over TCP or the socket, any role
    for user, host in (("app", "127.0.0.1"), (OS_USER, "127.0.0.1"), ("app", server.sockdir)):
        with pytest.raises(psycopg2.OperationalError):
            connect(server, user=user, password=None, host=str(host), dbname="app")


# --------------------------------------------------------------------------------------
# pg_hba.conf and TLS exactly as a converge renders them (issue 11, items 5 and 7)
# --------------------------------------------------------------------------------------

APP_PASS, MON_PASS = "app-pass-1", "mon-pass-2"
#: Client networks as CIDRs: off loopback, samenet is refused while the pooler is on.
NETS = ["10.0.0.0/24"]


def _settings(**data):
    base = {"postgres_readonly_user": "app_ro", **data}
    return build_settings(base, HostFacts(ram_mb=4096, cpus=2))


def _product_server(server: PgServer, s, names: list[str], ca: Authority | None = None) -> Path:
    """Start ``server`` with pgsteady's pg_hba.conf for ``s`` and TLS files for ``names``."""
    tls = server.make_tls(names, ca)
    configure_args = {"hba": render_pg_hba_conf(s), "tls": tls_settings(str(tls))}
    server.configure(tune(SIZES["small-web"]), **configure_args)
    server.start()
    for sql in (
        f"CREATE ROLE app LOGIN PASSWORD '{APP_PASS}'",
        f"CREATE ROLE monitor LOGIN PASSWORD '{MON_PASS}'",
        "CREATE DATABASE app OWNER app",
    ):
        done = server.psql_as_os_user(sql)
        assert done.returncode == 0, done.stderr
    return tls


def _refused(srv: PgServer, user: str, password: str, dbname: str, **kw) -> str:
    with pytest.raises(psycopg2.OperationalError) as err:
        connect(srv, user=user, password=password, dbname=dbname, **kw).close()
    return str(err.value)


def test_hba_superuser_refused_over_tcp_app_roles_confined_to_their_database(server):
    _product_server(server, _settings(), ["localhost", "127.0.0.1"])
    # the superuser with its right password: refused over TCP, for every database
    for db in ("postgres", "app"):
        assert "pg_hba.conf rejects connection" in _refused(server, OS_USER, SUPERUSER_PASSWORD, db)
    # the app role reaches its database only (TCP and socket); never postgres/template1
    with connect(server, user="app", password=APP_PASS, dbname="app") as conn:
        conn.cursor().execute("SELECT 1")
    conn.close()
    for db in ("postgres", "template1"):
        assert "pg_hba.conf rejects connection" in _refused(server, "app", APP_PASS, db)
    socket_refused = _refused(server, "app", APP_PASS, "postgres", host=str(server.sockdir))
    assert "pg_hba.conf rejects connection" in socket_refused
    # the monitor role: the app database and postgres, not template1
    for db in ("app", "postgres"):
        connect(server, user="monitor", password=MON_PASS, dbname=db).close()
    assert "pg_hba.conf rejects connection" in _refused(server, "monitor", MON_PASS, "template1")
    # the container's health check (pg_isready as the superuser over TCP) still says ready
    ready = subprocess.run(
        [str(PG_BIN / "pg_isready"), "-h", "127.0.0.1", "-p", str(server.port), "-U", OS_USER,
         "-d", OS_USER],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert ready.returncode == 0, ready.stdout + ready.stderr


def test_tls_verify_full_works_and_plain_tcp_is_refused_off_loopback(server, tmp_path):
    s = _settings(postgres_bind="10.0.0.5", postgres_allowed_networks=["10.0.0.0/24"])
    names = server_names("pgs-it", "pgs-it.example", s.postgres_bind, "@local")
    tls = _product_server(server, s, names)
    ca = str(tls / "ca.crt")
    secure = {"sslmode": "verify-full", "sslrootcert": ca}
    for host in ("localhost", "127.0.0.1"):
        with connect(server, user="app", password=APP_PASS, dbname="app", host=host, **secure) as c:
            cur = c.cursor()
            cur.execute("SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            assert cur.fetchone()[0] is True
        c.close()
    # plain TCP: refused by the hostnossl rule
    plain = _refused(server, "app", APP_PASS, "app", sslmode="disable")
    assert "no encryption" in plain
    # a name the certificate does not list, or another CA: the client refuses the server
    wrong_name = _refused(
        server, "app", APP_PASS, "app", host="db.other.example", hostaddr="127.0.0.1", **secure
    )
    assert "does not match host name" in wrong_name
    other = tmp_path / "other-ca.crt"
    other.write_bytes(create_ca("other").cert_pem)
    wrong_ca = _refused(
        server, "app", APP_PASS, "app", sslmode="verify-full", sslrootcert=str(other)
    )
    assert "certificate verify failed" in wrong_ca


def test_tls_renewed_certificate_is_served_after_a_reload(server):
    ca = create_ca("renewal")
    s = _settings(postgres_bind="10.0.0.5", postgres_allowed_networks=NETS)
    tls = _product_server(server, s, ["localhost"], ca)
    secure = {"sslmode": "verify-full", "sslrootcert": str(tls / "ca.crt")}
    new_name = {"host": "renewed.example", "hostaddr": "127.0.0.1"}
    assert "does not match" in _refused(server, "app", APP_PASS, "app", **new_name, **secure)
    # a converge that finds other names issues a new certificate and reloads (no restart)
    assert server.make_tls(["localhost", "renewed.example"], ca) == tls
    started = server.proc.pid
    server.reload()
    connect(server, user="app", password=APP_PASS, dbname="app", **new_name, **secure).close()
    assert server.proc.pid == started and server.proc.poll() is None


def test_client_kit_dsn_verifies_the_server(server):
    s = _settings(postgres_bind="10.0.0.5", postgres_allowed_networks=NETS)
    tls = _product_server(server, s, ["localhost"])
    conninfo = dsn("localhost", port=server.port, ca_file=str(tls / "ca.crt"))
    assert "sslmode=verify-full" in conninfo
    with Pool(conninfo, minconn=1, maxconn=1, connect_kwargs={"password": APP_PASS}) as pool:
        conn = pool.getconn()
        with conn.cursor() as cur:
            cur.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            assert cur.fetchone() == (True,)
        pool.putconn(conn)
    with pytest.raises(ValueError, match="verify-full"):
        dsn("localhost", sslmode="require")


def test_server_refuses_a_key_others_can_read(server):
    """Why the key is root:postgres 0640: the server accepts that, refuses 0644."""
    tls = server.make_tls(["localhost"])
    server.configure(tune(SIZES["small-web"]), tls=tls_settings(str(tls)))
    (tls / "private" / "server.key").chmod(0o644)
    with pytest.raises(RuntimeError, match="group or world access"):
        server.start()
