"""Hostile strings: rejected by Settings with a clear error, or rendered into every file
so that the real consumer (docker-compose, postgres, psql, sh, cron's rules) reads back
exactly the value that went in."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2
import pytest
import yaml
from pgserver import OS_USER, PG_BIN, PgServer, available, own

from pgsteady.backup.tool_config import render_backup_config
from pgsteady.postgres.conf_files import render_pg_hba_conf, render_postgresql_conf
from pgsteady.render import render
from pgsteady.settings import HostFacts, Settings, SettingsError, build_settings
from pgsteady.stack import exporters, pgbouncer
from pgsteady.stack.compose import compose_context, render_compose, secret_names
from pgsteady.stack.jobs import Job, backup_job, render_cron, watchdog_job
from pgsteady.stack.layout import KEY_MOUNT, TLS_MOUNT
from pgsteady.tls import KEY_FILE

FACTS = HostFacts(ram_mb=8192, cpus=4)

#: Quotes, spaces, $, newlines, colons, YAML specials and shell metacharacters.
NASTY = [
    "it's",
    'say "hi"',
    "two words",
    "$HOME",
    "${X:-y}",
    "a\nb",
    "key: value",
    "- item",
    "*ref",
    "&anchor",
    "{a: b}",
    "[x]",
    "#comment",
    "yes",
    "null",
    "~",
    "back\\slash",
    "100%",
    "`id`",
    "$(id)",
    "x; rm -rf /",
    "!bang",
    "tab\there",
    "'; DROP TABLE t; --",
    "ünï",
]
ONE_LINE = [v for v in NASTY if "\n" not in v]
#: the ones with a character beyond plain lower-case words
HOSTILE = [v for v in NASTY if not re.fullmatch(r"[a-z]+", v)]


def _settings(**data: Any) -> Settings:
    return build_settings(data, FACTS)


# --------------------------------------------------------------------------------------
# 1. What Settings accept today; everything else gets an error naming key and value
# --------------------------------------------------------------------------------------

#: key -> how a hostile string is placed into that setting
PLACEMENT = {
    "app_dir": lambda v: f"/srv/{v}",
    "backup_dir": lambda v: f"/srv/{v}",
    "postgres_image_archive": lambda v: f"/srv/{v}.tar",
    "compose_project": lambda v: v,
    "postgres_db": lambda v: v,
    "postgres_user": lambda v: v,
    "postgres_readonly_user": lambda v: v,
    "postgres_extensions": lambda v: [v],
    "postgres_image": lambda v: v,
    "postgres_bind": lambda v: v,
    "postgres_allowed_networks": lambda v: [v],
    "backup_schedule": lambda v: v,
    "docker_log_max_size": lambda v: v,
    "healthcheck_interval": lambda v: v,
    "postgres_memory_limit": lambda v: v,
}
#: keys that take free text on purpose; their round trips are tested below
FREE_TEXT = {"backup_on_failure_command", "postgres_settings"}


@pytest.mark.parametrize("key", sorted(PLACEMENT))
def test_hostile_strings_are_rejected_naming_key_and_value(key: str) -> None:
    for value in HOSTILE:
        with pytest.raises(SettingsError) as exc:
            _settings(**{key: PLACEMENT[key](value)})
        assert len(exc.value.errors) == 1
        error = exc.value.errors[0]
        assert error.startswith(key), error
        assert repr(value)[1:-1] in error, error


def test_free_text_settings_accept_one_line_strings_and_refuse_line_breaks() -> None:
    for value in ONE_LINE:
        _settings(postgres_settings={"log_line_prefix": value})
        if "%" not in value:  # cron would turn % into a line break
            _settings(backup_on_failure_command=f"echo {value}")
    for key, data in (
        ("postgres_settings", {"postgres_settings": {"log_line_prefix": "a\nb"}}),
        ("backup_on_failure_command", {"backup_on_failure_command": "a\nb"}),
        ("backup_on_failure_command", {"backup_on_failure_command": "echo 100%"}),
    ):
        with pytest.raises(SettingsError) as exc:
            build_settings(data, FACTS)
        assert exc.value.errors[0].startswith(key)


def test_schema_files_with_odd_names_are_rejected_naming_them(tmp_path: Path) -> None:
    for value in ONE_LINE:
        path = tmp_path / f"{value}.sql".replace("/", "_")
        path.write_text("SELECT 1;\n")
        if (
            path.name.replace(".sql", "")
            .replace(".", "")
            .replace("_", "")
            .replace("-", "")
            .isalnum()
        ):
            continue  # a plain name is accepted
        with pytest.raises(SettingsError) as exc:
            _settings(postgres_schema_files=[str(path)])
        assert exc.value.errors[0].startswith("postgres_schema_files[0]")
        assert repr(str(path))[1:-1] in exc.value.errors[0]


#: Values the validators accept that YAML, SQL or the shell could still misread.
TRICKY_NAMES = ["null", "yes", "on", "1e3", "0x1f", "007", "true", "nan", "inf", "1_000"]
TRICKY_ROLES = ["select", "user", "all", "current_user", "session_user", "null", "_"]


# --------------------------------------------------------------------------------------
# 2. docker-compose: the real CLI parses what we rendered
# --------------------------------------------------------------------------------------


def _compose_config(tmp_path: Path, text: str) -> dict[str, Any]:
    if not shutil.which("docker-compose"):
        pytest.skip("docker-compose is not installed")
    path = tmp_path / "docker-compose.yml"
    path.write_text(text)
    proc = subprocess.run(
        ["docker-compose", "-p", "quoting", "-f", str(path), "config"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    return yaml.safe_load(proc.stdout)


@pytest.mark.parametrize("name", TRICKY_NAMES)
def test_compose_round_trips_accepted_yaml_lookalikes(tmp_path: Path, name: str) -> None:
    s = _settings(compose_project=name, app_dir=f"/srv/{name}/-x.y_z", backup_dir=f"/{name}")
    svc = _compose_config(tmp_path, render_compose(s))["services"]["postgres"]
    assert svc["container_name"] == s.container_name
    assert svc["image"] == s.image_alias
    assert svc["labels"] == {"io.pgsteady.project": name}
    sources = {(v["source"] if isinstance(v, dict) else v.split(":")[0]) for v in svc["volumes"]}
    # every mount compose.py asks for comes back with the tricky path intact
    assert sources == {v.split(":")[0] for v in compose_context(s)["volumes"]}
    assert {"pgdata", s.layout.config, s.layout.init} <= sources
    secrets = _compose_config(tmp_path, render_compose(s))["secrets"]
    assert {v["file"] for v in secrets.values()} == {
        f"{s.layout.secrets}/{n}"
        for n in [*secret_names(s), *exporters.secret_names(s), *pgbouncer.secret_names(s)]
    }


def test_compose_template_quotes_any_string_except_dollar(tmp_path: Path) -> None:
    """The yaml filter round-trips every string through YAML; compose then interpolates
    ``$`` itself, which is why no accepted setting can contain one (checked below)."""
    values = [v for v in NASTY if "$" not in v]
    base = _settings()
    from pgsteady.stack.compose import compose_context

    ctx = compose_context(base)
    ctx["labels"] = {f"io.pgsteady.l{i}": v for i, v in enumerate(values)}
    ctx["environment"] = {**ctx["environment"], "PGSTEADY_NASTY": values[0]}
    svc = _compose_config(tmp_path, render("docker-compose.yml.j2", **ctx))["services"]["postgres"]
    assert svc["labels"] == ctx["labels"]
    assert svc["environment"]["PGSTEADY_NASTY"] == values[0]


def test_no_accepted_setting_puts_a_dollar_into_the_compose_file() -> None:
    for key, place in PLACEMENT.items():
        with pytest.raises(SettingsError):
            _settings(**{key: place("$HOME")})
    # "$$" is compose's escape for a literal "$" (the health probe's own shell script):
    # nothing else may carry one.
    assert "$" not in render_compose(_settings()).replace("$$", "")


# --------------------------------------------------------------------------------------
# 3. ctl.env: sh -n, then sourced by a real sh
# --------------------------------------------------------------------------------------


#: ctl.env's keys for pgsteady-ctl upgrade-major: template name -> variable.
UPGRADE_ENV = {
    "data_volume": "PGSTEADY_DATA_VOLUME",
    "data_mount": "PGSTEADY_DATA_MOUNT",
    "image": "PGSTEADY_IMAGE",
    "config_file": "PGSTEADY_CONFIG_FILE",
    "backup_dir": "PGSTEADY_BACKUP_DIR",
    "pgbackrest_stanza": "PGSTEADY_PGBACKREST_STANZA",
}


def _ctl_env(tmp_path: Path, **values: str) -> dict[str, str]:
    fixed = {"restart_policy": "always", "backoff": 60, "backoff_max": 3600}
    fixed |= {"pooler": "", "pooler_uid": "", "pooler_db": "", "pooler_admin": ""}  # no pooler
    fixed |= {"backup_mounted": 0}
    text = render("ctl.env.j2", healthy_timeout=300, **(fixed | values))
    path = tmp_path / "ctl.env"
    path.write_text(text)
    assert subprocess.run(["sh", "-n", str(path)], capture_output=True).returncode == 0, text
    names = [
        "PGSTEADY_PROJECT",
        "PGSTEADY_CONTAINER",
        "PGSTEADY_COMPOSE",
        "PGSTEADY_COMPOSE_FILE",
        "PGSTEADY_STATE_DIR",
        "PGSTEADY_WATCHDOG_ON_FAILURE",
        *UPGRADE_ENV.values(),
    ]
    script = '. "$1"; printf "%s\\0" ' + " ".join(f'"${n}"' for n in names)
    out = subprocess.run(
        ["sh", "-c", script, "sh", str(path)], capture_output=True, check=True
    ).stdout.decode()
    return dict(zip(names, out.split("\0")[:-1], strict=True))


@pytest.mark.parametrize("value", NASTY, ids=range(len(NASTY)))
def test_ctl_env_round_trips_any_string(tmp_path: Path, value: str) -> None:
    got = _ctl_env(
        tmp_path,
        project=value,
        container=f"{value}-c",
        compose=value,
        compose_file=f"/{value}",
        state_dir=f"/s/{value}",
        on_failure=value,
        **{key: f"{value}-{key}" for key in UPGRADE_ENV},
    )
    assert got == {
        **{var: f"{value}-{key}" for key, var in UPGRADE_ENV.items()},
        "PGSTEADY_PROJECT": value,
        "PGSTEADY_CONTAINER": f"{value}-c",
        "PGSTEADY_COMPOSE": value,
        "PGSTEADY_COMPOSE_FILE": f"/{value}",
        "PGSTEADY_STATE_DIR": f"/s/{value}",
        "PGSTEADY_WATCHDOG_ON_FAILURE": value,
    }


# --------------------------------------------------------------------------------------
# 4. cron: the line parses as cron reads it, and sh gets back the exact arguments
# --------------------------------------------------------------------------------------


def _cron_arguments(text: str) -> tuple[list[str], str]:
    """Parse the job line as cron does, run its command words through sh, return
    (arguments, log tag)."""
    lines = [ln for ln in text.splitlines() if ln and not ln.startswith("#") and "=" not in ln]
    assert len(lines) == 1, text
    fields = lines[0].split(None, 6)
    assert fields[5] == "root"
    command = fields[6]
    assert not re.search(r"(?<!\\)%", command), "unescaped % becomes a line break in cron"
    command = command.replace("\\%", "%")
    assert subprocess.run(["sh", "-n", "-c", command]).returncode == 0
    words, _, tail = command.partition(" 2>&1 | logger -t ")
    out = subprocess.run(
        ["sh", "-c", f'set -- {words}; printf "%s\\0" "$@"'], capture_output=True, check=True
    ).stdout.decode()
    tag = subprocess.run(
        ["sh", "-c", f'printf "%s" {tail}'], capture_output=True, check=True
    ).stdout.decode()
    return out.split("\0")[:-1], tag


@pytest.mark.parametrize("name", TRICKY_NAMES[:4])
def test_cron_jobs_of_accepted_settings_round_trip(name: str) -> None:
    s = _settings(compose_project=name, app_dir=f"/srv/{name}/-x.y_z")
    for job in (watchdog_job(s), backup_job(s)):
        args, tag = _cron_arguments(render_cron(job))
        assert args == list(job.command)
        assert tag == job.log_tag


def test_cron_template_round_trips_any_one_line_argument() -> None:
    job = Job(unit="u", description="d", schedule="@daily", command=tuple(ONE_LINE), log_tag="t")
    args, tag = _cron_arguments(render_cron(job))
    assert args == ONE_LINE
    assert tag == "t"


# --------------------------------------------------------------------------------------
# 5. backup.json: free text survives JSON
# --------------------------------------------------------------------------------------


def test_backup_config_round_trips_the_failure_command() -> None:
    for value in ONE_LINE:
        if "%" in value:
            continue
        command = f"logger -t pgsteady {shlex.quote(value)}"
        s = _settings(backup_on_failure_command=command)
        assert json.loads(render_backup_config(s))["on_failure_command"] == command


# --------------------------------------------------------------------------------------
# 6. postgresql.conf and SQL against the real Postgres 15 binaries
# --------------------------------------------------------------------------------------

needs_pg = pytest.mark.skipif(not available(), reason="Postgres 15 server binaries missing")


@pytest.fixture(scope="module")
def server() -> Iterator[PgServer]:
    srv = PgServer()
    base = _settings(postgres_version=15, postgres_memory_limit="1GB")
    conf = render_postgresql_conf(base).replace("/etc/pgsteady/pg_hba.conf", str(srv.hba_file))
    tls = srv.make_tls(["localhost"])
    conf = conf.replace(KEY_MOUNT, str(tls / KEY_FILE)).replace(TLS_MOUNT, str(tls))
    conf += f"\nport = {srv.port}\nlisten_addresses = '127.0.0.1'\n"
    srv.write(conf, render_pg_hba_conf(base))  # each test below writes its own and reloads
    srv.start()
    try:
        yield srv
    finally:
        srv.cleanup()


def _show_config(srv: PgServer, conf: str, name: str) -> str:
    """What ``postgres -C name`` reads from ``conf`` (a second data dir's config file)."""
    path = srv.root / "quoting.conf"
    tls = srv.root / "tls"
    conf = conf.replace(KEY_MOUNT, str(tls / KEY_FILE)).replace(TLS_MOUNT, str(tls))
    path.write_text(conf.replace("/etc/pgsteady/pg_hba.conf", str(srv.hba_file)))
    shutil.chown(path, OS_USER, OS_USER)
    proc = subprocess.run(
        ["runuser", "-u", OS_USER, "--", str(PG_BIN / "postgres"), "-D", str(srv.data),
         "-c", f"config_file={path}", "-C", name],
        capture_output=True, text=True, cwd="/",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.rstrip("\n")


@needs_pg
@pytest.mark.parametrize("value", ONE_LINE, ids=range(len(ONE_LINE)))
def test_postgresql_conf_round_trips_override_strings(server: PgServer, value: str) -> None:
    s = _settings(postgres_version=15, postgres_settings={"log_line_prefix": value})
    assert _show_config(server, render_postgresql_conf(s), "log_line_prefix") == value


PASSWORD = 'it\'s "$HOME" `id` $(id) \\ : # - yes ~ % {a: b} ünï'


@needs_pg
@pytest.mark.parametrize(
    ("user", "readonly", "database"),
    [("select", "user", "all"), ("current_user", "session_user", "null"), ("_", "yes", "on")],
)
def test_init_db_sql_round_trips_names_passwords_and_schema_paths(
    server: PgServer, tmp_path: Path, user: str, readonly: str, database: str
) -> None:
    # Settings only accept plain schema file names; the template still quotes any path
    # safely for psql's \i command, which is what the nasty names below prove.
    schema_names = [f"/src/{v}.sql" for v in NASTY if v not in ("a\nb",)] + ["/src/a\nb.sql"]
    s = _settings(
        postgres_user=user,
        postgres_readonly_user=readonly,
        postgres_db=database,
        postgres_extensions=["pg_trgm"],
    )
    work = server.root / f"q-{user}"
    (work / "schema").mkdir(parents=True)
    own(work, 0o755)
    own(work / "schema", 0o755)
    paths = []
    for i, name in enumerate(f"{i:02d}-{Path(n).name}" for i, n in enumerate(schema_names, 1)):
        path = work / "schema" / name
        path.write_text(f"CREATE TABLE IF NOT EXISTS t{i} (id int);\n")
        paths.append(str(own(path)))
    secrets = {}
    for role in ("app", "ro"):
        secret = work / f"{role}_password"
        secret.write_text(PASSWORD + role + "\n")
        secrets[role] = str(own(secret, 0o600))
    sql = render(
        "init_db.sql.j2",
        app_user=s.postgres_user,
        app_password_file=secrets["app"],
        readonly_user=s.postgres_readonly_user,
        readonly_password_file=secrets["ro"],
        database=s.postgres_db,
        extensions=s.postgres_extensions,
    )
    script = work / "init_db.sql"
    script.write_text(sql)
    own(script)
    # The schema files run in a session logged in as the app role (pgsteady-ctl
    # apply-schema): the rendered script's \i lines, its password from a 0600 passfile.
    schema_psql = work / "schema.psql"
    schema_psql.write_text(render("schema_files.psql.j2", schema_files=paths))
    own(schema_psql)
    passfile = work / "pgpass"
    escaped = (PASSWORD + "app").replace("\\", "\\\\").replace(":", "\\:")
    passfile.write_text(f"*:*:*:*:{escaped}\n")
    passfile.chmod(0o600)
    # pg_hba.conf names these roles and database: "all", "select" ... must stay names.
    server.write_hba(render_pg_hba_conf(s))
    server.reload()
    for _ in range(2):  # idempotent, whatever the names
        proc = server.psql_file(script)
        assert proc.returncode == 0, proc.stderr
        proc = subprocess.run(
            [str(PG_BIN / "psql"), "-h", "127.0.0.1", "-p", str(server.port), "-U", user,
             "-d", database, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", str(schema_psql)],
            capture_output=True, text=True, cwd="/", timeout=60,
            env={"PATH": "/usr/bin:/bin", "PGPASSFILE": str(passfile)},
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
    for role, login in (("app", user), ("ro", readonly)):
        with psycopg2.connect(
            host="127.0.0.1", port=server.port, user=login, password=PASSWORD + role,
            dbname=database, connect_timeout=5,
        ) as conn, conn.cursor() as cur:  # fmt: skip
            cur.execute("SELECT current_user, current_database()")
            assert cur.fetchone() == (login, database)
            cur.execute("SELECT count(*) FROM pg_tables WHERE tablename ~ '^t[0-9]+$'")
            assert cur.fetchone()[0] == len(schema_names)
        conn.close()
