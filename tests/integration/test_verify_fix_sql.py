"""A verify fix line, run as printed, never calls the application's overload.

The app plants ``public.pg_drop_replication_slot(text)`` in a database whose ``public`` it
may create in (``postgres`` before PG 15, ``app`` always). For a quoted literal that
overload wins over pg_catalog's ``(name)`` version in a session whose search_path has
``public``: the old fix line, typed into psql as the superuser, ran the app's code as the
superuser (the control). The fix line the check prints now (a pinned session, the function
named by its schema) drops the real slot and never reaches the app's function.
"""

from __future__ import annotations

import subprocess
import types
from pathlib import Path

import pytest
from backup_env import DOCKER, Postgres
from debian_images import debian_image_or_skip, engine_or_skip

from pgsteady.verify import Fixes
from tests.support.verify_module import load_verify_module

pytestmark = pytest.mark.docker

PLANT = """
SET ROLE app;
CREATE TABLE public.ran_as (who name);
GRANT INSERT ON public.ran_as TO PUBLIC;
CREATE FUNCTION public.pg_drop_replication_slot(text) RETURNS void LANGUAGE sql
AS $$ INSERT INTO public.ran_as SELECT current_user $$;
"""


@pytest.fixture(scope="module")
def pg():
    container = Postgres(debian_image_or_skip(engine_or_skip(), 17))
    try:
        container.sql(
            "CREATE ROLE app LOGIN; ALTER DATABASE app OWNER TO app; "
            "GRANT CREATE ON SCHEMA public TO app",  # postgres.public, as before PG 15
            "postgres",
        )
        container.sql(PLANT, "postgres")
        yield container
    finally:
        container.remove()


def _slot(pg: Postgres, name: str) -> None:
    pg.sql(f"SELECT pg_catalog.pg_create_physical_replication_slot('{name}')", "postgres")


def _state(pg: Postgres, name: str) -> tuple[str, str]:
    """(slots named ``name``, rows the app's overload recorded)."""
    return (
        pg.value(
            f"SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{name}'", "postgres"
        ),
        pg.value("SELECT coalesce(string_agg(who, ','), '') FROM public.ran_as", "postgres"),
    )


def test_the_old_fix_line_runs_the_apps_overload_as_the_superuser(pg):
    _slot(pg, "old_line")
    pg.sql("SELECT pg_drop_replication_slot('old_line')", "postgres")
    assert _state(pg, "old_line") == ("1", "postgres")  # slot kept, app code ran as postgres
    pg.sql("DELETE FROM public.ran_as; SELECT pg_catalog.pg_drop_replication_slot('old_line')",
           "postgres")  # fmt: skip


def test_the_printed_fix_line_drops_the_slot_and_never_the_apps_code(pg):
    _slot(pg, "gone_consumer")
    s = types.SimpleNamespace(container_name=pg.name, postgres_member_port=5432)
    slots = [{"name": "gone_consumer", "type": "physical", "active": False}]
    (line,) = load_verify_module("test_cluster").slot_fixes(
        slots, ["pg-1", "pg-2"], s, Fixes("inv.py")
    )
    command = line.removeprefix("on the leader: ").partition(" (a permanent slot")[0]
    proc = subprocess.run(
        ["sh", "-c", command], capture_output=True, text=True, timeout=60,
        env={"PATH": f"{Path(DOCKER).parent}:/usr/bin:/bin"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert _state(pg, "gone_consumer") == ("0", "")
