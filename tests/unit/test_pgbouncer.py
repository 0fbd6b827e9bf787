"""PgBouncer's settings, derived pool sizes and rendered files (issue 18, item 1).

The deployed pooler is tested in tests/e2e/test_pgbouncer_deploy.py; here: what the deploy
refuses before touching a host, and what it would write.
"""

from __future__ import annotations

import configparser

import pytest
import yaml

from pgsteady.monitor.collect import collect_script
from pgsteady.postgres.conf_files import render_init_db_sql, render_pg_hba_conf
from pgsteady.settings import HostFacts, Settings, SettingsError, build_settings
from pgsteady.stack import pgbouncer, pooler_status
from pgsteady.stack.compose import render_compose, render_ctl_env
from pgsteady.stack.hostfiles import layout

FACTS = HostFacts(ram_mb=4096, cpus=2)


def settings(**data) -> Settings:
    return build_settings(data, FACTS)


def errors_for(**data) -> list[str]:
    with pytest.raises(SettingsError) as exc:
        build_settings(data, FACTS)
    return exc.value.errors


def ini(s: Settings) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(pgbouncer.render_config(s))
    return parser


# --- settings -----------------------------------------------------------------------


def test_on_by_default_on_its_own_port_beside_the_direct_one() -> None:
    s = settings()
    assert s.pgbouncer_enabled and s.pgbouncer_port == 6432 and s.postgres_port == 5432
    doc = yaml.safe_load(render_compose(s))
    assert doc["services"]["pgbouncer"]["ports"] == ["127.0.0.1:6432:6432"]
    assert doc["services"]["postgres"]["ports"] == ["127.0.0.1:5432:5432"]
    # Published on the server's address, whatever it is.
    doc = yaml.safe_load(
        render_compose(
            settings(postgres_bind="10.0.0.5", postgres_allowed_networks=["10.0.0.0/24"])
        )
    )
    assert doc["services"]["pgbouncer"]["ports"] == ["10.0.0.5:6432:6432"]


def test_pool_sizes_derive_from_max_connections() -> None:
    s = settings()  # web: max_connections 200
    assert pgbouncer.server_max_connections(s) == (200, 3)
    assert pgbouncer.default_pool_size(s) == (200 - 3 - 10 - 5) // 2 == 91
    assert pgbouncer.max_client_conn(s) == 2000
    s = settings(postgres_max_connections=50)
    assert pgbouncer.default_pool_size(s) == (50 - 3 - 10 - 5) // 2
    assert pgbouncer.max_client_conn(s) == 1000  # at least 1,000 clients
    # A postgresql.conf override counts, with the superuser's reserved slots.
    s = settings(postgres_settings={"max_connections": 100, "superuser_reserved_connections": 5})
    assert pgbouncer.default_pool_size(s) == (100 - 5 - 10 - 5) // 2
    s = settings(pgbouncer_default_pool_size=20, pgbouncer_max_client_conn=5000)
    assert (pgbouncer.default_pool_size(s), pgbouncer.max_client_conn(s)) == (20, 5000)
    assert pgbouncer.nofile(s) >= 5000 + 20 + pgbouncer.SESSION_POOL_SIZE


def test_a_pool_above_the_servers_spare_connections_is_refused() -> None:
    errors = errors_for(postgres_max_connections=50, pgbouncer_default_pool_size=40)
    assert len(errors) == 1, errors
    assert errors[0].startswith("pgbouncer_default_pool_size = 40: ")
    assert "accepted: 1 to 32" in errors[0]
    assert settings(postgres_max_connections=50, pgbouncer_default_pool_size=32)
    # max_connections too small for any pool.
    errors = errors_for(postgres_max_connections=18)
    assert errors[0].startswith("postgres_max_connections = 18: ")
    assert settings(postgres_max_connections=18, pgbouncer_enabled=False)


def test_bad_values_are_refused_with_key_value_and_what_is_accepted() -> None:
    (err,) = errors_for(pgbouncer_pool_mode="statement")
    assert "pgbouncer_pool_mode" in err and "'transaction'" in err and "'session'" in err
    (err,) = errors_for(pgbouncer_port=80)
    assert err.startswith("pgbouncer_port") and "1024" in err
    (err,) = errors_for(pgbouncer_max_client_conn=5, pgbouncer_default_pool_size=1)
    assert err.startswith("pgbouncer_max_client_conn")


@pytest.mark.parametrize("key", ["postgres_uid", "metrics_exporter_uid"])
def test_the_pooler_needs_a_uid_of_its_own(key: str) -> None:
    uid = settings().model_dump()[key]
    (err,) = errors_for(pgbouncer_uid=uid)
    assert err.startswith(f"pgbouncer_uid = {uid}: also {key}")


@pytest.mark.parametrize("key", ["postgres_port", "postgres_exporter_port"])
def test_a_port_taken_by_another_service_is_refused(key: str) -> None:
    errors = errors_for(**{key: 6432})
    assert any(e.startswith(f"pgbouncer_port = 6432: also {key}'s port") for e in errors), errors


@pytest.mark.parametrize("source", ["registry", "archive"])
def test_images_without_pgbouncer_are_refused(source: str) -> None:
    data = {
        "postgres_image_source": source,
        "postgres_image": "postgres:17",
        "postgres_image_archive": "/srv/pg.tar",
        "metrics_enabled": False,
        "pgbackrest_enabled": False,
    }
    (err,) = errors_for(**data)
    assert err.startswith(f"postgres_image_source = {source!r}: PgBouncer")
    assert build_settings({**data, "pgbouncer_enabled": False}, FACTS)


# --- rendered files ------------------------------------------------------------------


def test_config_pools_the_app_database_and_a_session_database() -> None:
    s = settings(pgbouncer_default_pool_size=20)
    cfg = ini(s)
    app, session = cfg["databases"]["app"], cfg["databases"]["app_session"]
    assert "host=/var/run/postgresql" in app and "dbname=app" in app
    assert "pool_mode=transaction" in app and "max_db_connections=20" in app
    assert "pool_mode=session" in session and "dbname=app" in session
    main = cfg["pgbouncer"]
    assert main["default_pool_size"] == "20" and main["reserve_pool_size"] == "0"
    assert main["client_tls_sslmode"] == "require"
    assert main["auth_type"] == "hba"
    assert main["auth_user"] == pgbouncer.AUTH_USER
    assert pgbouncer.AUTH_FUNCTION in main["auth_query"]
    assert main["auth_file"] == "/run/secrets/pgbouncer_userlist"
    assert ini(settings(pgbouncer_pool_mode="session"))["pgbouncer"]["pool_mode"] == "session"


def test_hba_admits_scram_over_tls_only_and_never_the_auth_files_users_over_tcp() -> None:
    rules = [line.split() for line in pgbouncer.render_hba(settings()).splitlines()[1:]]
    methods = {r[-1] for r in rules}
    assert methods == {"scram-sha-256", "reject"}  # no trust, no plain password
    allow = [r for r in rules if r[-1] != "reject"]
    assert all(r[0] == "hostssl" for r in allow if r[0] != "local")
    assert allow[0] == ["local", "pgbouncer", pgbouncer.ADMIN_USER, "scram-sha-256"]
    first_tcp = next(i for i, r in enumerate(rules) if r[0].startswith("host"))
    for user in (pgbouncer.AUTH_USER, pgbouncer.ADMIN_USER):
        hit = next(r for r in rules[first_tcp:] if r[2] in (user, "all"))
        assert hit[-1] == "reject", (user, hit)


def test_hba_admits_the_servers_allowed_networks_only() -> None:
    rules = pgbouncer.render_hba(settings(postgres_allowed_networks=["10.1.0.0/16"]))
    allowed = [r.split()[3] for r in rules.splitlines() if r.startswith("hostssl")]
    assert allowed == ["127.0.0.1/32", "::1/128", "10.1.0.0/16"]
    # No samenet in PgBouncer: the default admits any address that reaches postgres_bind.
    allowed = [r.split()[3] for r in pgbouncer.render_hba(settings()).splitlines()
               if r.startswith("hostssl")]  # fmt: skip
    assert "0.0.0.0/0" in allowed and "samenet" not in allowed


def _tcp_allow(text: str) -> set[str]:
    """The addresses a rendered pg_hba.conf / pooler hba admits over TCP (first match)."""
    rows = [r.split() for r in text.splitlines() if r.startswith("host")]
    return {r[3] for r in rows if r[-1] != "reject" and r[2] != '"postgres"'}


def test_public_bind_admits_what_the_server_admits() -> None:
    """postgres_bind 0.0.0.0 with one allowed network: the pooler admits loopback and that
    network, exactly the server's pg_hba.conf addresses (review R6-M1)."""
    s = settings(postgres_bind="0.0.0.0", postgres_allowed_networks=["10.20.0.0/24"])
    pooler = _tcp_allow(pgbouncer.render_hba(s))
    assert pooler == {"127.0.0.1/32", "::1/128", "10.20.0.0/24"}
    assert pooler == _tcp_allow(render_pg_hba_conf(s))
    # and the last word for every other address is reject
    assert pgbouncer.render_hba(s).splitlines()[-2:] == [
        "host all all 0.0.0.0/0 reject",
        "host all all ::/0 reject",
    ]


def test_the_service_is_confined() -> None:
    s = settings()
    svc = yaml.safe_load(render_compose(s))["services"]["pgbouncer"]
    assert svc["user"] == "64188:64188"
    assert svc["read_only"] is True
    assert svc["cap_drop"] == ["ALL"]
    assert svc["security_opt"] == ["no-new-privileges:true"]
    assert svc["restart"] == s.postgres_restart_policy
    assert svc["mem_limit"] == pgbouncer.mem_limit(s)
    assert svc["ulimits"]["nofile"]["soft"] > pgbouncer.max_client_conn(s)
    assert "healthcheck" in svc
    assert "pgrun:/var/run/postgresql:ro" in svc["volumes"]
    # The server's key is not mounted: the pooler's own key and certificate are.
    assert not any("private/server.key" in v for v in svc["volumes"])
    assert any("private/pgbouncer.key" in v for v in svc["volumes"])
    assert any("/pgbouncer.crt:" in v for v in svc["volumes"])
    assert svc["secrets"] == ["pgbouncer_userlist"]
    assert "environment" not in svc


def test_its_files_are_root_owned_for_its_gid_and_gone_when_off() -> None:
    s = settings()
    own = {o.path.rsplit("/", 1)[1]: o for o in layout(s)}
    for name in ("pgbouncer.ini", "pgbouncer_hba.conf", "pgbouncer.key", "pgbouncer_userlist"):
        assert own[name].uid == 0 and own[name].gid == 64188, name
        assert not int(own[name].mode, 8) & 0o027, name
    off = settings(pgbouncer_enabled=False)
    assert not any("pgbouncer" in o.path for o in layout(off))
    doc = yaml.safe_load(render_compose(off))
    assert "pgbouncer" not in doc["services"]
    assert "pgbouncer_auth_password" not in doc["secrets"]


def test_init_sql_and_pg_hba_give_the_auth_role_one_function_on_the_socket() -> None:
    s = settings()
    sql = render_init_db_sql(s)
    assert "SECURITY DEFINER SET search_path = pg_catalog, pg_temp" in sql
    assert f'REVOKE ALL ON FUNCTION "{pgbouncer.AUTH_SCHEMA}".user_secret(text) FROM PUBLIC' in sql
    assert (
        f'GRANT EXECUTE ON FUNCTION "{pgbouncer.AUTH_SCHEMA}".user_secret(text) TO "pgbouncer_auth"'
        in sql
    )
    assert "NOT a.rolsuper AND NOT a.rolreplication" in sql
    hba = [line.split() for line in render_pg_hba_conf(s).splitlines() if "pgbouncer" in line]
    assert hba == [["local", '"app"', '"pgbouncer_auth"', "scram-sha-256"]]
    off = settings(pgbouncer_enabled=False)
    assert "pgbouncer_auth" not in render_pg_hba_conf(off)
    assert "ALTER ROLE pgbouncer_auth NOLOGIN" in render_init_db_sql(off)


def test_admin_console_command_carries_no_secret() -> None:
    argv = pgbouncer.admin_command(settings(), "SHOW POOLS")
    assert argv[:5] == ["docker", "exec", "-u", "64188:64188", "pgsteady-pgbouncer"]
    assert argv[-1] == "SHOW POOLS"
    assert "PGPASSWORD" not in " ".join(argv)
    rows = pgbouncer.parse_show("database|user|sv_active|sv_idle\napp|app|3|4\n")
    assert rows == [{"database": "app", "user": "app", "sv_active": "3", "sv_idle": "4"}]
    assert pgbouncer.server_connections(rows[0]) == 7


def test_ctl_knows_the_pooler_to_pause_and_no_secret() -> None:
    env = render_ctl_env(settings(), "docker compose")
    assert "PGSTEADY_POOLER=pgsteady-pgbouncer\n" in env
    assert "PGSTEADY_POOLER_DB=app\n" in env
    assert "/run/secrets/pgbouncer_userlist" in env  # read inside the container
    assert "PGPASSWORD" not in env
    off = render_ctl_env(settings(pgbouncer_enabled=False), "docker compose")
    assert "PGSTEADY_POOLER=''\n" in off or "PGSTEADY_POOLER=\n" in off


# --- make status / make monitor ------------------------------------------------------

SHOW_POOLS = (
    "database|user|cl_active|cl_waiting|sv_active|sv_idle|sv_used|sv_tested|sv_login|maxwait|pool_mode\n"
    "app|app|950|50|91|0|0|0|0|12|transaction\n"
    "app|pgbouncer_auth|0|0|0|1|0|0|0|0|transaction\n"
    "app_session|app|1|0|1|0|0|0|0|0|session\n"
    "pgbouncer|pgbouncer|1|0|0|0|0|0|0|0|statement\n"
)


def test_status_shows_pool_usage_and_waiting_clients() -> None:
    st = pooler_status.parse({"rc": 0, "out": SHOW_POOLS, "err": ""})
    assert [(p.database, p.user) for p in st.pools] == [("app", "app"), ("app_session", "app")]
    assert (st.waiting, st.max_wait_seconds) == (50, 12)
    line = pooler_status.summary(st)
    assert "app/app 950 clients on 91 servers" in line and "50 waiting, longest 12s" in line
    assert "raise pgbouncer_default_pool_size" in (pooler_status.problem(st) or "")
    calm = pooler_status.parse({"rc": 0, "out": SHOW_POOLS.replace("|50|91|", "|0|91|")
                                .replace("|12|", "|0|"), "err": ""})  # fmt: skip
    assert pooler_status.problem(calm) is None
    down = pooler_status.parse({"rc": 2, "out": "", "err": "psql: error: no such file\n"})
    assert down.enabled and "admin console unreachable" in (pooler_status.problem(down) or "")
    assert not pooler_status.parse({"rc": 0, "out": "disabled\n", "err": ""}).enabled


def test_the_collect_script_asks_the_pooler_only_when_it_runs() -> None:
    script = collect_script(settings())
    assert "section pooler pooler" in script
    assert "POOLER=pgsteady-pgbouncer" in script
    assert "PGPASSWORD" not in script
    assert "POOLER=''" in collect_script(settings(pgbouncer_enabled=False))


@pytest.mark.parametrize(
    ("bind", "networks"),
    [("0.0.0.0", ["samenet"]), ("10.0.0.5", ["10.0.0.0/24", "samehost"]), ("::", ["samenet"])],
)
def test_samenet_with_a_bind_beyond_loopback_is_refused(bind: str, networks: list[str]) -> None:
    """PgBouncer has no samenet/samehost: with any bind but loopback the pooler would admit
    every address that reaches it (review R6-M1), so the combination is refused before any
    operation, naming both keys, the value and what is accepted."""
    with pytest.raises(SettingsError) as exc:
        settings(postgres_bind=bind, postgres_allowed_networks=networks)
    [error] = [e for e in exc.value.errors if e.startswith("postgres_allowed_networks")]
    assert f"postgres_bind = {bind!r}" in error and repr(networks) in error
    assert "CIDRs" in error and "pgbouncer_enabled = False" in error


@pytest.mark.parametrize(
    "data",
    [
        {"postgres_bind": "127.0.0.1"},
        {"postgres_bind": "::1", "postgres_allowed_networks": ["samehost"]},
        {"postgres_bind": "0.0.0.0", "postgres_allowed_networks": ["10.0.0.0/8", "fd00::/8"]},
        {"postgres_bind": "0.0.0.0", "pgbouncer_enabled": False},
    ],
)
def test_samenet_is_fine_on_loopback_or_without_the_pooler(data: dict) -> None:
    settings(**data)
