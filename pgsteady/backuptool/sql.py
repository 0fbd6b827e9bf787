"""SQL text the restore runs: quoting, and the statements that hand a restored database
the target's owner, ACL, connection limit and settings in one swap transaction (pure)."""

from __future__ import annotations

from .errors import BackupError

DATABASE_PRIVILEGES = ("CREATE", "CONNECT", "TEMPORARY")


#: GUCs whose value is a list of names: pg_db_role_setting flattens them, and each
#: element is given back as its own literal (as pg_dump does).
LIST_GUCS = (
    "local_preload_libraries",
    "search_path",
    "session_preload_libraries",
    "shared_preload_libraries",
    "temp_tablespaces",
    "unix_socket_directories",
)


def ident(name: str) -> str:
    """A quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def literal(value: str) -> str:
    """A SQL string literal (standard_conforming_strings is on)."""
    return "'" + value.replace("'", "''") + "'"


def split_guc_list(value: str) -> list[str]:
    """The elements of a flattened list GUC (``"$user", public``), unquoted."""
    items, i = [], 0
    while i < len(value):
        while i < len(value) and value[i] in " \t\n":
            i += 1
        if i >= len(value):
            break
        if value[i] == '"':
            i += 1
            item = ""
            while i < len(value):
                if value[i] == '"':
                    if value[i + 1 : i + 2] == '"':
                        item += '"'
                        i += 2
                        continue
                    i += 1
                    break
                item += value[i]
                i += 1
        else:
            start = i
            while i < len(value) and value[i] != ",":
                i += 1
            item = value[start:i].strip()
        items.append(item)
        while i < len(value) and value[i] in " \t\n":
            i += 1
        if i < len(value) and value[i] == ",":
            i += 1
    return items


def setting_sql(database: str, role: str | None, entry: str) -> str:
    """``ALTER DATABASE/ROLE ... SET`` re-creating one pg_db_role_setting entry."""
    name, _, value = entry.partition("=")
    if name.lower() in LIST_GUCS:
        values = ", ".join(literal(v) for v in split_guc_list(value)) or "''"
    else:
        values = literal(value)
    where = (
        f"ROLE {ident(role)} IN DATABASE {ident(database)}"
        if role
        else f"DATABASE {ident(database)}"
    )
    return f"ALTER {where} SET {ident(name)} TO {values}"


def handover_sql(name: str, props: dict) -> list[str]:
    """Give database ``name`` the owner, ACL, connection limit and settings in ``props``."""
    db = ident(name)
    sql = [
        f"ALTER DATABASE {db} OWNER TO {ident(props['owner'])}",
        f"ALTER DATABASE {db} CONNECTION LIMIT {int(props['connlimit'])}",
    ]
    if props["acl"] is None:  # the defaults: PUBLIC may connect and create temp tables
        sql.append(f"GRANT CONNECT, TEMPORARY ON DATABASE {db} TO PUBLIC")
    else:
        sql += [
            f"REVOKE ALL ON DATABASE {db} FROM PUBLIC",
            f"REVOKE ALL ON DATABASE {db} FROM {ident(props['owner'])}",
        ]
        for item in props["acl"]:
            if item["privilege"] not in DATABASE_PRIVILEGES:
                raise BackupError(f"unexpected database privilege {item['privilege']!r}")
            grantee = ident(item["grantee"]) if item["grantee"] else "PUBLIC"
            option = " WITH GRANT OPTION" if item["grantable"] else ""
            sql.append(f"GRANT {item['privilege']} ON DATABASE {db} TO {grantee}{option}")
    for setting in props["settings"]:
        sql += [setting_sql(name, setting["role"], e) for e in setting["config"] or []]
    return sql


def swap_sql(target: str, temp: str, replaced: str | None, props: dict) -> str:
    """One transaction: retire ``target`` (when it exists) and put ``temp`` in its place."""
    steps = ["BEGIN"]
    if replaced:
        steps += [
            "SELECT pg_catalog.count(pg_catalog.pg_terminate_backend(pid)) FROM "
            f"pg_catalog.pg_stat_activity WHERE datname = {literal(target)} "
            "AND pid <> pg_catalog.pg_backend_pid()",
            f"ALTER DATABASE {ident(target)} RENAME TO {ident(replaced)}",
        ]
    steps.append(f"ALTER DATABASE {ident(temp)} RENAME TO {ident(target)}")
    steps += handover_sql(target, props)
    steps.append("COMMIT")
    return ";\n".join(steps) + ";"
