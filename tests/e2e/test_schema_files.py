"""Schema files end to end: the deploy applies them logged in as the app role.

A schema file's seed INSERT fires a trigger that first tries ``RESET ROLE`` and records
who it runs as; were the file applied by the superuser under ``SET ROLE`` (as before),
it would run as the superuser and escalate with ``COPY ... TO PROGRAM``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.stack import Stack, docker

pytestmark = pytest.mark.timeout(900)

MARKER = "/tmp/pgsteady-schema-pwned"
SCHEMA = rf"""
CREATE TABLE IF NOT EXISTS seeded (k text PRIMARY KEY, by_session name, by_user name,
                                   super boolean);
CREATE OR REPLACE FUNCTION seeded_who() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE was name := current_user;
BEGIN
  BEGIN RESET ROLE; EXCEPTION WHEN OTHERS THEN NULL; END;
  NEW.by_session := session_user;
  NEW.by_user := current_user;
  NEW.super := (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user);
  IF NEW.super THEN
    BEGIN
      COPY (SELECT 1) TO PROGRAM 'touch {MARKER}';
    EXCEPTION WHEN OTHERS THEN NULL;
    END;
  END IF;
  EXECUTE pg_catalog.format('SET ROLE %I', was);
  RETURN NEW;
END $$;
CREATE OR REPLACE TRIGGER seeded_t BEFORE INSERT ON seeded
  FOR EACH ROW EXECUTE FUNCTION seeded_who();
INSERT INTO seeded (k) VALUES ('a') ON CONFLICT DO NOTHING;
"""


def test_schema_files_are_applied_logged_in_as_the_app_role(tmp_path: Path) -> None:
    schema = tmp_path / "app.sql"
    schema.write_text(SCHEMA)
    stack = Stack(data={"postgres_schema_files": [str(schema)]})
    try:
        first = stack.deploy()
        assert first.returncode == 0, first.output[-4000:]
        row = stack.psql("SELECT k, by_session, by_user, super FROM seeded", "app")
        assert row == "a|app|app|f"
        assert docker("exec", stack.container, "test", "-e", MARKER, check=False).returncode == 1
        owner = stack.psql("SELECT tableowner FROM pg_tables WHERE tablename = 'seeded'", "app")
        assert owner == "app"
        init = stack.app_dir / "init"
        assert (init / "schema.psql").is_file()
        # nothing the entrypoint runs as the superuser includes the schema files
        assert not [p.name for p in init.glob("*.sql") if "\\i " in p.read_text()]
        again = stack.deploy()
        assert again.returncode == 0, again.output[-4000:]
        assert again.changed == 0, again.changed_operations()
    finally:
        stack.destroy()
