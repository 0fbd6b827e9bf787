"""A real server set up as a converge leaves it (init_db.sql applied), for tests that act
as the application's role on its database and as the superuser beside it."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from typing import Any

import psycopg2
from pgserver import OS_USER, PG_BIN, PgServer, own

from pgsteady.postgres.parameters import hba_rules
from pgsteady.postgres.tuning import TuningInput, tune
from pgsteady.render import render
from pgsteady.units import GIB

APP, APP_PASSWORD, DB = "shop", "app-Secret-1", "shopdb"


@contextlib.contextmanager
def running_server(overrides: dict[str, str] | None = None) -> Iterator[PgServer]:
    """A started server whose pg_hba lets APP log in to DB; removed afterwards."""
    srv = PgServer()
    rules = hba_rules(["samenet"], OS_USER, database=DB, app_roles=[APP])
    srv.configure(
        tune(TuningInput(15, "web", 1 * GIB, 1)), overrides,
        hba=render("pg_hba.conf.j2", rules=rules),
    )  # fmt: skip
    try:
        srv.start()
        yield srv
    finally:
        srv.cleanup()


def init_db(srv: PgServer, auto: bool = False) -> None:
    """Render and apply init_db.sql as the superuser, as a converge does."""
    secret = srv.root / "app_password"
    secret.write_text(APP_PASSWORD + "\n")
    own(secret, 0o600)
    path = srv.root / "init_db.sql"
    path.write_text(
        render(
            "init_db.sql.j2", app_user=APP, app_password_file=str(secret), readonly_user=None,
            database=DB, extensions=["pg_stat_statements", "pg_trgm"], auto_updated_at=auto,
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


def superuser_run(srv: PgServer, sql: str, database: str = DB) -> subprocess.CompletedProcess[str]:
    """``sql`` in a superuser session (psql over the socket as the postgres OS user)."""
    path = srv.root / "su.sql"
    path.write_text(sql + "\n")
    own(path)
    return subprocess.run(
        ["runuser", "-u", OS_USER, "--", str(PG_BIN / "psql"), "-h", str(srv.sockdir), "-p",
         str(srv.port), "-d", database, "-X", "-At", "-v", "ON_ERROR_STOP=1", "-f", str(path)],
        capture_output=True, text=True, cwd="/", check=False,
    )  # fmt: skip


def superuser(srv: PgServer, sql: str, database: str = DB) -> str:
    """:func:`superuser_run`, which must succeed; its output."""
    proc = superuser_run(srv, sql, database)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()
