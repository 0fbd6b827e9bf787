"""pgsteady-upgrade-major runs the same PG_VERSION reader as the deploy's fact.

The host script cannot import pgsteady; it holds the program inside single quotes.
What the program does on a real volume: tests/integration/test_volume_pg_version.py.
"""

from __future__ import annotations

from pathlib import Path

from pgsteady.stack.volume_version import READ_PG_VERSION_PY

SCRIPT = Path(__file__).resolve().parents[2] / "files/bin/pgsteady-upgrade-major"


def test_the_upgrade_script_holds_the_reader_verbatim() -> None:
    assert "'" not in READ_PG_VERSION_PY
    assert f"python3 -c '{READ_PG_VERSION_PY.rstrip()}' \"$1\"" in SCRIPT.read_text()
