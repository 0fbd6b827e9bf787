"""examples/schema/app.sql on a real pgsteady-initialised server, applied as the
application's role: idempotent, every foreign key indexed, full-text and trigram searches
served by their indexes, updated_at kept current by pgsteady's trigger."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from appdb import app, init_db, running_server
from pgserver import PgServer, available

pytestmark = pytest.mark.skipif(not available(), reason="Postgres 15 server binaries missing")

SCHEMA = Path(__file__).resolve().parents[2] / "examples" / "schema" / "app.sql"

SEED = """
INSERT INTO users (email, username, display_name)
SELECT 'user' || i || '@example.org', 'user_' || i, 'Person Number ' || i
  FROM generate_series(1, 500) i;
INSERT INTO posts (author_id, title, slug, body, status, published_at)
SELECT 1 + i % 500, 'Post about ' || (ARRAY['postgres', 'pooling', 'backups', 'tuning'])[1 + i % 4]
       || ' ' || i, 'post-' || i, 'The body of post ' || i || ' mentions replication.',
       CASE WHEN i % 3 = 0 THEN 'draft' ELSE 'published' END,
       CASE WHEN i % 3 = 0 THEN NULL ELSE now() - i * interval '1 hour' END
  FROM generate_series(1, 3000) i;
INSERT INTO posts (author_id, title, slug, body)
VALUES (7, 'Vacuum explained', 'vacuum-explained', 'Autovacuum keeps bloat away.');
INSERT INTO tags (name) VALUES ('sql'), ('ops');
INSERT INTO post_tags SELECT id, 1 + id % 2 FROM posts;
INSERT INTO comments (post_id, author_id, body) SELECT id, 1 + id % 500, 'nice' FROM posts;
ANALYZE;
"""

#: Foreign keys without an index whose leading columns are the key's columns.
UNINDEXED_FKS = """
SELECT c.conrelid::regclass::text, c.conname FROM pg_catalog.pg_constraint c
 WHERE c.contype = 'f' AND c.connamespace = 'public'::regnamespace
   AND NOT EXISTS (SELECT FROM pg_catalog.pg_index i WHERE i.indrelid = c.conrelid
                    AND (i.indkey::int2[])[0:array_length(c.conkey, 1) - 1] = c.conkey)
"""


@pytest.fixture(params=[False, True], ids=["auto-off", "auto-on"])
def server(request: pytest.FixtureRequest):
    with running_server() as srv:
        init_db(srv, auto=request.param)
        yield srv


def index_names(plan: Any) -> set[str]:
    """Every index a JSON EXPLAIN plan reads."""
    found = set()
    if isinstance(plan, dict):
        if "Index Name" in plan:
            found.add(plan["Index Name"])
        for value in plan.values():
            found |= index_names(value)
    elif isinstance(plan, list):
        for item in plan:
            found |= index_names(item)
    return found


def test_example_schema(server: PgServer) -> None:
    with app(server) as conn, conn.cursor() as cur:
        for _ in range(2):  # a schema file must be idempotent
            cur.execute(SCHEMA.read_text())
        cur.execute(SEED)
        cur.execute(UNINDEXED_FKS)
        assert cur.fetchall() == []
        cur.execute(
            "SELECT tgrelid::regclass::text, tgfoid::regprocedure::text FROM pg_trigger "
            "WHERE NOT tgisinternal ORDER BY 1"
        )
        fn = "pgsteady.set_updated_at()"
        assert cur.fetchall() == [("comments", fn), ("posts", fn), ("users", fn)]

        cur.execute("SET enable_seqscan = off")
        searches = {
            "posts_search": "SELECT id FROM posts "
            "WHERE search @@ websearch_to_tsquery('english', 'vacuum bloat')",
            "posts_title_trgm": "SELECT id FROM posts WHERE title ILIKE '%xplaine%'",
            "users_display_name_trgm": "SELECT id FROM users "
            "WHERE display_name % 'Persn Numbr 42' AND deleted_at IS NULL",
            "posts_published": "SELECT id FROM posts WHERE status = 'published' "
            "ORDER BY published_at DESC LIMIT 10",
            "users_email_key": "SELECT id FROM users WHERE lower(email) = 'user7@example.org'",
        }
        for index, query in searches.items():
            cur.execute(f"EXPLAIN (FORMAT JSON) {query}")
            raw = cur.fetchone()[0]
            plan = raw if isinstance(raw, list) else json.loads(raw)
            assert index in index_names(plan), (index, plan)
        cur.execute("RESET enable_seqscan")
        cur.execute(searches["posts_search"])
        assert len(cur.fetchall()) == 1  # the search finds the one post about vacuum
        cur.execute(
            "SELECT title FROM posts ORDER BY similarity(title, 'Vacum explaned') DESC LIMIT 1"
        )
        assert cur.fetchone() == ("Vacuum explained",)

        cur.execute("UPDATE users SET updated_at = '2001-01-01' WHERE id = 7")  # trigger wins
        for table in ("users", "posts", "comments"):
            cur.execute(f"SELECT updated_at FROM {table} WHERE id = 7")
            before = cur.fetchone()[0]
            cur.execute(f"UPDATE {table} SET created_at = created_at WHERE id = 7 "
                        "RETURNING updated_at")  # fmt: skip
            assert cur.fetchone()[0] > before, table
