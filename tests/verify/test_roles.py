"""roles: the monitoring role, private extension objects, no password kept in clear."""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING

import pytest

from pgsteady.monitor.performance import VIEW_OK
from pgsteady.postgres.session import SUPERUSER_PGOPTIONS
from pgsteady.settings import Settings
from pgsteady.stack.compose import INIT_SQL
from pgsteady.stack.layout import INIT_MOUNT
from pgsteady.verify import Fixes, check

if TYPE_CHECKING:
    from conftest import Host

#: Re-applies init_db.sql, which creates/repairs the roles and the grants checked here.
APPLY_INIT = "{bin}/pgsteady-ctl apply-sql " + f"{INIT_MOUNT}/{INIT_SQL}"

#: Extension-owned relations of the current database that grant something to PUBLIC,
#: and pg_stat_statements' functions that PUBLIC may execute.
PUBLIC_EXTENSION_GRANTS = """
SELECT e.extname, pg_catalog.format('%I.%I', n.nspname, c.relname)
  FROM pg_catalog.pg_depend d
  JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid
  JOIN pg_catalog.pg_class c ON c.oid = d.objid
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.deptype = 'e'
   AND EXISTS (SELECT FROM pg_catalog.aclexplode(c.relacl) a WHERE a.grantee = 0)
UNION ALL
SELECT e.extname, p.oid::pg_catalog.regprocedure::text
  FROM pg_catalog.pg_depend d
  JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid
  JOIN pg_catalog.pg_proc p ON p.oid = d.objid
 WHERE d.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass AND d.deptype = 'e'
   AND e.extname = 'pg_stat_statements'
   AND EXISTS (SELECT FROM pg_catalog.aclexplode(
                 coalesce(p.proacl, pg_catalog.acldefault('f', p.proowner))) a
               WHERE a.grantee = 0)
 ORDER BY 1, 2
"""

#: Tracked statements that carry a password literal (ALTER/CREATE ROLE ... PASSWORD '...'),
#: read through init_db.sql's pgsteady.statements (bound to pg_stat_statements' own view),
#: never through public.pg_stat_statements: the application owns schema public and could
#: put a view of its own under that name for this superuser session to run.
PASSWORD_STATEMENTS = (
    "SELECT pg_catalog.count(*) FROM pgsteady.statements "
    "WHERE query OPERATOR(pg_catalog.~*) 'PASSWORD\\s+'''"
)


#: pg_stat_statements' own reset function, found through pg_depend (never by name): its
#: schema and argument types, for a fix line that names it exactly.
RESET_FUNCTION = """
SELECT pg_catalog.quote_ident(n.nspname),
       pg_catalog.array_to_string(ARRAY(
         SELECT t.typname
           FROM pg_catalog.unnest(p.proargtypes::pg_catalog.oid[]) WITH ORDINALITY a(typ, i)
           JOIN pg_catalog.pg_type t ON t.oid = a.typ
          ORDER BY a.i), ',')
  FROM pg_catalog.pg_depend d
  JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid
  JOIN pg_catalog.pg_proc p ON p.oid = d.objid
  JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
 WHERE d.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass AND d.deptype = 'e'
   AND e.extname = 'pg_stat_statements' AND p.proname = 'pg_stat_statements_reset'
"""
#: A full reset: every argument of the function (PG 15: userid, dbid, queryid; PG 17 adds
#: minmax_only) given with its pg_catalog type.
RESET_ARGUMENT = {"oid": "0", "int8": "0", "bool": "false"}


def reset_statements_fix(pg: Host, s: Settings, fixes: Fixes) -> str:
    """The command that empties pg_stat_statements as the superuser, safely: search_path
    pinned, the function called by its schema and its exact argument types, so in a schema
    the application owns (public) no function of the application's can be chosen instead
    (an overload can at worst make the call ambiguous: an error, never its code)."""
    rows = pg.psql(RESET_FUNCTION, db=s.postgres_db)
    types = rows[0][1].split(",") if len(rows) == 1 and rows[0][1] else []
    if len(rows) != 1 or not set(types) <= RESET_ARGUMENT.keys():
        return "see docs/verify.md#roles (pg_stat_statements_reset not found as expected)"
    args = ", ".join(f"{RESET_ARGUMENT[t]}::pg_catalog.{t}" for t in types)
    sql = f"SELECT {rows[0][0]}.pg_stat_statements_reset({args})"
    return fixes.on_host(
        f"docker exec -e {shlex.quote('PGOPTIONS=' + SUPERUSER_PGOPTIONS)} "
        f"-u postgres {s.container_name} psql -X -v ON_ERROR_STOP=1 -d {s.postgres_db} "
        f"-c {shlex.quote(sql)}"
    )


def _apply_init(fixes: Fixes, s: Settings) -> str:
    return fixes.on_host(APPLY_INIT.format(bin=s.layout.bin))


def test_monitor_role(pg: Host, s: Settings, fixes: Fixes) -> None:
    rows = pg.psql(
        "SELECT rolcanlogin, rolsuper, pg_catalog.pg_has_role(oid, 'pg_monitor', 'MEMBER'), "
        "pg_catalog.has_database_privilege(oid, "
        f"'{s.postgres_db}', 'CONNECT') FROM pg_catalog.pg_roles "
        f"WHERE rolname OPERATOR(pg_catalog.=) '{s.postgres_monitor_user}'"
    )
    fix = _apply_init(fixes, s)
    check(bool(rows), f"the monitoring role {s.postgres_monitor_user} does not exist", fix)
    login, superuser, monitor, connect = rows[0]
    check(superuser == "f", f"{s.postgres_monitor_user} is a superuser", fix)
    check(
        login == "t" and monitor == "t" and connect == "t",
        f"{s.postgres_monitor_user}: login {login}, pg_monitor member {monitor}, "
        f"CONNECT on {s.postgres_db} {connect} (all expected t)",
        fix,
    )


def test_no_public_grants_on_extension_objects(pg: Host, s: Settings, fixes: Fixes) -> None:
    rows = pg.psql(PUBLIC_EXTENSION_GRANTS, db=s.postgres_db)
    found = ", ".join(f"{name} ({ext})" for ext, name in rows)
    check(not rows, f"extension objects usable by PUBLIC in {s.postgres_db}: {found}",
          _apply_init(fixes, s))  # fmt: skip


def test_no_password_in_pg_stat_statements(pg: Host, s: Settings, fixes: Fixes) -> None:
    if "pg_stat_statements" not in s.postgres_extensions:
        pytest.skip("pg_stat_statements is not in postgres_extensions")
    safe = pg.value(f"SELECT {VIEW_OK}", db=s.postgres_db)
    check(safe == "t", "pgsteady.statements (init_db.sql's view of pg_stat_statements) is "
          "missing or not owned by a superuser", _apply_init(fixes, s))  # fmt: skip
    count = pg.value(PASSWORD_STATEMENTS, db=s.postgres_db)
    check(
        count == "0",
        f"pg_stat_statements keeps {count} statement(s) with a password in clear text",
        reset_statements_fix(pg, s, fixes) + " (then change the passwords that were exposed)",
    )
