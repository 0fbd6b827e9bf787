"""security: in the spirit of dev-sec's postgres-baseline, for what pgsteady manages."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from pgsteady.postgres.session import superuser_psql
from pgsteady.settings import Settings
from pgsteady.stack.compose import SUPERUSER, secret_names
from pgsteady.stack.hostfiles import server_readable
from pgsteady.verify import Fixes, check

if TYPE_CHECKING:
    from conftest import Host


def _psql_fix(fixes: Fixes, s: Settings, sql: str, db: str = "postgres") -> str:
    return fixes.on_host(superuser_psql(s.container_name, sql, db=db))


def test_hba_network_rules_scram(pg: Host, fixes: Fixes) -> None:
    rows = pg.psql(
        "SELECT line_number, type, auth_method FROM pg_hba_file_rules "
        "WHERE type LIKE 'host%' AND auth_method NOT IN ('scram-sha-256', 'reject')"
    )
    bad = [f"line {n}: {t} {m}" for n, t, m in rows]
    check(not bad, f"pg_hba.conf network rules neither scram-sha-256 nor reject: {'; '.join(bad)}")


def test_hba_no_trust(pg: Host, s: Settings, fixes: Fixes) -> None:
    errors = pg.psql("SELECT line_number, error FROM pg_hba_file_rules WHERE error IS NOT NULL")
    check(not errors, f"pg_hba.conf has errors: {errors}", fixes.deploy)
    rows = pg.psql(
        "SELECT line_number, type, auth_method FROM pg_hba_file_rules "
        "WHERE auth_method IN ('trust', 'password', 'md5', 'ident')"
    )
    bad = [f"line {n}: {t} {m}" for n, t, m in rows]
    check(
        not bad,
        f"pg_hba.conf accepts weak authentication: {'; '.join(bad)}",
        f"{fixes.deploy} (rewrites pg_hba.conf and reloads)",
    )


@pytest.mark.fix("ALTER ROLE <role> PASSWORD '...' with password_encryption=scram-sha-256")
def test_passwords_scram(pg: Host) -> None:
    rows = pg.psql(
        "SELECT rolname FROM pg_authid WHERE rolpassword IS NOT NULL "
        "AND rolpassword NOT LIKE 'SCRAM-SHA-256$%'"
    )
    check(not rows, f"passwords not stored as SCRAM: {', '.join(r[0] for r in rows)}")


def test_one_superuser(pg: Host, s: Settings, fixes: Fixes) -> None:
    rows = [r[0] for r in pg.psql("SELECT rolname FROM pg_roles WHERE rolsuper ORDER BY 1")]
    extra = [r for r in rows if r != SUPERUSER]
    check(
        rows == [SUPERUSER],
        f"superusers are {rows}; only {SUPERUSER} may be one",
        _psql_fix(fixes, s, f"ALTER ROLE {extra[0] if extra else 'x'} NOSUPERUSER"),
    )


def test_app_roles_unprivileged(pg: Host, s: Settings, fixes: Fixes) -> None:
    roles = [r for r in (s.postgres_user, s.postgres_readonly_user) if r]
    names = ",".join(f"'{r}'" for r in roles)
    rows = pg.psql(
        "SELECT rolname, rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls "
        f"FROM pg_roles WHERE rolname IN ({names})"
    )
    flags = ("SUPERUSER", "CREATEROLE", "CREATEDB", "REPLICATION", "BYPASSRLS")
    for row in rows:
        extra = [f for f, v in zip(flags, row[1:], strict=True) if v == "t"]
        check(
            not extra,
            f"role {row[0]} has {', '.join(extra)}",
            _psql_fix(fixes, s, f"ALTER ROLE {row[0]} " + " ".join(f"NO{f}" for f in extra)),
        )
    check(len(rows) == len(roles), f"roles missing: {sorted(set(roles) - {r[0] for r in rows})}")


def test_public_schema_create(pg: Host, s: Settings, fixes: Fixes) -> None:
    rows = pg.psql(
        "SELECT 1 FROM pg_namespace n, aclexplode(coalesce(n.nspacl, acldefault('n', n.nspowner)))"
        " a WHERE n.nspname = 'public' AND a.grantee = 0 AND a.privilege_type = 'CREATE'",
        db=s.postgres_db,
    )
    check(
        not rows,
        f"PUBLIC may CREATE in schema public of {s.postgres_db}",
        _psql_fix(fixes, s, "REVOKE CREATE ON SCHEMA public FROM PUBLIC", s.postgres_db),
    )


def test_database_not_public(pg: Host, s: Settings, fixes: Fixes) -> None:
    rows = pg.psql(
        "SELECT a.privilege_type FROM pg_database d, "
        "aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) a "
        f"WHERE d.datname = '{s.postgres_db}' AND a.grantee = 0"
    )
    check(
        not rows,
        f"PUBLIC has {', '.join(r[0] for r in rows)} on database {s.postgres_db}",
        _psql_fix(fixes, s, f"REVOKE ALL ON DATABASE {s.postgres_db} FROM PUBLIC"),
    )


def test_password_encryption(pg: Host) -> None:
    got = pg.value("SHOW password_encryption")
    check(got == "scram-sha-256", f"password_encryption is {got}")


def test_secrets_dir(on: Host, s: Settings, fixes: Fixes) -> None:
    path = s.layout.secrets
    got = on.stat(path)
    check(
        got is not None and got[0] == 0 and got[2] == 0o700,
        f"{path} is {_describe(got)}; must be root-owned 0700",
        fixes.on_host(f"chown root {path} && chmod 700 {path}"),
    )


def test_secret_files(on: Host, s: Settings, fixes: Fixes) -> None:
    for name in secret_names(s):
        want = server_readable(s, f"{s.layout.secrets}/{name}")
        got = on.stat(want.path)
        check(got is not None, f"{want.path} is missing", fixes.deploy)
        uid, gid, mode = got
        check(
            (uid, gid) == (want.uid, want.gid) and not mode & ~int(want.mode, 8) and mode & 0o040,
            f"{want.path} is {_describe(got)}; must be {want.describe()} "
            f"(read by the server's group, written only by root)",
            fixes.on_host(want.fix()),
        )


def _describe(stat: tuple[int, int, int] | None) -> str:
    if stat is None:
        return "missing"
    return f"owned by {stat[0]}:{stat[1]}, mode {stat[2]:04o}"


def test_config_not_world_readable(on: Host, s: Settings, fixes: Fixes) -> None:
    p = s.layout
    files = [
        f"{p.config}/postgresql.conf",
        f"{p.config}/pg_hba.conf",
        p.ctl_env,
        p.backup_config,
        f"{p.init}/10-init_db.sql",
        p.compose,
    ]
    open_to_all = []
    for path in files:
        got = on.stat(path)
        if got is not None and got[2] & 0o007:
            open_to_all.append(path)
    check(
        not open_to_all,
        f"readable by everyone: {', '.join(open_to_all)}",
        fixes.on_host(f"chmod o-rwx {' '.join(open_to_all)}"),
    )


def test_no_password_in_environment(container: dict[str, Any]) -> None:
    env = [e.split("=", 1)[0] for e in container["Config"].get("Env") or []]
    plain = [k for k in env if "PASSWORD" in k and not k.endswith("_FILE")]
    check(not plain, f"passwords in the container environment: {', '.join(plain)}")
