"""postgres_auto_updated_at: validated, and init_db.sql creates or drops the event trigger."""

from __future__ import annotations

import pytest

from pgsteady.postgres.conf_files import render_init_db_sql
from pgsteady.settings import HostFacts, SettingsError, build_settings

FACTS = HostFacts(4096, 2)
CREATE = "CREATE EVENT TRIGGER pgsteady_auto_updated_at ON ddl_command_end"
DROP = "DROP EVENT TRIGGER IF EXISTS pgsteady_auto_updated_at;"


def test_off_by_default_drops_the_event_trigger() -> None:
    sql = render_init_db_sql(build_settings({}, FACTS))
    assert DROP in sql and CREATE not in sql
    assert "CREATE OR REPLACE FUNCTION pgsteady.set_updated_at()" in sql  # always there


def test_on_creates_it() -> None:
    sql = render_init_db_sql(build_settings({"postgres_auto_updated_at": True}, FACTS))
    assert CREATE in sql and DROP not in sql
    assert "EXECUTE FUNCTION pgsteady.auto_updated_at()" in sql


def test_a_non_boolean_is_refused_with_the_key_and_value() -> None:
    with pytest.raises(SettingsError) as err:
        build_settings({"postgres_auto_updated_at": "yes"}, FACTS)
    text = str(err.value)
    assert "postgres_auto_updated_at" in text and "'yes'" in text
