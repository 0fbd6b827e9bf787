"""postgres: the server answers the app as configured, with the tuned settings in effect."""

from __future__ import annotations

import math
import shlex
from typing import TYPE_CHECKING

import pytest

from pgsteady.postgres.conf_files import (
    expected_settings,
    render_init_db_sql,
    render_pg_hba_conf,
    render_postgresql_conf,
)
from pgsteady.postgres.parameters import Param, parse_bool, to_number
from pgsteady.settings import Settings
from pgsteady.verify import Fixes, check

if TYPE_CHECKING:
    from conftest import Host

HEADROOM = 0.8
RELOAD = "{paths.bin}/pgsteady-ctl apply-config"


def test_app_login_over_tcp(pg: Host, s: Settings, fixes: Fixes) -> None:
    """The app role logs in over TCP with its secret (scram-sha-256 required from PG 16)."""
    conninfo = f"host=127.0.0.1 user={s.postgres_user} dbname={s.postgres_db}"
    if s.postgres_version >= 16:
        conninfo += " require_auth=scram-sha-256"
    script = 'PGPASSWORD="$(cat /run/secrets/app_password)" psql -XAtq -d "$1" -c "SELECT 1"'
    res = pg.run(
        f"{pg.docker} exec -u postgres {s.container_name} sh -c {shlex.quote(script)} sh "
        f"{shlex.quote(conninfo)}"
    )
    check(
        res.rc == 0 and res.stdout.strip() == "1",
        f"{s.postgres_user} cannot log in over TCP: {res.stderr.strip()[:160]}",
    )


@pytest.mark.fix("{paths.bin}/pgsteady-ctl up", on_host=True)
def test_published_port_answers(pg: Host, s: Settings) -> None:
    """Postgres answers an SSLRequest on postgres_bind:postgres_port from the host."""
    on = pg
    addr = "127.0.0.1" if s.postgres_bind in ("0.0.0.0", "::") else s.postgres_bind
    probe = (
        f"import socket,struct; c=socket.create_connection(({addr!r},{s.postgres_port}),"
        "timeout=5); c.sendall(struct.pack('!ii',8,80877103)); print(c.recv(1).decode())"
    )
    res = on.run(f"python3 -c {shlex.quote(probe)}")
    check(
        res.rc == 0 and res.stdout.strip() in ("N", "S"),
        f"nothing speaks Postgres on {addr}:{s.postgres_port}: {res.stderr.strip()[-120:]}",
    )


def test_server_version(pg: Host, s: Settings) -> None:
    got = int(pg.value("SHOW server_version_num")) // 10000
    check(got == s.postgres_version, f"server is Postgres {got}; settings say {s.postgres_version}")


@pytest.mark.fix("dump, initdb --data-checksums and restore (pg_checksums --enable offline)")
def test_data_checksums(pg: Host) -> None:
    check(pg.value("SHOW data_checksums") == "on", "data checksums are off")


def _same(expected: str, setting: str, unit: str, vartype: str) -> bool:
    """Whether a postgresql.conf value means the server's pg_settings value."""
    if vartype == "bool":
        return parse_bool(expected) == parse_bool(setting)
    if vartype in ("integer", "real"):
        number = to_number(expected, Param("", "", vartype, unit or ""))
        if isinstance(number, str):
            return False
        if vartype == "integer":
            return round(number) == int(setting)
        return math.isclose(number, float(setting), rel_tol=1e-9)
    if vartype == "enum":
        return expected.strip().lower() == setting.lower()
    return expected == setting


@pytest.mark.fix(RELOAD, on_host=True)
def test_tuned_settings(pg: Host, s: Settings) -> None:
    """Every value of pgconfig.expected_settings is the running value (units normalised)."""
    want = expected_settings(s)
    names = ",".join(f"'{n}'" for n in want)
    rows = pg.psql(
        "SELECT name, setting, coalesce(unit, ''), vartype FROM pg_settings "
        f"WHERE name IN ({names})"
    )
    got = {r[0]: r[1:] for r in rows}
    wrong = [
        f"{n}={got[n][0]}{got[n][1]} (want {v})" if n in got else f"{n} unknown"
        for n, v in want.items()
        if n not in got or not _same(v, *got[n])
    ]
    check(not wrong, f"running settings differ: {', '.join(wrong)}")


@pytest.mark.fix(
    "{paths.bin}/pgsteady-ctl psql -X -d postgres -c 'ALTER SYSTEM RESET ALL' -c "
    "'SELECT pg_catalog.pg_reload_conf()' && {paths.bin}/pgsteady-ctl apply-config",
    on_host=True,
)
def test_no_runtime_overrides(pg: Host) -> None:
    """Nothing set by ALTER SYSTEM (postgresql.auto.conf) shadows the managed file."""
    rows = pg.psql(
        "SELECT name, setting FROM pg_file_settings WHERE sourcefile LIKE '%postgresql.auto.conf'"
    )
    check(not rows, f"ALTER SYSTEM overrides: {', '.join('='.join(r) for r in rows)}")


@pytest.mark.fix("{paths.bin}/pgsteady-ctl apply-config", on_host=True)
def test_no_pending_restart(pg: Host) -> None:
    rows = pg.psql("SELECT name FROM pg_settings WHERE pending_restart")
    rows += pg.psql(
        "SELECT sourcefile || ':' || sourceline FROM pg_file_settings WHERE error IS NOT NULL"
    )
    check(not rows, f"settings wait for a restart or have errors: {', '.join(r[0] for r in rows)}")


@pytest.mark.parametrize("name", ["postgresql.conf", "pg_hba.conf", "10-init_db.sql"])
def test_config_file_matches(on: Host, s: Settings, name: str) -> None:
    render = {
        "postgresql.conf": (render_postgresql_conf, "config"),
        "pg_hba.conf": (render_pg_hba_conf, "config"),
        "10-init_db.sql": (render_init_db_sql, "init"),
    }
    fn, where = render[name]
    path = f"{getattr(s.layout, where)}/{name}"
    check(on.read(path) == fn(s), f"{path} is missing or differs from the settings")


@pytest.mark.fix("{deploy} (after adding pg_stat_statements back to shared_preload_libraries)")
def test_pg_stat_statements(pg: Host, s: Settings) -> None:
    libs = pg.value("SHOW shared_preload_libraries")
    check("pg_stat_statements" in libs.split(","), "pg_stat_statements is not preloaded")
    if "pg_stat_statements" in s.postgres_extensions:
        res = pg.value("SELECT count(*) >= 0 FROM public.pg_stat_statements", db=s.postgres_db)
        check(res == "t", f"pg_stat_statements cannot be queried in {s.postgres_db}")


def test_database_and_extensions(pg: Host, s: Settings) -> None:
    owner = pg.value(
        f"SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '{s.postgres_db}'"
    )
    check(owner == s.postgres_user, f"database {s.postgres_db} owned by {owner or 'nobody'}")
    have = {r[0] for r in pg.psql("SELECT extname FROM pg_extension", db=s.postgres_db)}
    missing = sorted(set(s.postgres_extensions) - have)
    check(not missing, f"extensions missing in {s.postgres_db}: {', '.join(missing)}")


@pytest.mark.fix("find the idle or leaking clients (pg_stat_activity) or raise max_connections")
def test_connection_headroom(pg: Host) -> None:
    used, limit = pg.psql(
        "SELECT count(*), current_setting('max_connections')::int FROM pg_stat_activity "
        "WHERE backend_type = 'client backend'"
    )[0]
    check(
        int(used) < HEADROOM * int(limit),
        f"{used} of max_connections={limit} in use (>= {HEADROOM:.0%})",
    )
