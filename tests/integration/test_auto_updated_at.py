"""postgres_auto_updated_at on a real server: init_db.sql's event trigger attaches
pgsteady.set_updated_at() to the application's tables with an updated_at column, never
runs an object the application created, and goes away when the setting is turned off."""

from __future__ import annotations

import psycopg2
import pytest
from appdb import app, init_db, running_server, superuser
from pgserver import PgServer, available

pytestmark = pytest.mark.skipif(not available(), reason="Postgres 15 server binaries missing")


@pytest.fixture
def server():
    with running_server() as srv:
        yield srv


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
    # another role's DDL (not the application's): it works, and its table is covered too
    superuser(
        server,
        "CREATE ROLE other; GRANT CREATE ON SCHEMA public TO other; SET ROLE other;\n"
        "CREATE TABLE public.theirs (id int, updated_at timestamptz);\n"
        "CREATE TABLE public.plain (id int);",
    )
    with app(server) as conn, conn.cursor() as cur:
        assert ("su", "pgsteady.set_updated_at()") in triggers(cur)
        assert ("theirs", "pgsteady.set_updated_at()") in triggers(cur)
    init_db(server, auto=True)  # re-run with the traps in place: still fine, nothing added
    with app(server) as conn, conn.cursor() as cur:
        assert len(triggers(cur)) == 4


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


def test_a_table_the_app_keeps_locked_does_not_stall_the_converge(server: PgServer) -> None:
    """Turning the setting on attaches triggers as the superuser (CREATE TRIGGER takes SHARE
    ROW EXCLUSIVE): a table held by the app's open write transaction is skipped after the
    lock timeout, the rest get their trigger, and the next converge attaches the skipped."""
    init_db(server, auto=False)
    fn = "pgsteady.set_updated_at()"
    with app(server) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE busy (id int, updated_at timestamptz)")
        cur.execute("CREATE TABLE idle (id int, updated_at timestamptz)")
    with app(server) as holder, holder.cursor() as hcur:
        holder.autocommit = False
        hcur.execute("INSERT INTO busy VALUES (1, now())")  # ROW EXCLUSIVE until commit
        init_db(server, auto=True)  # returns: busy is skipped after lock_timeout
        with app(server) as conn, conn.cursor() as cur:
            assert triggers(cur) == [("idle", fn)]
        holder.commit()
    init_db(server, auto=True)
    with app(server) as conn, conn.cursor() as cur:
        assert sorted(triggers(cur)) == [("busy", fn), ("idle", fn)]
