"""durability: the running server keeps every commit it acknowledged.

pgsteady refuses ``fsync``/``full_page_writes`` off and accepts ``synchronous_commit`` off
only with ``postgres_accept_async_commit_loss``; these checks read what the server runs
with, which ALTER SYSTEM, ALTER ROLE ... SET or ALTER DATABASE ... SET can change.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from pgsteady.postgres.parameters import parse_bool
from pgsteady.postgres.session import superuser_psql
from pgsteady.settings import Settings
from pgsteady.verify import Fixes, check

if TYPE_CHECKING:
    from conftest import Host

#: Every session default set per role and/or database (pg_db_role_setting), one per row.
ROLE_DB_SETTINGS = (
    "SELECT coalesce(r.rolname, ''), coalesce(d.datname, ''), pg_catalog.unnest(s.setconfig) "
    "FROM pg_catalog.pg_db_role_setting s "
    "LEFT JOIN pg_catalog.pg_roles r ON r.oid = s.setrole "
    "LEFT JOIN pg_catalog.pg_database d ON d.oid = s.setdatabase"
)


def _psql(s: Settings, *statements: str) -> str:
    return superuser_psql(s.container_name, *statements)


def _running(pg: Host, name: str) -> tuple[str, str]:
    """(value, where it comes from) of a server parameter."""
    rows = pg.psql(
        "SELECT setting, source || coalesce(' ' || sourcefile, '') FROM pg_catalog.pg_settings "
        f"WHERE name = '{name}'"
    )
    return (rows[0][0], rows[0][1]) if rows else ("", "")


def _ident(name: str) -> str:
    """An SQL identifier, quoted only when it needs to be."""
    if name.isidentifier() and name == name.lower():
        return name
    return '"' + name.replace('"', '""') + '"'


def _reset(role: str, db: str, name: str) -> str:
    """The statement that removes one pg_db_role_setting entry."""
    if role and db:
        return f"ALTER ROLE {_ident(role)} IN DATABASE {_ident(db)} RESET {name}"
    if role:
        return f"ALTER ROLE {_ident(role)} RESET {name}"
    return f"ALTER DATABASE {_ident(db)} RESET {name}"


def test_fsync_and_full_page_writes_on(pg: Host, s: Settings, fixes: Fixes) -> None:
    off = []
    for name in ("fsync", "full_page_writes"):
        value, source = _running(pg, name)
        if parse_bool(value) is not True:
            off.append(f"{name} = {value} ({source})")
    fix = _psql(
        s,
        "ALTER SYSTEM RESET fsync",
        "ALTER SYSTEM RESET full_page_writes",
        "SELECT pg_catalog.pg_reload_conf()",
    )
    check(
        not off,
        f"{'; '.join(off)}: a crash or power loss can lose acknowledged commits or tear pages",
        f"{fixes.on_host(fix)}; then {fixes.deploy}",
    )


def test_synchronous_commit(pg: Host, s: Settings, fixes: Fixes) -> None:
    """synchronous_commit is not off, server-wide or for a role/database, unless accepted."""
    off: list[str] = []
    resets: list[str] = []
    value, source = _running(pg, "synchronous_commit")
    if parse_bool(value) is False:
        off.append(f"server: synchronous_commit = {value} ({source})")
        resets += ["ALTER SYSTEM RESET synchronous_commit", "SELECT pg_catalog.pg_reload_conf()"]
    for role, db, item in pg.psql(ROLE_DB_SETTINGS):
        name, _, setting = item.partition("=")
        if name.strip().lower() == "synchronous_commit" and parse_bool(setting) is False:
            where = " ".join(filter(None, (role and f"role {role}", db and f"database {db}")))
            off.append(f"{where}: synchronous_commit = {setting}")
            resets.append(_reset(role, db, "synchronous_commit"))
    if off and s.postgres_accept_async_commit_loss:
        pytest.skip(
            f"accepted by postgres_accept_async_commit_loss: {'; '.join(off)} - a crash "
            "loses the commits of the last few hundred milliseconds that clients saw succeed"
        )
    check(
        not off,
        f"{'; '.join(off)}: a crash loses commits already acknowledged to clients "
        "(set postgres_accept_async_commit_loss to accept that)",
        fixes.on_host(_psql(s, *resets)) if resets else fixes.deploy,
    )
