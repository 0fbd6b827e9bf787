"""The options every superuser session pgsteady opens starts with (libpq ``PGOPTIONS``).

The application role owns its database, so it can attach settings to it
(``ALTER DATABASE app SET role = 'app'`` or ``SET default_transaction_read_only = on``)
that every later session into that database inherits. Options sent by the client at
connection time outrank database and role settings, so each superuser session pins:

- ``search_path=pg_catalog,pg_temp``: no function or operator the app created is resolved;
- ``role=none``: the session runs as the superuser it logged in as, never as the app;
- ``default_transaction_read_only=off``: its writes are not refused.

Shell scripts (files/bin/pgsteady-ctl, files/bin/pgsteady-pitr, the image's entrypoint)
and the backup tool's standalone zip repeat this string; tests/unit/test_session_options.py
keeps them equal.
"""

from __future__ import annotations

import re
import shlex

SUPERUSER_PGOPTIONS = (
    "-c search_path=pg_catalog,pg_temp -c role=none -c default_transaction_read_only=off"
)

#: Words followed by ``(`` in SQL that are grammar, not a function resolved by search_path.
_GRAMMAR = frozenset(
    {"all", "and", "any", "as", "by", "cast", "coalesce", "exists", "extract", "filter",
     "freeze", "from", "greatest", "in", "into", "least", "not", "nullif", "on", "or",
     "over", "row", "select", "values", "verbose", "vacuum", "analyze", "where", "with"}
)  # fmt: skip
_CALL = re.compile(r"(?<![\w.\"])([A-Za-z_][\w$]*)\s*\(")
_LITERAL = re.compile(r"'(?:[^']|'')*'")


def unqualified_calls(sql: str) -> list[str]:
    """Names of functions ``sql`` calls without a schema (``pg_drop_replication_slot(``).

    In a session whose search_path includes a schema the application can write (the
    operator's own psql in the app's database), such a call may resolve to the app's
    overload instead of pg_catalog's; ``pg_catalog.name(`` cannot.
    """
    text = _LITERAL.sub("''", sql)
    return [m for m in _CALL.findall(text) if m.lower() not in _GRAMMAR]


def postgres_exec(
    container: str, *argv: str, env: tuple[str, ...] = (), stdin: bool = False
) -> list[str]:
    """``docker exec`` of ``argv`` as the ``postgres`` user in ``container`` (never root:
    the files it reads there belong to uid 999); ``env`` items are ``NAME=value``."""
    flags = [f for item in env for f in ("-e", item)] + (["-i"] if stdin else [])
    return ["docker", "exec", *flags, "-u", "postgres", container, *argv]


def superuser_psql(
    container: str,
    *statements: str,
    db: str = "postgres",
    port: int | None = None,
    tuples_only: bool = False,
) -> str:
    """A fix line: ``statements`` run by psql as the superuser in ``container``, with
    :data:`SUPERUSER_PGOPTIONS`; every function call must name its schema.
    ``tuples_only`` prints bare unaligned rows (``-Atq``), for a caller that parses them."""
    for sql in statements:
        if bad := unqualified_calls(sql):
            raise ValueError(f"unqualified function call(s) {bad} in a superuser fix: {sql}")
    env = (f"PGOPTIONS={SUPERUSER_PGOPTIONS}",)
    if port is not None:
        env += (f"PGPORT={int(port)}",)
    psql = ["psql", "-X", *(["-Atq"] if tuples_only else []), "-v", "ON_ERROR_STOP=1", "-d", db]
    command = shlex.join(postgres_exec(container, *psql, env=env))
    return command + "".join(f" -c {_quote(sql)}" for sql in statements)


def _quote(sql: str) -> str:
    """``sql`` as one shell word: in double quotes when nothing in it is special there
    (readable with its '...' literals), else shlex's single quotes."""
    if not set(sql) & set('"$`\\!'):
        return f'"{sql}"'
    return shlex.quote(sql)
