"""Schema parity on a deployed stack: examples/schema/app.sql as a schema file with
postgres_auto_updated_at on, a table the application creates later, the monitor's
performance section, a second deploy without changes, then the setting turned off."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.stack import REPO, Stack

pytestmark = pytest.mark.timeout(1200)

EXAMPLE = REPO / "examples" / "schema" / "app.sql"
PYTHON = REPO / ".venv" / "bin" / "python"
TRIGGERS = (
    "SELECT string_agg(tgrelid::regclass || ':' || tgname || ':' || tgfoid::regprocedure, ' '"
    " ORDER BY tgrelid::regclass::text) FROM pg_catalog.pg_trigger WHERE NOT tgisinternal"
)


def test_example_schema_auto_updated_at_and_performance(tmp_path: Path) -> None:
    schema = tmp_path / "01_app.sql"
    shutil.copy(EXAMPLE, schema)
    stack = Stack(data={"postgres_schema_files": [str(schema)], "postgres_auto_updated_at": True})
    try:
        first = stack.deploy()
        assert first.returncode == 0, first.output[-4000:]
        fn = "pgsteady.set_updated_at()"
        assert stack.psql(TRIGGERS, "app") == " ".join(
            f"{t}:pgsteady_updated_at:{fn}" for t in ("comments", "posts", "users")
        )
        with stack.connect() as conn, conn.cursor() as cur:
            cur.execute(
                "CREATE TABLE notes (id int PRIMARY KEY, body text, updated_at timestamptz)"
            )
            cur.execute("INSERT INTO notes VALUES (1, 'a', '2001-01-01')")
            cur.execute("INSERT INTO users (email, username) VALUES ('a@b.example', 'alice')")
            cur.execute(
                "INSERT INTO posts (author_id, title, slug, body) SELECT id, 'Vacuum explained', "
                "'vacuum', 'bloat' FROM users"
            )
        with stack.connect() as conn, conn.cursor() as cur:
            cur.execute("UPDATE notes SET body = 'b' RETURNING updated_at > '2020-01-01'")
            assert cur.fetchone() == (True,)
            cur.execute(
                "SELECT title FROM posts WHERE search @@ websearch_to_tsquery('english', 'vacuum')"
            )
            assert cur.fetchall() == [("Vacuum explained",)]
            for _ in range(50):
                cur.execute("SELECT count(*) FROM notes WHERE id > 0")
        assert f"notes:pgsteady_updated_at:{fn}" in stack.psql(TRIGGERS, "app")

        proc = subprocess.run(
            [str(PYTHON), "-m", "pgsteady.monitor", "--inventory", str(stack.inventory), "--json"],
            cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        perf = json.loads(proc.stdout)["hosts"][0]["performance"]
        assert perf["available"] and perf["statements_available"], perf
        assert perf["database"] == "app" and 0 <= perf["cache_hit_ratio"] <= 1
        top = perf["by_calls"][0]
        assert "FROM notes" in top["query"] and top["calls"] >= 50 and top["user"] == "app", perf

        again = stack.deploy()
        assert again.returncode == 0, again.output[-4000:]
        assert again.changed == 0, again.changed_operations()

        off = stack.deploy(postgres_auto_updated_at=False)
        assert off.returncode == 0, off.output[-4000:]
        assert stack.psql("SELECT count(*) FROM pg_catalog.pg_event_trigger", "app") == "0"
        with stack.connect() as conn, conn.cursor() as cur:
            cur.execute("CREATE TABLE later (id int, updated_at timestamptz)")
        triggers = stack.psql(TRIGGERS, "app")
        assert "later:" not in triggers and "notes:pgsteady_updated_at" in triggers
    finally:
        stack.destroy()
