"""init_db.sql against the shipped images (PG 15 and 17) and the verify checks on roles.

The server logs every statement (and its parse tree) and pg_stat_statements tracks
utility statements: after
init_db.sql sets the passwords (twice), neither the container's log nor
pg_stat_statements holds one. The verify suite's role checks (tests/verify/test_roles.py)
pass on that server and fail, with their fix line, once each problem is introduced.
"""

from __future__ import annotations

import secrets
import subprocess
import time
import types

import pytest
from backup_env import DOCKER, docker

from pgsteady.render import render
from pgsteady.stack.compose import INIT_SQL
from pgsteady.stack.layout import HostLayout
from pgsteady.verify import CheckFailed, Fixes
from tests.support.verify_module import load_verify_module

pytestmark = pytest.mark.docker
PASSWORDS = {"app": "app-Pw-7f3a", "app_ro": "ro-Pw-91c2", "monitor": "mon-Pw-c0de"}


def _image(version: int) -> str | None:
    out = docker(
        "images", "--filter", "label=io.pgsteady.recipe", "--format",
        "{{.Repository}}:{{.Tag}}", check=False,
    ).stdout.split()  # fmt: skip
    return next((t for t in out if t.startswith(f"pgsteady/postgres:{version}-")), None)


_load_verify_module = load_verify_module  # test_walarchive_gaps imports it by this name


class _LocalHost:
    """The slice of a testinfra host that the verify suite's Host uses, run locally."""

    def run(self, command: str) -> types.SimpleNamespace:
        proc = subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=60)
        return types.SimpleNamespace(rc=proc.returncode, stdout=proc.stdout, stderr=proc.stderr)


class Server:
    """A container of the shipped image logging every statement, with pg_stat_statements."""

    def __init__(self, image: str) -> None:
        self.name = f"pgsteady-roles-{secrets.token_hex(4)}"
        docker(
            "run", "-d", "--name", self.name, "-e", "POSTGRES_PASSWORD=unused",
            "-e", "POSTGRES_DB=postgres", image, "postgres",
            "-c", "shared_preload_libraries=pg_stat_statements", "-c", "log_statement=all",
            "-c", "log_min_duration_statement=0", "-c", "pg_stat_statements.track=all",
            "-c", "pg_stat_statements.track_utility=on", "-c", "debug_print_parse=on",
            "-c", "debug_print_rewritten=on", "-c", "debug_print_plan=on",
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while self.sql("SELECT 1", check=False).stdout.strip() != "1":
            if time.monotonic() > deadline:
                raise RuntimeError(docker("logs", self.name, check=False).stderr)
            time.sleep(0.3)

    def sql(self, sql: str, db: str = "postgres", check: bool = True):
        return docker("exec", "-u", "postgres", self.name, "psql", "-XAtq", "-v",
                      "ON_ERROR_STOP=1", "-d", db, "-c", sql, check=check)  # fmt: skip

    def put(self, path: str, text: str) -> str:
        subprocess.run(
            [DOCKER, "exec", "-i", "-u", "postgres", self.name, "sh", "-c",
             f"mkdir -p $(dirname {path}) && umask 077 && cat > {path}"],
            input=text, text=True, check=True, capture_output=True,
        )  # fmt: skip
        return path

    def apply_init(self) -> None:
        files = {
            role: self.put(f"/tmp/secrets/{role}", pw + "\n") for role, pw in PASSWORDS.items()
        }
        sql = render(
            "init_db.sql.j2", app_user="app", app_password_file=files["app"],
            readonly_user="app_ro", readonly_password_file=files["app_ro"],
            monitor_user="monitor", monitor_password_file=files["monitor"], database="app",
            extensions=["pg_stat_statements", "pg_trgm"], schema_files=[],
        )  # fmt: skip
        path = self.put(f"/tmp/init/{INIT_SQL}", sql)
        proc = docker("exec", "-e", "PGOPTIONS=-c search_path=pg_catalog,pg_temp", "-u",
                      "postgres", self.name, "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1",
                      "-f", path, check=False)  # fmt: skip
        assert proc.returncode == 0, proc.stderr

    def log(self) -> str:
        proc = docker("logs", self.name, check=False)
        return proc.stdout + proc.stderr

    def remove(self) -> None:
        docker("rm", "-f", "-v", self.name, check=False)


@pytest.fixture(scope="module", params=[15, 17])
def server(request):
    image = _image(request.param)
    if image is None:
        pytest.skip(f"no pgsteady/postgres:{request.param}-* image built")
    srv = Server(image)
    try:
        srv.apply_init()
        srv.apply_init()
        yield srv
    finally:
        srv.remove()


def test_passwords_in_neither_log_nor_pg_stat_statements(server):
    log = server.log()
    assert "statement: ALTER DATABASE" in log  # statements are logged
    for password in PASSWORDS.values():
        assert password not in log
    tracked = server.sql(
        "SELECT count(*) FILTER (WHERE query ~* 'PASSWORD|Pw-'), "
        "count(*) FILTER (WHERE query ~ 'GRANT') FROM public.pg_stat_statements",
        "app",
    ).stdout.split("|")
    assert [int(n) for n in tracked][0] == 0 and int(tracked[1]) > 0


@pytest.fixture
def checks(server):
    """Run one check of tests/verify/test_roles.py against the server."""
    roles = _load_verify_module("test_roles")
    host_cls = _load_verify_module("conftest").Host
    s = types.SimpleNamespace(
        container_name=server.name, postgres_db="app", postgres_monitor_user="monitor",
        postgres_extensions=["pg_stat_statements", "pg_trgm"],
        layout=HostLayout("/opt/x", "/opt/x/backups"),
    )  # fmt: skip
    pg = host_cls(_LocalHost(), s)
    fixes = Fixes("inventory.py")
    return lambda name: getattr(roles, name)(pg, s, fixes)


NAMES = ["test_monitor_role", "test_no_public_grants_on_extension_objects",
         "test_no_password_in_pg_stat_statements"]  # fmt: skip


def test_role_checks_pass_then_fail_with_a_fix(server, checks):
    for name in NAMES:
        checks(name)
    breakage = {
        "test_monitor_role": "ALTER ROLE monitor SUPERUSER",
        "test_no_public_grants_on_extension_objects":
            "GRANT SELECT ON public.pg_stat_statements TO PUBLIC",
        "test_no_password_in_pg_stat_statements": "ALTER ROLE app_ro PASSWORD 'ro-Pw-91c2'",
    }  # fmt: skip
    for name, sql in breakage.items():
        server.sql(sql, "app")
        with pytest.raises(CheckFailed) as failed:
            checks(name)
        assert failed.value.fix
    server.sql("ALTER ROLE monitor NOSUPERUSER; SELECT public.pg_stat_statements_reset()", "app")
    server.apply_init()
    for name in NAMES:
        checks(name)


def test_password_fix_resets_the_extension_never_an_app_function(server, checks):
    """The app (CREATE on schema public, where the extension lives) plants overloads of
    pg_stat_statements_reset that would record who ran them: the fix line, run as printed,
    empties the statements through the extension's own function and none of the app's."""
    plant = """
        SET ROLE app;
        CREATE TABLE public.ran_as (who text);
        CREATE FUNCTION public.pg_stat_statements_reset() RETURNS void LANGUAGE sql
          AS $$ INSERT INTO public.ran_as SELECT current_user $$;
        CREATE FUNCTION public.pg_stat_statements_reset(oid) RETURNS void LANGUAGE sql
          AS $$ INSERT INTO public.ran_as SELECT current_user $$;
    """
    server.sql(plant, "app")
    try:
        server.sql("ALTER ROLE app_ro PASSWORD 'ro-Pw-91c2'", "app")
        with pytest.raises(CheckFailed) as failed:
            checks("test_no_password_in_pg_stat_statements")
        command, _, _ = failed.value.fix.partition(" (then change")
        assert "search_path=pg_catalog" in command and "::pg_catalog.oid" in command
        proc = subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        checks("test_no_password_in_pg_stat_statements")
        assert server.sql("SELECT count(*) FROM public.ran_as", "app").stdout.strip() == "0"
    finally:
        server.sql(
            "DROP FUNCTION public.pg_stat_statements_reset(); "
            "DROP FUNCTION public.pg_stat_statements_reset(oid); DROP TABLE public.ran_as",
            "app",
        )
        server.apply_init()
