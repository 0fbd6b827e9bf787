"""The app's database settings never turn a pgsteady superuser session into the app.

The application role owns its database, so it may run ``ALTER DATABASE app SET role =
'app'`` and ``SET default_transaction_read_only = on``: every later session into ``app``
inherits them, a superuser's too. A control proves a session pinned only by search_path
then runs as ``app`` and cannot write; then pgsteady's own session paths run against that
real server (``pgsteady-ctl apply-sql`` of init_db.sql and its options, the verify suite's
psql, the monitor's collect script, the backup tool's backup and restore) and each must
run as the superuser, with writes allowed.
"""

from __future__ import annotations

import subprocess
import types
from pathlib import Path

import pytest
from backup_env import DOCKER, REPO, Postgres, Tool, docker
from debian_images import debian_image_or_skip, engine_or_skip
from test_privileged_sql import _LocalHost, _put, _render_init_db, _verify_host_class

from pgsteady.monitor.collect import PGOPTIONS_SAFE, collect_script, parse_sections
from pgsteady.postgres.session import SUPERUSER_PGOPTIONS

pytestmark = pytest.mark.docker

CTL = REPO / "files/bin/pgsteady-ctl"
WHO = (
    "SELECT pg_catalog.current_user() || '|' || pg_catalog.current_setting('transaction_read_only')"
)


@pytest.fixture(scope="module")
def pg():
    container = Postgres(debian_image_or_skip(engine_or_skip(), 17))
    try:
        container.sql(
            "CREATE ROLE app LOGIN PASSWORD 'app-pw'; ALTER DATABASE app OWNER TO app",
            "postgres",
        )
        container.sql(
            "SET ROLE app; ALTER DATABASE app SET role = 'app'; "
            "ALTER DATABASE app SET default_transaction_read_only = on",
            "app",
        )
        yield container
    finally:
        container.remove()


def _su(pg: Postgres, sql: str, options: str = SUPERUSER_PGOPTIONS, db: str = "app") -> str:
    return docker(
        "exec", "-e", f"PGOPTIONS={options}", "-u", "postgres", pg.name,
        "psql", "-XAtq", "-v", "ON_ERROR_STOP=1", "-d", db, "-c", sql,
    ).stdout.strip()  # fmt: skip


def _who(pg: Postgres, options: str) -> str:
    return _su(pg, WHO, options)


def test_a_session_pinned_only_by_search_path_runs_as_the_app(pg):
    """The control: the app's database settings take over an unguarded superuser session."""
    assert _who(pg, "-c search_path=pg_catalog,pg_temp") == "app|on"


@pytest.mark.parametrize("options", [SUPERUSER_PGOPTIONS, PGOPTIONS_SAFE])
def test_the_options_run_as_the_superuser_with_writes_allowed(pg, options):
    assert _who(pg, options) == "postgres|off"


def _ctl_env(tmp_path: Path, container: str) -> Path:
    (tmp_path / "state").mkdir(mode=0o700)
    env = tmp_path / "ctl.env"
    values = {
        "PGSTEADY_PROJECT": container,
        "PGSTEADY_CONTAINER": container,
        "PGSTEADY_COMPOSE": "docker compose",
        "PGSTEADY_COMPOSE_FILE": str(tmp_path / "docker-compose.yml"),
        "PGSTEADY_STATE_DIR": str(tmp_path / "state"),
    }
    env.write_text("".join(f"{k}='{v}'\n" for k, v in values.items()))
    env.chmod(0o600)
    return env


def test_apply_sql_runs_init_db_as_the_superuser(tmp_path, pg):
    """``pgsteady-ctl apply-sql`` of init_db.sql (it \\connects to app and alters roles)."""
    env = _ctl_env(tmp_path, pg.name)
    init = _put(pg, "/tmp/init_db.sql", _render_init_db(pg))
    probe = _put(
        pg,
        "/tmp/probe.sql",
        "\\connect app\nCREATE TABLE public.ctl_probe AS SELECT pg_catalog.current_user() AS cu;\n",
    )
    for path in (init, probe):
        proc = subprocess.run(
            ["sh", str(CTL), "-e", str(env), "apply-sql", path],
            capture_output=True, text=True, timeout=120,
            env={"PATH": f"{Path(DOCKER).parent}:/usr/bin:/bin"},
        )  # fmt: skip
        assert proc.returncode == 0, f"{path}: {proc.stderr}"
    assert _su(pg, "SELECT cu FROM public.ctl_probe") == "postgres"


def test_verify_suite_psql_runs_as_the_superuser(pg):
    host = _verify_host_class()(_LocalHost(), types.SimpleNamespace(container_name=pg.name))
    assert host.value(WHO, "app") == "postgres|off"
    host.psql("CREATE TABLE public.verify_probe (x int); DROP TABLE public.verify_probe", "app")


def test_monitor_collect_sessions_run_as_the_superuser(tmp_path, pg):
    s = types.SimpleNamespace(
        container_name=pg.name, app_dir=str(tmp_path), backup_path=str(tmp_path),
        pgbackrest_enabled=False, postgres_db="app", pgbouncer_enabled=False,
        compose_project=pg.name, postgres_cluster_name=None,  # a single host
    )  # fmt: skip
    script = collect_script(s)
    proc = subprocess.run(
        ["sh", "-s"], input=script, capture_output=True, text=True, timeout=120,
        env={"PATH": f"{Path(DOCKER).parent}:/usr/bin:/bin"},
    )  # fmt: skip
    sections = parse_sections(proc.stdout)
    for name in ("sql", "performance"):
        assert sections[name]["rc"] == 0, f"{name}: {sections[name]['err']}"


def test_backup_tool_backs_up_and_restores_as_the_superuser(tmp_path, pg):
    # a table the app role cannot read: a dump taken as the app fails on it
    _su(pg, "CREATE TABLE public.admin_rows AS SELECT 1 AS x")
    tool = Tool.install(tmp_path / "app", pg.name, ["app"])
    for args in (["backup"], ["restore", "--target-db", "app_copy"]):
        proc = tool.run(*args)
        assert proc.returncode == 0, f"{args}: {proc.stdout}\n{proc.stderr}"


def test_pgbackrest_sessions_run_as_the_superuser(tmp_path, pg):
    """``pgsteady-ctl pgbackrest`` (and upgrade-major's stanza-upgrade, sourced by it) gives
    pgBackRest's own libpq session the options: here its database is the app's, whose
    ``role = 'app'`` would make pgBackRest's catalog reads (data_directory, superuser-only)
    come back empty and the stanza fail."""
    data_dir = _su(pg, "SHOW data_directory", db="postgres")
    conf = _put(
        pg,
        "/tmp/pgbr-probe.conf",
        "[global]\nrepo1-path=/tmp/pgbr-repo\nlog-path=/tmp\nlock-path=/tmp\n"
        f"[probe]\npg1-path={data_dir}\npg1-user=postgres\npg1-database=app\n",
    )
    docker("exec", "-u", "postgres", pg.name, "mkdir", "-p", "/tmp/pgbr-repo")
    env = _ctl_env(tmp_path, pg.name)
    control = docker(
        "exec", "-u", "postgres", pg.name,
        "pgbackrest", f"--config={conf}", "--stanza=probe", "stanza-create", check=False,
    )  # fmt: skip
    assert control.returncode != 0, control.stdout  # the control: the app's role took over
    proc = subprocess.run(
        ["sh", str(CTL), "-e", str(env), "pgbackrest", f"--config={conf}", "--stanza=probe",
         "stanza-create"],
        capture_output=True, text=True, timeout=120,
        env={"PATH": f"{Path(DOCKER).parent}:/usr/bin:/bin"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
