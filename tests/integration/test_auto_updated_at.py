"""postgres_auto_updated_at on a real server: init_db.sql's event trigger attaches
pgsteady.set_updated_at() to the application's tables with an updated_at column, never
runs an object the application created, and goes away when the setting is turned off."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from typing import Any

import psycopg2
import pytest
from pgserver import OS_USER, PG_BIN, PgServer, available, own

from pgsteady.postgres.parameters import hba_rules
from pgsteady.postgres.tuning import TuningInput, tune
from pgsteady.render import render
from pgsteady.units import GIB

pytestmark = pytest.mark.skipif(not available(), reason="Postgres 15 server binaries missing")

APP, APP_PASSWORD, DB = "shop", "app-Secret-1", "shopdb"


@pytest.fixture
def server():
    srv = PgServer()
    rules = hba_rules(["samenet"], OS_USER, database=DB, app_roles=[APP])
    srv.configure(
        tune(TuningInput(15, "web", 1 * GIB, 1)), hba=render("pg_hba.conf.j2", rules=rules)
    )
    srv.start()
    try:
        yield srv
    finally:
        srv.cleanup()


def init_db(srv: PgServer, auto: bool) -> None:
    """Render and apply init_db.sql as the superuser, as a converge does."""
    secret = srv.root / "app_password"
    secret.write_text(APP_PASSWORD + "\n")
    own(secret, 0o600)
    path = srv.root / "init_db.sql"
    path.write_text(
        render(
            "init_db.sql.j2", app_user=APP, app_password_file=str(secret), readonly_user=None,
            database=DB, extensions=["pg_trgm", "pg_stat_statements"], auto_updated_at=auto,
            pooler=None,
        )
    )  # fmt: skip
    proc = srv.psql_file(own(path))
    assert proc.returncode == 0, proc.stderr


@contextlib.contextmanager
def app(srv: PgServer) -> Iterator[Any]:
    """An autocommit session logged in as the application's role."""
    conn = psycopg2.connect(
        host="127.0.0.1", port=srv.port, user=APP, password=APP_PASSWORD, dbname=DB,
        connect_timeout=5,
    )  # fmt: skip
    conn.autocommit = True
    try:
        yield conn
    finally:
        conn.close()


def superuser(srv: PgServer, sql: str) -> str:
    """``sql`` in a superuser session (psql over the socket as the postgres OS user)."""
    path = srv.root / "su.sql"
    path.write_text(sql + "\n")
    own(path)
    proc = subprocess.run(
        ["runuser", "-u", OS_USER, "--", str(PG_BIN / "psql"), "-h", str(srv.sockdir), "-p",
         str(srv.port), "-d", DB, "-X", "-At", "-v", "ON_ERROR_STOP=1", "-f", str(path)],
        capture_output=True, text=True, cwd="/", check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def triggers(cur) -> list[tuple[str, str]]:
    """(table, function) of every user trigger in the database."""
    cur.execute(
        "SELECT tgrelid::regclass::text, tgfoid::regprocedure::text FROM pg_catalog.pg_trigger "
        "WHERE NOT tgisinternal ORDER BY 1"
    )
    return cur.fetchall()


#: Objects named like what the event trigger and trigger functions use, created by the
#: application in public (first in its search_path): calling any of them fails the DDL.
TRAPS = """
CREATE TABLE public.trap_fired (what text);
CREATE FUNCTION public.trap() RETURNS boolean LANGUAGE plpgsql AS
  $$ BEGIN RAISE EXCEPTION 'trap fired'; END $$;
CREATE FUNCTION public.now() RETURNS timestamptz LANGUAGE plpgsql AS
  $$ BEGIN RAISE EXCEPTION 'trap now() fired'; END $$;
CREATE FUNCTION public.format(text, text, text) RETURNS text LANGUAGE plpgsql AS
  $$ BEGIN RAISE EXCEPTION 'trap format() fired'; END $$;
CREATE FUNCTION public.pg_event_trigger_ddl_commands() RETURNS SETOF oid LANGUAGE plpgsql AS
  $$ BEGIN RAISE EXCEPTION 'trap ddl_commands fired'; END $$;
CREATE FUNCTION public.set_updated_at() RETURNS trigger LANGUAGE plpgsql AS
  $$ BEGIN RAISE EXCEPTION 'trap set_updated_at fired'; END $$;
CREATE FUNCTION public.sync_updated_at(oid) RETURNS void LANGUAGE plpgsql AS
  $$ BEGIN RAISE EXCEPTION 'trap sync_updated_at fired'; END $$;
CREATE FUNCTION public.trap_eq(oid, oid) RETURNS boolean LANGUAGE plpgsql AS
  $$ BEGIN RAISE EXCEPTION 'trap = fired'; END $$;
CREATE OPERATOR public.= (LEFTARG = oid, RIGHTARG = oid, FUNCTION = public.trap_eq);
CREATE FUNCTION public.trap_nre(name, text) RETURNS boolean LANGUAGE plpgsql AS
  $$ BEGIN RAISE EXCEPTION 'trap !~ fired'; END $$;
CREATE OPERATOR public.!~ (LEFTARG = name, RIGHTARG = text, FUNCTION = public.trap_nre);
"""


def test_tables_with_updated_at_get_the_trigger(server: PgServer) -> None:
    init_db(server, auto=True)
    init_db(server, auto=True)  # idempotent
    with app(server) as conn, conn.cursor() as cur:
        cur.execute(TRAPS)
        cur.execute("SET search_path = public, pg_catalog")  # the traps shadow pg_catalog
        cur.execute("CREATE TABLE a (id int PRIMARY KEY, v text, updated_at timestamptz)")
        cur.execute("CREATE TABLE b (id int PRIMARY KEY, v text)")
        cur.execute("CREATE TABLE t (id int, updated_at text)")  # not a timestamp: left
        cur.execute("CREATE SCHEMA other")
        cur.execute(
            "CREATE TABLE other.c (id int, v text, updated_at timestamp DEFAULT '2000-01-01')"
        )
        cur.execute("CREATE TEMP TABLE tmp (id int, updated_at timestamptz)")
        fn = "pgsteady.set_updated_at()"
        assert triggers(cur) == [("a", fn), ("other.c", fn)]
        cur.execute("ALTER TABLE b ADD COLUMN updated_at timestamptz")  # later
        assert triggers(cur) == [("a", fn), ("b", fn), ("other.c", fn)]
        cur.execute("INSERT INTO a VALUES (1, 'x', '2000-01-01'); INSERT INTO b VALUES (1, 'x')")
        cur.execute("INSERT INTO other.c VALUES (1, 'x')")
        for table in ("a", "b", "other.c"):
            cur.execute(f"UPDATE {table} SET v = 'y' RETURNING updated_at > '2020-01-01'")
            assert cur.fetchone() == (True,), table
        # the column goes away: so does pgsteady's trigger (it would fail every UPDATE)
        cur.execute("ALTER TABLE a DROP COLUMN updated_at")
        assert triggers(cur) == [("b", fn), ("other.c", fn)]
        cur.execute("UPDATE a SET v = 'z'")
        cur.execute("SELECT count(*) FROM public.trap_fired")
        assert cur.fetchone() == (0,)
    # a superuser session running DDL with the traps first in its search_path
    superuser(
        server,
        "SET search_path = public, pg_catalog;\n"
        "CREATE TABLE public.su (id int, updated_at timestamptz);",
    )
    with app(server) as conn, conn.cursor() as cur:
        assert ("su", "pgsteady.set_updated_at()") in triggers(cur)
    init_db(server, auto=True)  # re-run with the traps in place: still fine, nothing added
    with app(server) as conn, conn.cursor() as cur:
        assert len(triggers(cur)) == 3


def test_the_application_cannot_touch_pgsteadys_functions(server: PgServer) -> None:
    init_db(server, auto=True)
    with app(server) as conn, conn.cursor() as cur:
        for sql in (
            "CREATE FUNCTION pgsteady.x() RETURNS int LANGUAGE sql AS 'SELECT 1'",
            "CREATE OR REPLACE FUNCTION pgsteady.set_updated_at() RETURNS trigger "
            "LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$",
            "ALTER FUNCTION pgsteady.auto_updated_at() RENAME TO y",
            "DROP SCHEMA pgsteady CASCADE",
            "ALTER EVENT TRIGGER pgsteady_auto_updated_at DISABLE",
        ):
            with pytest.raises(psycopg2.errors.InsufficientPrivilege):
                cur.execute(sql)
    # an application that created a schema named pgsteady first: init_db refuses it
    superuser(server, "DROP EVENT TRIGGER pgsteady_auto_updated_at; DROP SCHEMA pgsteady CASCADE")
    with app(server) as conn, conn.cursor() as cur:
        cur.execute("CREATE SCHEMA pgsteady")
    secret = server.root / "init_db.sql"
    proc = server.psql_file(secret)
    assert proc.returncode != 0
    assert "schema pgsteady in database shopdb is owned by role shop" in proc.stderr


def test_turning_it_on_later_and_off(server: PgServer) -> None:
    init_db(server, auto=False)
    fn = "pgsteady.set_updated_at()"
    with app(server) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE early (id int, updated_at timestamptz)")
        assert triggers(cur) == []
    init_db(server, auto=True)  # existing tables get it when the setting is turned on
    init_db(server, auto=True)
    with app(server) as conn, conn.cursor() as cur:
        assert triggers(cur) == [("early", fn)]
    init_db(server, auto=False)
    init_db(server, auto=False)  # idempotent off
    assert superuser(server, "SELECT count(*) FROM pg_catalog.pg_event_trigger") == "0"
    with app(server) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE late (id int, updated_at timestamptz)")
        assert triggers(cur) == [("early", fn)]  # attached triggers stay; no new ones
