"""Rendered postgresql.conf / pg_hba.conf checked by a real PostgreSQL 15 server.

Each test gets its own cluster (initdb in a temporary directory, as the postgres OS user),
a free port and a private socket directory; the postmaster is stopped by PID and the
directory removed afterwards. Skipped only when the server binaries are absent.
"""

from __future__ import annotations

import psycopg2
import pytest
from pgserver import OS_USER, SUPERUSER_PASSWORD, PgServer, available

from pgsteady.pgparams import validate_overrides
from pgsteady.tuning import TuningInput, TuningResult, tune
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


def shown(srv: PgServer, names: list[str]) -> dict[str, str]:
    with connect(srv) as conn, conn.cursor() as cur:
        cur.execute("SELECT name, current_setting(name) FROM unnest(%s::text[]) AS name", (names,))
        return dict(cur.fetchall())


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
    overrides = {"statement_timeout": "30s", "application_name": "it's pgsteady"}
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
    with connect(server) as conn, conn.cursor() as cur:
        cur.execute("SELECT sourcefile FROM pg_settings WHERE name = 'shared_buffers'")
        assert cur.fetchone()[0].endswith("postgresql.conf")
        cur.execute("SELECT count(*) FROM pg_file_settings WHERE error IS NOT NULL")
        assert cur.fetchone()[0] == 0


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
    # scram over TCP with the right password
    with connect(server, user="app", password="right-pass") as conn, conn.cursor() as cur:
        cur.execute("SELECT current_user")
        assert cur.fetchone()[0] == "app"
    # the stored verifier is SCRAM
    with connect(server) as conn, conn.cursor() as cur:
        cur.execute("SELECT rolpassword FROM pg_authid WHERE rolname = 'app'")
        assert cur.fetchone()[0].startswith("SCRAM-SHA-256$")
        cur.execute("SELECT count(*) FROM pg_hba_file_rules WHERE error IS NOT NULL")
        assert cur.fetchone()[0] == 0
        cur.execute("SELECT count(*) FROM pg_hba_file_rules WHERE auth_method = 'trust'")
        assert cur.fetchone()[0] == 0
    # scram over the socket for a non-peer role
    with connect(server, user="app", password="right-pass", host=str(server.sockdir)):
        pass
    # wrong password
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        connect(server, user="app", password="wrong-pass")
    # anything that would need trust: no password over TCP or the socket, any role
    for user, host in (("app", "127.0.0.1"), (OS_USER, "127.0.0.1"), ("app", server.sockdir)):
        with pytest.raises(psycopg2.OperationalError):
            connect(server, user=user, password=None, host=str(host))
