"""``restore --force`` is atomic: killed at any point, the live database is untouched.

The tool runs as cron/an operator runs it, against a real container. It is SIGKILLed
after the safety backup, after creating its private database, while pg_restore runs,
after the restore and right before the swap; each time the live database keeps its
data, owner, ACL, connection limit and ``ALTER DATABASE/ROLE ... SET`` settings, and
no session of the application can reach the half-restored copy. A later restore then
succeeds, replaces the data, keeps the database's grants and settings, disconnects the
sessions on the old database only at the swap, and is recorded in status.json.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest
from backup_env import DOCKER, HOST_PYTHON, Postgres, Tool, docker, find_image

from pgsteady.backuptool.databases import REPLACED_PREFIX, TEMP_PREFIX
from pgsteady.backuptool.load import PAUSE_ENV

IMAGE = find_image()
pytestmark = [
    pytest.mark.docker,
    pytest.mark.skipif(IMAGE is None, reason="no image labelled io.pgsteady.recipe"),
]

SETUP = """
CREATE ROLE shop LOGIN PASSWORD 'shop-pw';
CREATE ROLE shop_ro LOGIN PASSWORD 'ro-pw';
CREATE ROLE outsider LOGIN PASSWORD 'shop-pw';
ALTER DATABASE app OWNER TO shop;
REVOKE ALL ON DATABASE app FROM PUBLIC;
GRANT CONNECT ON DATABASE app TO shop_ro;
GRANT TEMPORARY ON DATABASE app TO shop_ro WITH GRANT OPTION;
ALTER DATABASE app CONNECTION LIMIT 40;
ALTER DATABASE app SET work_mem = '8MB';
ALTER DATABASE app SET search_path = "$user", public, "Other Schema";
ALTER ROLE shop_ro IN DATABASE app SET statement_timeout = '5s';
"""

DATA = """
SET ROLE shop;
CREATE TABLE items (id int PRIMARY KEY, label text NOT NULL);
INSERT INTO items SELECT g, md5(g::text) FROM generate_series(1, 300000) g;
CREATE INDEX ON items (label);
"""

STATE = """
SELECT pg_get_userbyid(d.datdba), d.datconnlimit, d.datallowconn,
  (SELECT string_agg(coalesce(pg_get_userbyid(nullif(a.grantee, 0)), 'PUBLIC') || ':' ||
          a.privilege_type || ':' || a.is_grantable, ',' ORDER BY 1)
     FROM aclexplode(d.datacl) a),
  (SELECT string_agg(coalesce(pg_get_userbyid(nullif(s.setrole, 0)), '-') || ':' ||
          array_to_string(s.setconfig, ';'), ',' ORDER BY 1)
     FROM pg_db_role_setting s WHERE s.setdatabase = d.oid)
FROM pg_database d WHERE d.datname = 'app'
"""


@pytest.fixture(scope="module")
def pg():
    container = Postgres(IMAGE)
    try:
        container.sql(SETUP, "postgres")
        container.sql(DATA, "app")
        yield container
    finally:
        container.remove()


def _state(pg: Postgres) -> tuple[str, dict[str, str]]:
    """The live database's catalog properties and its data."""
    return pg.value(STATE, "postgres"), pg.table_digests("app")


def _temp_databases(pg: Postgres) -> list[str]:
    return sorted(d for d in pg.databases() if d.startswith((TEMP_PREFIX, REPLACED_PREFIX)))


def _start(tool: Tool, pause: str | None) -> subprocess.Popen[str]:
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    if pause:
        env[PAUSE_ENV] = pause
    return subprocess.Popen(
        [HOST_PYTHON, str(tool.app_dir / "bin" / "pgsteady-backup"), "restore", "--config",
         str(tool.config_path), "--target-db", "app", "--force"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd="/", env=env,
    )  # fmt: skip


def _wait_for_line(proc: subprocess.Popen[str], text: str) -> None:
    lines = []
    for line in iter(proc.stderr.readline, ""):
        lines.append(line)
        if text in line:
            return
    proc.wait()
    raise AssertionError(f"the restore never printed {text!r}:\n{''.join(lines)}")


def _wait_for_pg_restore(pg: Postgres, proc: subprocess.Popen[str]) -> None:
    """Until pg_restore has a session (in the tool's private database)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        busy = pg.value(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pg_restore'",
            "postgres",
        )
        if busy != "0":
            return
        time.sleep(0.05)
    raise AssertionError(f"pg_restore never started (exit {proc.poll()})")


_RESTORE_ROLE_SQL = (
    "SELECT rolcanlogin, (SELECT count(*) FROM pg_auth_members m WHERE m.member = r.oid) "
    "FROM pg_roles r WHERE rolname = 'pgsteady_restore'"
)


def _kill(proc: subprocess.Popen[str]) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def _connect_as(pg: Postgres, role: str, db: str) -> subprocess.CompletedProcess:
    return docker(
        "exec", "-e", "PGPASSWORD=shop-pw", pg.name, "psql", "-XAtq", "-h", "127.0.0.1",
        "-U", role, "-d", db, "-c", "SELECT 1", check=False,
    )  # fmt: skip


@pytest.mark.parametrize(
    "point", ["safety", "created", "pg_restore", "owner-data", "restored", "swap"]
)
def test_killed_restore_leaves_the_live_database_untouched(tmp_path, pg, point):
    tool = Tool.install(tmp_path / "app", pg.name, ["app"])
    assert tool.run("backup").returncode == 0
    backed_up = pg.table_digests("app")
    pg.sql(f"INSERT INTO items VALUES (-1, 'written after the backup, before {point}')")
    before = _state(pg)
    proc = _start(tool, None if point == "pg_restore" else point)
    if point == "pg_restore":
        _wait_for_pg_restore(pg, proc)
    else:
        _wait_for_line(proc, f"pausing at {point}")
    for temp in _temp_databases(pg):  # what a killed run leaves, nobody else can reach
        assert "permission denied" in _connect_as(pg, "shop", temp).stderr
    if point == "owner-data":  # the restore role may log in, as the rows' owner
        assert pg.value(_RESTORE_ROLE_SQL, "postgres") == "t|1"
    _kill(proc)
    assert _state(pg) == before
    assert _connect_as(pg, "shop", "app").stdout.strip() == "1"
    # the lock died with the process; the next restore cleans up and succeeds
    done = tool.run("restore", "--target-db", "app", "--force")
    assert done.returncode == 0, done.stderr
    catalog, data = _state(pg)
    assert catalog == before[0]
    assert data == backed_up != before[1]
    assert _temp_databases(pg) == []
    # nor does the restore role keep a login or a membership
    assert pg.value(_RESTORE_ROLE_SQL, "postgres") == "f|0"


def test_forced_restore_keeps_grants_settings_and_records_status(tmp_path, pg):
    tool = Tool.install(tmp_path / "app", pg.name, ["app"])
    assert tool.run("backup").returncode == 0
    pg.sql("UPDATE items SET label = 'changed' WHERE id <= 10")
    catalog_before, _ = _state(pg)
    # a long session on the live database: terminated at the swap, not before
    session = subprocess.Popen(
        [DOCKER, "exec", "-e", "PGPASSWORD=shop-pw", pg.name, "psql", "-XAtq", "-h",
         "127.0.0.1", "-U", "shop", "-d", "app", "-c", "SELECT pg_sleep(600)"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        done = tool.run("restore", "--target-db", "app", "--force")
        assert done.returncode == 0, done.stderr
        assert session.wait(timeout=30) != 0  # disconnected by the swap
    finally:
        if session.poll() is None:
            session.kill()
            session.wait()
    catalog, _ = _state(pg)
    assert catalog == catalog_before
    assert "shop_ro:TEMPORARY:true" in catalog and 'search_path="$user", public' in catalog
    assert pg.value("SELECT count(*) FROM items WHERE label = 'changed'") == "0"
    assert pg.value("SHOW work_mem") == "8MB"
    assert _temp_databases(pg) == []
    assert "permission denied" in _connect_as(pg, "outsider", "app").stderr
    status = tool.status()
    last = status["last_restore"]
    assert last["ok"] is True and last["target"] == "app" and last["safety_backup"]
    assert last["backup"] == str(tool.latest())
    failed = tool.run("restore", "--target-db", "app", "--force", "--backup", "/nonexistent")
    assert failed.returncode != 0
    status = tool.status()
    assert status["last_restore"]["ok"] is False
    assert "does not exist" in status["last_restore"]["error"]
    assert [r["ok"] for r in status["restores"]][-2:] == [True, False]
