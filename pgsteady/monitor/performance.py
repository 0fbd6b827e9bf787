"""The performance view: top statements from pg_stat_statements, the application
database's cache hit ratio and its temp-file spills.

The collect script runs :data:`SQL` as the superuser (``docker exec -u postgres``: every
role's query texts are visible) in the application's database, with ``search_path``
pinned to ``pg_catalog, pg_temp``. pg_stat_statements lives in schema public, which the
application owns and could re-point; the query therefore reads ``pgsteady.statements``,
init_db.sql's view bound to the extension's own view by OID, and only after checking
that the view and its schema belong to a superuser. Without that view (extension not
created, or a server initialised before it existed) or without pg_stat_statements in
shared_preload_libraries, the statements are reported as unavailable and the database
figures still are.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from pgsteady.settings import Settings

#: Statements listed per ranking.
TOP_N = 5
#: Characters of a statement's (normalized) text kept.
QUERY_CHARS = 300
#: Identifier in the collector's own statements: the rankings leave out a superuser's
#: statements that carry it (the application cannot hide its own by naming the marker).
MARKER = "pgsteady_monitor_"
#: Statements left out because pg_stat_statements keeps utility statements' text verbatim
#: (checked on Postgres 15 and 17), a password literal included: any statement naming
#: ``password`` as a word (CREATE/ALTER ROLE ... PASSWORD, behind a comment or inside a DO
#: block's EXECUTE too), and any CREATE/ALTER ROLE/USER wherever it stands. A query on a
#: column named exactly ``password`` is left out with them (``password_hash`` is not).
SECRET_STATEMENT = r"\mpassword\M|\m(create|alter)\s+(role|user)\M"

#: True when pgsteady.statements is a view that, like its schema, a superuser owns: only
#: then may a superuser's session read it (the make verify suite reads it too).
VIEW_OK = """EXISTS (
  SELECT FROM pg_catalog.pg_class c
    JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    JOIN pg_catalog.pg_roles rn ON rn.oid = n.nspowner
    JOIN pg_catalog.pg_roles rc ON rc.oid = c.relowner
   WHERE n.nspname = 'pgsteady' AND c.relname = 'statements' AND c.relkind = 'v'
     AND rn.rolsuper AND rc.rolsuper)"""

SQL = rf"""
SELECT {VIEW_OK}
   AND 'pg_stat_statements' OPERATOR(pg_catalog.=) ANY (pg_catalog.string_to_array(
         pg_catalog.replace(pg_catalog.current_setting('shared_preload_libraries'), ' ', ''),
         ',')) AS {MARKER}has_view \gset
SELECT pg_catalog.json_build_object(
  'database', pg_catalog.current_database(),
  'stats', (SELECT pg_catalog.json_build_object(
              'blks_hit', d.blks_hit, 'blks_read', d.blks_read, 'temp_files', d.temp_files,
              'temp_bytes', d.temp_bytes, 'stats_reset', d.stats_reset)
              FROM pg_catalog.pg_stat_database d
             WHERE d.datname OPERATOR(pg_catalog.=) pg_catalog.current_database())
) AS {MARKER}database \gset
\if :{MARKER}has_view
WITH s AS (
  SELECT st.*, r.rolname
    FROM pgsteady.statements st
    LEFT JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) st.userid
   WHERE st.dbid OPERATOR(pg_catalog.=) (SELECT d.oid FROM pg_catalog.pg_database d
                   WHERE d.datname OPERATOR(pg_catalog.=) pg_catalog.current_database())
     AND NOT (st.query OPERATOR(pg_catalog.~) '{MARKER}' AND r.rolsuper)
     AND st.query OPERATOR(pg_catalog.!~*) '{SECRET_STATEMENT}'
), e AS (
  SELECT s.*, pg_catalog.json_build_object(
           'queryid', s.queryid::pg_catalog.text, 'user', s.rolname,
           'query', pg_catalog.left(pg_catalog.regexp_replace(
                      s.query, '[[:space:][:cntrl:]]+', ' ', 'g'), {QUERY_CHARS}),
           'calls', s.calls,
           'total_ms', pg_catalog.round(s.total_exec_time::pg_catalog.numeric, 3),
           'mean_ms', pg_catalog.round(s.mean_exec_time::pg_catalog.numeric, 3),
           'rows', s.rows, 'temp_blks_written', s.temp_blks_written) AS j
    FROM s
)
SELECT pg_catalog.json_build_object(
  'db', :'{MARKER}database'::pg_catalog.json,
  'statements', pg_catalog.json_build_object(
    'count', (SELECT pg_catalog.count(*) FROM e),
    'temp_blks_written', (SELECT pg_catalog.sum(e.temp_blks_written) FROM e),
    'by_total_time', (SELECT pg_catalog.json_agg(x.j) FROM (SELECT e.j FROM e
                        ORDER BY e.total_exec_time DESC LIMIT {TOP_N}) x),
    'by_calls', (SELECT pg_catalog.json_agg(x.j) FROM (SELECT e.j FROM e
                   ORDER BY e.calls DESC LIMIT {TOP_N}) x),
    'by_mean_time', (SELECT pg_catalog.json_agg(x.j) FROM (SELECT e.j FROM e
                       ORDER BY e.mean_exec_time DESC LIMIT {TOP_N}) x),
    'by_temp_blks_written', (SELECT pg_catalog.json_agg(x.j) FROM (SELECT e.j FROM e
                               WHERE e.temp_blks_written OPERATOR(pg_catalog.>) 0
                               ORDER BY e.temp_blks_written DESC LIMIT {TOP_N}) x))
) AS {MARKER}performance;
\else
SELECT pg_catalog.json_build_object('db', :'{MARKER}database'::pg_catalog.json,
                                    'statements', NULL) AS {MARKER}performance;
\endif
"""

SCRIPT = r"""
performance() {
    printf '%s\n' "$PERF_SQL" | d exec -i -e PGCONNECT_TIMEOUT=5 -e "PGOPTIONS=$PGOPTIONS_SAFE" \
        -u postgres "$C" psql -XAtq -v ON_ERROR_STOP=1 -d "$PERF_DB" -f -
}
section performance performance
"""

#: The rankings, in the order the view shows them: JSON key -> title.
RANKINGS = {
    "by_total_time": "top statements by total time",
    "by_calls": "top statements by calls",
    "by_mean_time": "top statements by mean time",
    "by_temp_blks_written": "top statements by temp blocks written",
}


def script_values(s: Settings) -> dict[str, str]:
    """The collect script's variables for the performance section."""
    return {"PERF_DB": s.postgres_db, "PERF_SQL": SQL.strip()}


@dataclass
class Statement:
    """One pg_stat_statements entry (text normalized by pg_stat_statements)."""

    queryid: str = ""
    user: str | None = None
    query: str = ""
    calls: int = 0
    total_ms: float = 0.0
    mean_ms: float = 0.0
    rows: int = 0
    temp_blks_written: int = 0


@dataclass
class Performance:
    """``make status JSON=1``'s ``performance`` section of one host."""

    available: bool = False
    error: str | None = None
    database: str | None = None
    cache_hit_ratio: float | None = None  # blks_hit / (blks_hit + blks_read), this database
    block_accesses: int = 0
    temp_files: int | None = None  # pg_stat_database, since stats_reset
    temp_bytes: int | None = None
    stats_reset: str | None = None
    statements_available: bool = False  # pgsteady.statements present (pg_stat_statements)
    statements_count: int = 0
    statements_temp_blks_written: int = 0
    by_total_time: list[Statement] = field(default_factory=list)
    by_calls: list[Statement] = field(default_factory=list)
    by_mean_time: list[Statement] = field(default_factory=list)
    by_temp_blks_written: list[Statement] = field(default_factory=list)


def _statement(item: dict[str, Any]) -> Statement:
    return Statement(
        queryid=str(item.get("queryid") or ""),
        user=item.get("user"),
        query=str(item.get("query") or ""),
        calls=int(item.get("calls") or 0),
        total_ms=float(item.get("total_ms") or 0),
        mean_ms=float(item.get("mean_ms") or 0),
        rows=int(item.get("rows") or 0),
        temp_blks_written=int(item.get("temp_blks_written") or 0),
    )


def parse(section: dict[str, Any]) -> Performance:
    """The ``performance`` section's output (one JSON line) -> Performance."""
    perf = Performance()
    out = [line for line in section.get("out", "").splitlines() if line.strip()]
    if section.get("rc") != 0 or not out:
        err = [line for line in section.get("err", "").splitlines() if line.strip()]
        perf.error = err[-1].strip() if err else f"exit code {section.get('rc')}"
        return perf
    try:
        data = json.loads(out[-1])
        db = data["db"]
    except (ValueError, KeyError, TypeError):
        perf.error = f"unexpected psql output: {out[-1][:200]!r}"
        return perf
    perf.available = True
    perf.database = db.get("database")
    stats = db.get("stats") or {}
    hit, read = int(stats.get("blks_hit") or 0), int(stats.get("blks_read") or 0)
    perf.block_accesses = hit + read
    perf.cache_hit_ratio = round(hit / (hit + read), 4) if hit + read else None
    perf.temp_files = stats.get("temp_files")
    perf.temp_bytes = stats.get("temp_bytes")
    perf.stats_reset = stats.get("stats_reset")
    statements = data.get("statements")
    if statements is None:
        return perf
    perf.statements_available = True
    perf.statements_count = int(statements.get("count") or 0)
    perf.statements_temp_blks_written = int(statements.get("temp_blks_written") or 0)
    for key in RANKINGS:
        setattr(perf, key, [_statement(item) for item in statements.get(key) or []])
    return perf
