"""init_db.sql applied twice to a real server: same result, least privilege, scram logins."""

from __future__ import annotations

from pathlib import Path

import psycopg2
import pytest
from pgserver import OS_USER, PgServer, available, own

from pgsteady.postgres.parameters import hba_rules
from pgsteady.postgres.tuning import TuningInput, tune
from pgsteady.render import render
from pgsteady.units import GIB

pytestmark = pytest.mark.skipif(not available(), reason="Postgres 15 server binaries missing")


@pytest.fixture
def server():
    srv = PgServer()
    rules = hba_rules(
        ["samenet"], OS_USER, database="shopdb", app_roles=["shop", "shop_ro"],
        monitor_role="watcher",
    )  # fmt: skip
    srv.configure(
        tune(TuningInput(15, "web", 1 * GIB, 1)), hba=render("pg_hba.conf.j2", rules=rules)
    )
    srv.start()
    try:
        yield srv
    finally:
        srv.cleanup()


def _secret(srv: PgServer, name: str, value: str) -> Path:
    path = srv.root / name
    path.write_text(value + "\n")
    return own(path, 0o600)


def _schema(srv: PgServer) -> Path:
    """An idempotent operator schema file using the updated_at trigger function."""
    path = srv.root / "schema.sql"
    path.write_text(
        "CREATE TABLE IF NOT EXISTS items (id int PRIMARY KEY, name text, "
        "updated_at timestamptz);\n"
        "CREATE OR REPLACE TRIGGER t_updated BEFORE UPDATE ON items "
        "FOR EACH ROW EXECUTE FUNCTION pgsteady_set_updated_at();\n"
    )
    return own(path)


def _apply_schema(srv: PgServer, schema: Path) -> None:
    """The schema file as pgsteady-ctl apply-schema runs it: logged in as the app role."""
    with _login(srv, "shop", "app-Secret-1") as conn, conn.cursor() as cur:
        cur.execute(schema.read_text())


def _render(srv: PgServer) -> Path:
    sql = render(
        "init_db.sql.j2",
        app_user="shop",
        app_password_file=str(_secret(srv, "app_password", "app-Secret-1")),
        readonly_user="shop_ro",
        readonly_password_file=str(_secret(srv, "ro_password", "ro-Secret-2")),
        monitor_user="watcher",
        monitor_password_file=str(_secret(srv, "monitor_password", "mon-Secret-3")),
        database="shopdb",
        extensions=["pg_trgm", "pg_stat_statements"],
    )
    path = srv.root / "init_db.sql"
    path.write_text(sql)
    return own(path)


def _login(srv: PgServer, user: str, password: str):
    return psycopg2.connect(
        host="127.0.0.1", port=srv.port, user=user, password=password, dbname="shopdb",
        connect_timeout=5,
    )  # fmt: skip


def test_applies_twice_with_the_same_outcome(server: PgServer) -> None:
    schema = _schema(server)
    sql = _render(server)
    first = server.psql_file(sql)
    assert first.returncode == 0, first.stderr
    _apply_schema(server, schema)
    snapshot = server.psql_as_os_user(
        "SELECT rolname, rolsuper, rolcreaterole, rolcreatedb, rolcanlogin FROM pg_roles "
        "WHERE rolname IN ('shop', 'shop_ro', 'watcher') ORDER BY 1"
    ).stdout
    second = server.psql_file(sql)
    assert second.returncode == 0, second.stderr
    _apply_schema(server, schema)
    assert (
        server.psql_as_os_user(
            "SELECT rolname, rolsuper, rolcreaterole, rolcreatedb, rolcanlogin FROM pg_roles "
            "WHERE rolname IN ('shop', 'shop_ro', 'watcher') ORDER BY 1"
        ).stdout
        == snapshot
    )
    assert snapshot.splitlines() == ["shop|f|f|f|t", "shop_ro|f|f|f|t", "watcher|f|f|f|t"]


def test_roles_privileges_and_trigger(server: PgServer) -> None:
    schema = _schema(server)
    assert server.psql_file(_render(server)).returncode == 0
    _apply_schema(server, schema)
    with _login(server, "shop", "app-Secret-1") as conn, conn.cursor() as cur:
        cur.execute("SELECT tableowner FROM pg_tables WHERE tablename = 'items'")
        assert cur.fetchone() == ("shop",)
        cur.execute("INSERT INTO items VALUES (1, 'a', NULL)")
        cur.execute("UPDATE items SET name = 'b' WHERE id = 1 RETURNING updated_at")
        assert cur.fetchone()[0] is not None
        cur.execute("SELECT extname FROM pg_extension ORDER BY 1")
        assert {"pg_trgm", "pg_stat_statements"} <= {r[0] for r in cur.fetchall()}
        cur.execute("SELECT has_schema_privilege('public', 'public', 'CREATE')")
        assert cur.fetchone() == (False,)
    with _login(server, "shop_ro", "ro-Secret-2") as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM items")
        assert cur.fetchone() == (1,)
        with pytest.raises(psycopg2.errors.InsufficientPrivilege):
            cur.execute("INSERT INTO items VALUES (2, 'c', NULL)")
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        _login(server, "shop", "wrong")
    stored = server.psql_as_os_user(
        "SELECT rolpassword FROM pg_authid WHERE rolname IN ('shop', 'shop_ro')"
    ).stdout.split()
    assert len(stored) == 2 and all(p.startswith("SCRAM-SHA-256$") for p in stored)


#: Extension-owned relations and functions of the current database that PUBLIC may use.
PUBLIC_EXTENSION_GRANTS = """
SELECT e.extname, c.oid::regclass::text FROM pg_depend d
  JOIN pg_extension e ON e.oid = d.refobjid JOIN pg_class c ON c.oid = d.objid
 WHERE d.classid = 'pg_class'::regclass AND d.deptype = 'e'
   AND EXISTS (SELECT FROM aclexplode(c.relacl) a WHERE a.grantee = 0)
UNION ALL
SELECT e.extname, p.oid::regprocedure::text FROM pg_depend d
  JOIN pg_extension e ON e.oid = d.refobjid JOIN pg_proc p ON p.oid = d.objid
 WHERE d.classid = 'pg_proc'::regclass AND d.deptype = 'e'
   AND e.extname = 'pg_stat_statements'
   AND EXISTS (SELECT FROM aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
               WHERE a.grantee = 0)
"""


def test_monitor_role_and_private_extension_objects(server: PgServer) -> None:
    sql = _render(server)
    for _ in range(2):
        proc = server.psql_file(sql)
        assert proc.returncode == 0, proc.stderr
    with _login(server, "shop", "app-Secret-1") as conn, conn.cursor() as cur:
        cur.execute(PUBLIC_EXTENSION_GRANTS)
        assert cur.fetchall() == []
        cur.execute(
            "SELECT pg_has_role('watcher', 'pg_monitor', 'MEMBER'), "
            "has_database_privilege('watcher', 'shopdb', 'CONNECT'), "
            "has_table_privilege('watcher', 'public.pg_stat_statements', 'SELECT'), "
            "has_table_privilege('shop', 'public.pg_stat_statements', 'SELECT'), "
            "has_table_privilege('shop_ro', 'public.pg_stat_statements', 'SELECT'), "
            "rolsuper FROM pg_roles WHERE rolname = 'watcher'"
        )
        assert cur.fetchone() == (True, True, True, False, False, False)
        with pytest.raises(psycopg2.errors.InsufficientPrivilege):
            cur.execute("SELECT count(*) FROM public.pg_stat_statements")
    with _login(server, "watcher", "mon-Secret-3") as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) > 0 FROM public.pg_stat_statements")
        assert cur.fetchone() == (True,)
        # a schema named after the role (the app owns the database, it could create one)
        # is never searched by the exporters' unqualified queries
        cur.execute("SHOW search_path")
        assert cur.fetchone() == ("pg_catalog, public",)


@pytest.fixture
def logging_server():
    """A server that logs every statement and tracks utility statements."""
    srv = PgServer()
    rules = hba_rules(["samenet"], OS_USER, database="shopdb", app_roles=["shop", "shop_ro"])
    srv.configure(
        tune(TuningInput(15, "web", 1 * GIB, 1)),
        {"log_statement": "all", "log_min_duration_statement": "0",
         "debug_print_parse": "on", "debug_print_rewritten": "on", "debug_print_plan": "on",
         "pg_stat_statements.track": "all", "pg_stat_statements.track_utility": "on"},
        hba=render("pg_hba.conf.j2", rules=rules),
    )  # fmt: skip
    srv.start()
    try:
        yield srv
    finally:
        srv.cleanup()


def test_passwords_reach_neither_log_nor_pg_stat_statements(logging_server: PgServer) -> None:
    srv = logging_server
    sql = _render(srv)
    for _ in range(2):  # creating the roles, then changing nothing
        proc = srv.psql_file(sql)
        assert proc.returncode == 0, proc.stderr
    _login(srv, "shop", "app-Secret-1").close()
    log = srv.log_text()
    assert "statement: ALTER DATABASE" in log  # statements are logged
    assert "PARSETREE" in log.upper() or ":command" in log  # and parse trees too
    for secret in ("app-Secret-1", "ro-Secret-2", "mon-Secret-3"):
        assert secret not in log
    srv.psql_as_os_user("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    statements = srv.psql_as_os_user(
        "SELECT query FROM pg_stat_statements WHERE query ILIKE '%PASSWORD%' "
        "OR query ~ 'Secret-[0-9]'"
    )
    assert statements.returncode == 0, statements.stderr
    assert statements.stdout.strip() == ""
    tracked = srv.psql_as_os_user("SELECT count(*) FROM pg_stat_statements WHERE query ~ 'GRANT'")
    assert int(tracked.stdout) > 0  # utility statements are tracked


def test_an_empty_password_file_stops_before_any_password_changes(server: PgServer) -> None:
    sql = _render(server)
    assert server.psql_file(sql).returncode == 0
    _secret(server, "monitor_password", "")  # the file the rendered SQL reads
    proc = server.psql_file(sql)
    assert proc.returncode != 0
    assert "monitor_password is empty or unreadable: no password set" in proc.stderr
    _login(server, "shop", "app-Secret-1").close()  # the earlier passwords still hold
