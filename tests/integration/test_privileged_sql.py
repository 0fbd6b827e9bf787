"""No superuser session of pgsteady runs code the application role can define.

The application role owns its database and may create objects in ``public``. Here it
plants overloads of the functions, aggregates and operators pgsteady's superuser SQL
uses, each of which records its caller and, when called by a superuser, escalates with
``COPY ... TO PROGRAM`` (which writes a marker file in the container). A control query
proves the traps fire for an unpinned superuser session; then every privileged path
runs against the real server: backup, verify, drill and restore (the backup tool as
cron runs it), the monitor's collect script, the verify suite's psql, and init_db.sql
(applied as the entrypoint and as ``pgsteady-ctl apply-sql`` do). No trap may fire.
"""

from __future__ import annotations

import importlib.util
import subprocess
import types
from pathlib import Path

import pytest
from backup_env import DOCKER, REPO, Postgres, Tool, docker, find_image
from debian_images import docker_client, ensure_debian_image

from pgsteady.monitor.collect import collect_script, parse_sections
from pgsteady.postgres.parameters import hba_rules
from pgsteady.render import render
from pgsteady.stack import pgbouncer

IMAGE = find_image()
pytestmark = [
    pytest.mark.docker,
    pytest.mark.skipif(IMAGE is None, reason="no image labelled io.pgsteady.recipe"),
]

MARKER = "/tmp/pgsteady-pwned"
SAFE = "-c search_path=pg_catalog,pg_temp"

#: Run as the application role (SET ROLE app) in a database it can create objects in.
PLANT = r"""
CREATE TABLE public.pwned (fn text, cu name, su name);
GRANT INSERT ON public.pwned TO PUBLIC;
CREATE FUNCTION public.pgs_trap(fn text) RETURNS void LANGUAGE plpgsql
SET search_path = pg_catalog AS $$
DECLARE was name := current_user;
BEGIN
  -- SET ROLE is no boundary: first drop back to the session's LOGIN role, if allowed.
  BEGIN RESET ROLE; EXCEPTION WHEN OTHERS THEN NULL; END;
  BEGIN SET SESSION AUTHORIZATION DEFAULT; EXCEPTION WHEN OTHERS THEN NULL; END;
  IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
     OR (SELECT rolsuper FROM pg_roles WHERE rolname = session_user) THEN
    BEGIN
      EXECUTE format('COPY (SELECT %L) TO PROGRAM %L', fn, 'cat >> /tmp/pgsteady-pwned');
    EXCEPTION WHEN OTHERS THEN NULL;
    END;
    BEGIN ALTER ROLE app SUPERUSER; EXCEPTION WHEN OTHERS THEN NULL; END;
    BEGIN
      INSERT INTO public.pwned VALUES (fn, current_user, session_user);
    EXCEPTION WHEN OTHERS THEN NULL;  -- e.g. a read-only transaction
    END;
  END IF;
  BEGIN EXECUTE format('SET ROLE %I', was); EXCEPTION WHEN OTHERS THEN NULL; END;
END $$;

CREATE FUNCTION public.format(text, name, name) RETURNS text LANGUAGE plpgsql AS
$$ BEGIN PERFORM public.pgs_trap('format(text,name,name)');
   RETURN pg_catalog.format($1, $2, $3); END $$;
CREATE FUNCTION public.format(text, name) RETURNS text LANGUAGE plpgsql AS
$$ BEGIN PERFORM public.pgs_trap('format(text,name)'); RETURN pg_catalog.format($1, $2); END $$;
CREATE FUNCTION public.format(text, text) RETURNS text LANGUAGE plpgsql AS
$$ BEGIN PERFORM public.pgs_trap('format(text,text)'); RETURN pg_catalog.format($1, $2); END $$;
CREATE FUNCTION public.format(text, text, text) RETURNS text LANGUAGE plpgsql AS
$$ BEGIN PERFORM public.pgs_trap('format(text,text,text)');
   RETURN pg_catalog.format($1, $2, $3); END $$;
CREATE FUNCTION public.query_to_xml(text, boolean, boolean, text) RETURNS xml
LANGUAGE plpgsql AS $$ BEGIN PERFORM public.pgs_trap('query_to_xml');
   RETURN pg_catalog.query_to_xml($1, $2, $3, $4); END $$;
CREATE FUNCTION public.xpath(text, xml) RETURNS xml[] LANGUAGE plpgsql AS
$$ BEGIN PERFORM public.pgs_trap('xpath'); RETURN pg_catalog.xpath($1, $2); END $$;
CREATE FUNCTION public.current_setting(text) RETURNS text LANGUAGE plpgsql AS
$$ BEGIN PERFORM public.pgs_trap('current_setting');
   RETURN pg_catalog.current_setting($1); END $$;
CREATE FUNCTION public.pg_get_userbyid(oid) RETURNS name LANGUAGE plpgsql AS
$$ BEGIN PERFORM public.pgs_trap('pg_get_userbyid');
   RETURN pg_catalog.pg_get_userbyid($1); END $$;
CREATE FUNCTION public.pg_terminate_backend(integer) RETURNS boolean LANGUAGE plpgsql AS
$$ BEGIN PERFORM public.pgs_trap('pg_terminate_backend'); RETURN false; END $$;
CREATE FUNCTION public.pg_size_pretty(bigint) RETURNS text LANGUAGE plpgsql AS
$$ BEGIN PERFORM public.pgs_trap('pg_size_pretty');
   RETURN pg_catalog.pg_size_pretty($1); END $$;
CREATE FUNCTION public.pg_database_size(oid) RETURNS bigint LANGUAGE plpgsql AS
$$ BEGIN PERFORM public.pgs_trap('pg_database_size');
   RETURN pg_catalog.pg_database_size($1); END $$;
CREATE FUNCTION public."left"(text, integer) RETURNS text LANGUAGE plpgsql AS
$$ BEGIN PERFORM public.pgs_trap('left'); RETURN pg_catalog."left"($1, $2); END $$;
CREATE FUNCTION public.string_agg_sf(text, text, text) RETURNS text LANGUAGE plpgsql AS
$$ BEGIN PERFORM public.pgs_trap('string_agg'); RETURN $1 || $3 || $2; END $$;
CREATE AGGREGATE public.string_agg(text, text) (SFUNC = public.string_agg_sf, STYPE = text);

-- Aggregates: json_object_agg(text, bigint) beats the catalog's ("any", "any").
CREATE FUNCTION public.pgs_joa_sf(text, text, bigint) RETURNS text LANGUAGE plpgsql AS
$$ BEGIN PERFORM public.pgs_trap('json_object_agg'); RETURN '{}'; END $$;
CREATE FUNCTION public.pgs_joa_ff(text) RETURNS json LANGUAGE sql AS $$ SELECT '{}'::json $$;
CREATE AGGREGATE public.json_object_agg(text, bigint)
  (SFUNC = public.pgs_joa_sf, STYPE = text, FINALFUNC = public.pgs_joa_ff);
CREATE FUNCTION public.pgs_count_sf(bigint) RETURNS bigint LANGUAGE plpgsql AS
$$ BEGIN PERFORM public.pgs_trap('count(*)'); RETURN $1 + 1; END $$;
CREATE AGGREGATE public.count(*) (SFUNC = public.pgs_count_sf, STYPE = bigint, INITCOND = 0);
CREATE FUNCTION public.pgs_sum_sf(numeric, bigint) RETURNS numeric LANGUAGE plpgsql AS
$$ BEGIN PERFORM public.pgs_trap('sum(bigint)'); RETURN coalesce($1, 0) + $2; END $$;
CREATE AGGREGATE public.sum(bigint) (SFUNC = public.pgs_sum_sf, STYPE = numeric);

-- Operators: oid = integer beats the catalog's oid = oid (which needs a cast).
CREATE FUNCTION public.pgs_eq_oid_int(oid, integer) RETURNS boolean LANGUAGE plpgsql AS
$$ BEGIN PERFORM public.pgs_trap('oid = integer'); RETURN $1 = $2::oid; END $$;
CREATE OPERATOR public.= (LEFTARG = oid, RIGHTARG = integer, FUNCTION = public.pgs_eq_oid_int);
CREATE FUNCTION public.pgs_eq_name_text(name, text) RETURNS boolean LANGUAGE plpgsql AS
$$ BEGIN PERFORM public.pgs_trap('name = text'); RETURN $1::text = $2; END $$;
CREATE OPERATOR public.= (LEFTARG = name, RIGHTARG = text, FUNCTION = public.pgs_eq_name_text);
CREATE FUNCTION public.pgs_cat(bigint, text) RETURNS text LANGUAGE plpgsql AS
$$ BEGIN PERFORM public.pgs_trap('bigint || text'); RETURN $1::text || $2; END $$;
CREATE OPERATOR public.|| (LEFTARG = bigint, RIGHTARG = text, FUNCTION = public.pgs_cat);
CREATE FUNCTION public.pgs_like(name, text) RETURNS boolean LANGUAGE plpgsql AS
$$ BEGIN PERFORM public.pgs_trap('name ~~ text'); RETURN $1::text ~~ $2; END $$;
CREATE OPERATOR public.~~ (LEFTARG = name, RIGHTARG = text, FUNCTION = public.pgs_like);

-- Loading rows (pg_restore's data section) evaluates CHECK constraints.
CREATE FUNCTION public.pgs_check(int) RETURNS boolean LANGUAGE plpgsql AS
$$ BEGIN PERFORM public.pgs_trap('CHECK constraint'); RETURN true; END $$;
CREATE TABLE public.checked (x int CHECK (public.pgs_check(x)));
INSERT INTO public.checked VALUES (1);
-- ... domain checks and generated columns.
CREATE DOMAIN public.pgs_dom AS int CHECK (public.pgs_check(VALUE));
CREATE TABLE public.domained (x public.pgs_dom);
INSERT INTO public.domained VALUES (1);
CREATE FUNCTION public.pgs_gen(int) RETURNS int IMMUTABLE LANGUAGE plpgsql AS
$$ BEGIN PERFORM public.pgs_trap('generated column'); RETURN $1; END $$;
CREATE TABLE public.generated (x int, y int GENERATED ALWAYS AS (public.pgs_gen(x)) STORED);
INSERT INTO public.generated (x) VALUES (1);
CREATE TABLE public.items (id int PRIMARY KEY, name text);
INSERT INTO public.items SELECT g, 'n' || g FROM generate_series(1, 50) g;
"""


#: Rows owned by another role, by the superuser, and a large object: a restore loads
#: each as its owner (the superuser's and the large object's as the superuser).
OTHER_OWNERS = """
CREATE ROLE other;
-- a non-default ACL on schema public: an archive entry owned by pg_database_owner
GRANT CREATE ON SCHEMA public TO other;
CREATE TABLE public.theirs (x int);
INSERT INTO public.theirs VALUES (1), (2), (3);
ALTER TABLE public.theirs OWNER TO other;
CREATE TABLE public.admin_only (x int);
INSERT INTO public.admin_only VALUES (1), (2);
SET ROLE app;
SELECT lo_from_bytea(0, 'large object'::bytea);
"""


def _fired(pg: Postgres) -> list[str]:
    """Superuser calls the traps recorded: in the marker file, in public.pwned, and
    whether the application role made itself a superuser."""
    proc = docker("exec", pg.name, "cat", MARKER, check=False)
    calls = [f"superuser call: {line}" for line in proc.stdout.splitlines()]
    if pg.value("SELECT rolsuper FROM pg_roles WHERE rolname = 'app'", "postgres") == "t":
        calls.append("app became a superuser")
    for db in ("app", "postgres"):
        rows = pg.value(
            "SELECT fn || ' by ' || cu FROM public.pwned WHERE cu IN "
            "(SELECT rolname FROM pg_roles WHERE rolsuper) ORDER BY 1",
            db,
        )
        calls += [f"{db}: {row}" for row in rows.splitlines()]
    return calls


def _reset(pg: Postgres) -> None:
    docker("exec", pg.name, "rm", "-f", MARKER)
    pg.sql("ALTER ROLE app NOSUPERUSER", "postgres")
    for db in ("app", "postgres"):
        pg.sql("DELETE FROM public.pwned", db)


def _plant(container: Postgres) -> None:
    """The application role, its traps in ``app`` and ``postgres``, rows of other owners."""
    container.sql(
        "CREATE ROLE app LOGIN PASSWORD 'app-pw'; ALTER DATABASE app OWNER TO app; "
        "GRANT CREATE ON SCHEMA public TO app",  # postgres.public, as before PG 15
        "postgres",
    )
    for db in ("app", "postgres"):
        container.sql(f"SET ROLE app;\n{PLANT}", db)
    container.sql(OTHER_OWNERS, "app")
    _reset(container)  # planting in a SET ROLE session fired the traps (that is the point)


@pytest.fixture(scope="module")
def pg():
    container = Postgres(IMAGE)
    try:
        _plant(container)
        yield container
    finally:
        container.remove()


def test_the_traps_fire_for_an_unpinned_superuser_session(pg):
    """The control: an ordinary superuser session in the app database is hijacked."""
    _reset(pg)
    pg.sql("SELECT format('%I.%I', 'a'::name, 'b'::name)")
    pg.sql("SELECT 1 FROM pg_class WHERE oid = 0")
    fired = _fired(pg)
    assert "superuser call: format(text,name,name)" in fired
    assert "superuser call: oid = integer" in fired
    assert "app became a superuser" in fired
    _reset(pg)


def _ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def test_backup_tool_paths_never_run_app_code(tmp_path, pg):
    _reset(pg)
    tool = Tool.install(tmp_path / "app", pg.name, ["app"])
    _ok(tool.run("backup"))
    manifest = tool.status()["last_success"]["databases"]["app"]
    assert manifest["tables"] == 7  # items, checked, domained, generated, pwned, theirs, admin_only
    _ok(tool.run("verify"))
    assert _fired(pg) == []
    drill = tool.run("drill")  # restores the planted objects into a scratch DB, then counts
    assert _fired(pg) == [], "drill"
    _ok(drill)
    assert tool.status()["drill"]["databases"]["app"]["rows"] == 50 + 1 + 1 + 1 + 3 + 2
    restored = tool.run("restore", "--target-db", "app_copy")
    assert _fired(pg) == [], "restore into a new database"
    _ok(restored)
    forced = tool.run("restore", "--target-db", "app", "--force")
    assert _fired(pg) == [], "restore --force"
    _ok(forced)
    # The restore role is left without login, memberships or access to the restored DBs.
    assert (
        pg.value(
            "SELECT rolcanlogin, rolsuper, rolpassword IS NULL FROM pg_authid "
            "WHERE rolname = 'pgsteady_restore'",
            "postgres",
        )
        == "f|f|t"
    )
    assert (
        pg.value(
            "SELECT count(*) FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.member "
            "WHERE r.rolname = 'pgsteady_restore'",
            "postgres",
        )
        == "0"
    )
    assert "pgsteady_restore" not in pg.value(
        "SELECT string_agg(coalesce(datacl::text, ''), ' ') FROM pg_database", "postgres"
    )
    assert pg.value("SELECT count(*) FROM items") == "50"
    assert pg.value("SELECT y FROM generated") == "1"
    assert pg.value("SELECT tableowner FROM pg_tables WHERE tablename = 'theirs'") == "other"
    assert pg.value("SELECT convert_from(lo_get(oid), 'UTF8') FROM pg_largeobject_metadata") == (
        "large object"
    )
    assert _fired(pg) == []


@pytest.mark.parametrize("version", [15, 17], ids=lambda v: f"pg{v}")
def test_restore_on_empty_never_runs_app_code(tmp_path, version):
    """The Debian image's restore-on-empty loads the app's rows (its CHECK, domain and
    generated-column code) without ever giving that code the superuser."""
    image = ensure_debian_image(docker_client(), version)
    source = Postgres(image)
    restored = None
    try:
        _plant(source)
        tool = Tool.install(tmp_path / "app", source.name, ["app"])
        _ok(tool.run("backup"))
        assert _fired(source) == []
        restored = Postgres(
            image, "-e", "PGSTEADY_RESTORE_ON_EMPTY=1", "-v", f"{tool.backup_dir}:/backups:ro"
        )
        logs = docker("logs", restored.name).stdout
        assert "restore-on-empty: restored the newest backups" in logs
        assert docker("exec", restored.name, "cat", MARKER, check=False).stdout == ""
        assert restored.value("SELECT rolsuper FROM pg_roles WHERE rolname = 'app'") == "f"
        # (catalog names qualified: the restored app database holds the planted overloads)
        count = "SELECT pg_catalog.count(*) FROM public."
        assert restored.value(count + "pwned") == "0"
        assert restored.value(count + "items") == "50"
        assert restored.value(count + "domained") == "1"
        assert restored.value("SELECT y FROM public.generated WHERE x = 1") == "1"
        assert (
            restored.value(
                "SELECT tableowner FROM pg_catalog.pg_tables "
                "WHERE tablename OPERATOR(pg_catalog.=) 'theirs'::name"
            )
            == "other"
        )
        assert (
            restored.value(
                "SELECT pg_catalog.format('%s|%s|%s', rolcanlogin, rolsuper, (SELECT "
                "pg_catalog.count(*) FROM pg_catalog.pg_auth_members m WHERE m.member "
                "OPERATOR(pg_catalog.=) r.oid)) FROM pg_catalog.pg_roles r WHERE r.rolname "
                "OPERATOR(pg_catalog.=) 'pgsteady_restore'::name"
            )
            == "f|f|0"
        )
        assert docker("exec", restored.name, "cat", MARKER, check=False).stdout == ""
    finally:
        for container in (source, restored):
            if container is not None:
                container.remove()


def test_monitor_collect_never_runs_app_code(tmp_path, pg):
    # init_db.sql first: the performance section reads its pgsteady.statements view
    _ok(docker("exec", "-e", f"PGOPTIONS={SAFE}", "-u", "postgres", pg.name, "psql", "-X", "-q",
               "-v", "ON_ERROR_STOP=1", "-d", "postgres", "-f",
               _put(pg, "/tmp/init_db.sql", _render_init_db(pg)), check=False))  # fmt: skip
    _reset(pg)
    s = types.SimpleNamespace(
        container_name=pg.name,
        app_dir=str(tmp_path),
        backup_path=str(tmp_path),
        pgbackrest_enabled=False,
        postgres_db="app",
        # the pooler section too: its container (none here) is never the server's
        pgbouncer_enabled=True,
        pgbouncer_uid=64188,
        compose_project=f"{pg.name}-nopooler",
        postgres_cluster_name=None,  # a single host: no cluster section
    )
    script = collect_script(s)
    # the pooler section only asks PgBouncer's own admin console (database "pgbouncer" on
    # the pooler's socket, inside the pooler's container): SHOW POOLS never reaches Postgres
    pooler = script[script.index("pooler() {") :]
    assert '"$POOLER" sh -c "$POOLER_ADMIN"' in pooler and pg.name not in pooler
    assert f"-h {pgbouncer.RUN_DIR} -p {pgbouncer.PORT} " in pgbouncer.admin_script()
    assert "-d pgbouncer -c " in pgbouncer.admin_script()
    proc = subprocess.run(
        ["sh", "-s"], input=script, capture_output=True, text=True, timeout=120,
        env={"PATH": f"{Path(DOCKER).parent}:/usr/bin:/bin"},
    )  # fmt: skip
    sections = parse_sections(proc.stdout)
    assert (
        sections["pooler"]["rc"] != 0
        and f"{pg.name}-nopooler-pgbouncer" in (sections["pooler"]["err"])
    )
    sql = sections["sql"]
    assert sql["rc"] == 0, sql["err"]
    assert '"databases"' in sql["out"]
    performance = parse_sections(proc.stdout)["performance"]
    assert performance["rc"] == 0, performance["err"]
    # this image does not preload pg_stat_statements: the database figures only
    assert '"temp_bytes"' in performance["out"] and '"statements" : null' in performance["out"]
    assert _fired(pg) == []


def _verify_host_class() -> type:
    """The verify suite's Host (tests/verify/conftest.py), loaded under its own name."""
    spec = importlib.util.spec_from_file_location(
        "pgsteady_verify_conftest", REPO / "tests/verify/conftest.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.Host


class _LocalHost:
    """The slice of a testinfra host that the verify suite's Host uses, run locally."""

    def run(self, command: str) -> types.SimpleNamespace:
        proc = subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=60)
        return types.SimpleNamespace(rc=proc.returncode, stdout=proc.stdout, stderr=proc.stderr)


def test_verify_suite_psql_never_runs_app_code(pg):
    _reset(pg)
    host = _verify_host_class()(_LocalHost(), types.SimpleNamespace(container_name=pg.name))
    for db in ("app", "postgres"):
        rows = host.psql(
            "SELECT format('%I.%I', n.nspname, c.relname), count(*) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = 0 "
            "OR n.nspname LIKE 'public' GROUP BY 1 ORDER BY 1 LIMIT 1",
            db,
        )
        assert rows
    assert _fired(pg) == []


def _put(pg: Postgres, path: str, text: str) -> str:
    subprocess.run(
        [DOCKER, "exec", "-i", "-u", "postgres", pg.name, "sh", "-c", f"umask 077; cat > {path}"],
        input=text, text=True, check=True, capture_output=True,
    )  # fmt: skip
    return path


#: An operator schema file that reaches app code: a trigger (calling the trap) fires on
#: its seed INSERT, every time it is applied.
SCHEMA = r"""
CREATE TABLE IF NOT EXISTS stamped (id int, updated_at timestamptz);
CREATE OR REPLACE TRIGGER t BEFORE UPDATE ON stamped
  FOR EACH ROW EXECUTE FUNCTION pgsteady_set_updated_at();
CREATE TABLE IF NOT EXISTS seed (k text PRIMARY KEY);
CREATE OR REPLACE FUNCTION seed_trg() RETURNS trigger LANGUAGE plpgsql AS
$$ BEGIN PERFORM public.pgs_trap('schema file trigger'); RETURN NEW; END $$;
CREATE OR REPLACE TRIGGER seed_t BEFORE INSERT ON seed
  FOR EACH ROW EXECUTE FUNCTION seed_trg();
INSERT INTO seed VALUES ('a') ON CONFLICT DO NOTHING;
"""


def _render_init_db(pg: Postgres, database: str = "app") -> str:
    return render(
        "init_db.sql.j2",
        app_user="app",
        app_password_file=_put(pg, "/tmp/app_password", "app-pw\n"),
        readonly_user="app_ro",
        readonly_password_file=_put(pg, "/tmp/ro_password", "ro-pw\n"),
        monitor_user="monitor",
        monitor_password_file=_put(pg, "/tmp/monitor_password", "mon-pw\n"),
        database=database,
        extensions=["pg_trgm", "pg_stat_statements"],
        auto_updated_at=True,  # its event trigger and the pass over existing tables
        pooler={  # PgBouncer's auth role, its owner role, schema and SECURITY DEFINER function
            "auth_user": pgbouncer.AUTH_USER,
            "owner": pgbouncer.OWNER_ROLE,
            "schema": pgbouncer.AUTH_SCHEMA,
            "password_file": _put(pg, "/tmp/pooler_password", "pool-pw\n"),
            "excluded": ["postgres", "monitor", pgbouncer.AUTH_USER, pgbouncer.OWNER_ROLE],
        },
    )


@pytest.mark.parametrize("pinned", [False, True], ids=["entrypoint", "apply-sql"])
def test_init_db_sql_never_runs_app_code(pg, pinned):
    _reset(pg)
    path = _put(pg, "/tmp/init_db.sql", _render_init_db(pg))
    env = ["-e", f"PGOPTIONS={SAFE}"] if pinned else []
    _ok(docker("exec", *env, "-u", "postgres", pg.name, "psql", "-X", "-q", "-v",
               "ON_ERROR_STOP=1", "-d", "postgres", "-f", path, check=False))  # fmt: skip
    assert _fired(pg) == []


def _init_db_error(pg: Postgres, database: str) -> str:
    """init_db.sql for ``database`` must fail: its error output."""
    proc = _init_db(pg, database)
    assert proc.returncode != 0, proc.stdout
    return proc.stderr


def _init_db(pg: Postgres, database: str) -> subprocess.CompletedProcess:
    """init_db.sql for ``database`` run as the converge does (psql, search_path pinned)."""
    path = _put(pg, "/tmp/init_db.sql", _render_init_db(pg, database))
    psql = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", "postgres", "-f", path]
    return docker("exec", "-e", f"PGOPTIONS={SAFE}", "-u", "postgres", pg.name, *psql, check=False)


def test_init_db_never_adopts_a_pooler_schema_of_the_app(pg):
    """The app, owner of its database, makes pgsteady_pooler first with an overload of
    user_secret (auth_query would be "not unique": no pooled login): init_db stops naming
    the schema and its owner, and adopts nothing; an object of the app's left in a schema
    the NOLOGIN owner has (an older pgsteady adopted it) stops it too."""
    schema, owner = pgbouncer.AUTH_SCHEMA, pgbouncer.OWNER_ROLE
    plant = (
        f"SET ROLE app; CREATE SCHEMA {schema}; CREATE FUNCTION {schema}.user_secret("
        "p_user text, x int DEFAULT 0) RETURNS TABLE (usename name, passwd text) "
        "LANGUAGE sql AS $$ SELECT NULL::name, NULL::text $$"
    )
    state = (
        "SELECT pg_catalog.format('%s|%s', pg_catalog.pg_get_userbyid(n.nspowner), "
        "(SELECT pg_catalog.string_agg(p.oid::pg_catalog.regprocedure::text || ' ' || "
        "pg_catalog.pg_get_userbyid(p.proowner), ',') FROM pg_catalog.pg_proc p "
        "WHERE p.pronamespace = n.oid)) FROM pg_catalog.pg_namespace n "
        f"WHERE n.nspname = '{schema}'"
    )
    try:
        _reset(pg)
        pg.sql("CREATE DATABASE pooltrap OWNER app", "postgres")
        pg.sql(plant, "pooltrap")
        err = _init_db_error(pg, "pooltrap")
        assert f"schema {schema} in database pooltrap is owned by role app" in err, err
        assert pg.value(state, "pooltrap") == (f"app|{schema}.user_secret(text,integer) app"), (
            "init_db adopted the app's schema or added to it"
        )
        assert (
            pg.value(
                f"SELECT pg_catalog.has_table_privilege('{owner}', 'pg_authid', 'SELECT')",
                "pooltrap",
            )
            == "f"
        )
        # the schema is the owner role's already, the app's overload still in it
        pg.sql(f"ALTER SCHEMA {schema} OWNER TO {owner}", "pooltrap")
        err = _init_db_error(pg, "pooltrap")
        assert (
            f"schema {schema} in database pooltrap holds function "
            f"{schema}.user_secret(text,integer) owned by role app"
        ) in err, err
        assert pg.value(state, "pooltrap") == f"{owner}|{schema}.user_secret(text,integer) app"
        # dropped by the operator: init_db completes and the pooler's function is alone
        pg.sql(f"DROP FUNCTION {schema}.user_secret(text, integer)", "pooltrap")
        _ok(_init_db(pg, "pooltrap"))
        assert pg.value(state, "pooltrap") == f"{owner}|{schema}.user_secret(text) {owner}"
        assert _fired(pg) == []
    finally:
        pg.sql("DROP DATABASE IF EXISTS pooltrap WITH (FORCE)", "postgres")


def test_schema_files_run_logged_in_as_the_app_role(tmp_path, pg):
    """The operator's schema files, applied as the converge does (pgsteady-ctl
    apply-schema with the rendered schema.psql), run in a session that logs in as the
    app role: a trigger they fire cannot RESET ROLE to the superuser."""
    _reset(pg)
    _ok(docker("exec", "-u", "postgres", pg.name, "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1",
               "-d", "postgres", "-f", _put(pg, "/tmp/init_db.sql", _render_init_db(pg)),
               check=False))  # fmt: skip
    # the password has the characters a passfile needs escaped
    password = "p:w\\d"
    pg.sql(f"ALTER ROLE app PASSWORD '{password}'", "postgres")
    secret = _put(pg, "/tmp/app_password", password + "\n")
    docker("exec", "-u", "postgres", pg.name, "mkdir", "-p", "/tmp/schema")
    _put(pg, "/tmp/schema/01-schema.sql", SCHEMA)
    script = render("schema_files.psql.j2", schema_files=["/tmp/schema/01-schema.sql"])
    psql_script = _put(pg, "/tmp/schema.psql", script)
    hba = docker("exec", "-u", "postgres", pg.name, "psql", "-XAtc", "SHOW hba_file").stdout
    hba = hba.strip()
    original = docker("exec", pg.name, "cat", hba).stdout
    rules = hba_rules([], "postgres", database="app", app_roles=["app"])
    _put(pg, hba, render("pg_hba.conf.j2", rules=rules))  # what pgsteady deploys
    pg.sql("SELECT pg_reload_conf()", "postgres")
    env_file = tmp_path / "ctl.env"
    env_file.write_text(
        f"PGSTEADY_CONTAINER={pg.name}\nPGSTEADY_PROJECT=x\nPGSTEADY_COMPOSE_FILE=/nonexistent\n"
        f"PGSTEADY_COMPOSE=false\nPGSTEADY_STATE_DIR={tmp_path}\n"
    )
    env_file.chmod(0o600)
    ctl = ["sh", str(REPO / "files/bin/pgsteady-ctl"), "-e", str(env_file), "apply-schema", "app",
           "app", secret, psql_script]  # fmt: skip
    path_env = {"PATH": f"{Path(DOCKER).parent}:/usr/bin:/bin"}
    try:
        for _ in range(2):  # idempotent; the trigger fires on every run
            _ok(subprocess.run(ctl, capture_output=True, text=True, timeout=120, env=path_env))
            assert _fired(pg) == []
    finally:
        _put(pg, hba, original)
        pg.sql("SELECT pg_reload_conf()", "postgres")
    assert pg.value("SELECT tableowner FROM pg_tables WHERE tablename = 'seed'") == "app"
    assert pg.value("SELECT count(*) FROM seed") == "1"
    # no passfile left behind in the container
    left = docker("exec", "-u", "postgres", pg.name, "sh", "-c", "ls -a /tmp/tmp.* 2>/dev/null",
                  check=False)  # fmt: skip
    assert "pgpass" not in left.stdout
    pg.sql("ALTER ROLE app PASSWORD 'app-pw'", "postgres")


def test_turning_the_pooler_off_drops_its_roles_and_schema(pg):
    """init_db.sql with the pooler, then without it (pgbouncer_enabled = False): its auth
    role and NOLOGIN owner role are gone, with the owner's schema and function and the
    SELECT on pg_authid; a second run without it changes nothing; no app code runs."""
    auth, owner, schema = pgbouncer.AUTH_USER, pgbouncer.OWNER_ROLE, pgbouncer.AUTH_SCHEMA
    roles = (
        "SELECT pg_catalog.count(*) FROM pg_catalog.pg_roles "
        f"WHERE rolname IN ('{auth}', '{owner}')"
    )
    schemas = f"SELECT pg_catalog.count(*) FROM pg_catalog.pg_namespace WHERE nspname = '{schema}'"
    _reset(pg)
    _ok(_init_db(pg, "app"))
    assert (pg.value(roles, "app"), pg.value(schemas, "app")) == ("2", "1")
    text = render(  # as _render_init_db (whose password files _init_db put), pooler off
        "init_db.sql.j2",
        app_user="app",
        app_password_file="/tmp/app_password",
        readonly_user="app_ro",
        readonly_password_file="/tmp/ro_password",
        monitor_user="monitor",
        monitor_password_file="/tmp/monitor_password",
        database="app",
        extensions=["pg_trgm", "pg_stat_statements"],
        auto_updated_at=True,
        pooler=None,
        pooler_roles=[auth, owner],
    )
    assert f"DROP OWNED BY %I', '{owner}'" in text
    path = _put(pg, "/tmp/init_db_nopooler.sql", text)
    psql = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", "postgres", "-f", path]
    for _ in range(2):
        proc = docker("exec", "-e", f"PGOPTIONS={SAFE}", "-u", "postgres", pg.name, *psql)
        assert "WARNING" not in proc.stderr, proc.stderr
        assert (pg.value(roles, "app"), pg.value(schemas, "app")) == ("0", "0")
    assert _fired(pg) == []
