"""docs/launch.md maps every promise of the old setup to a feature and the tests that keep
it: each named test file must exist, each named test function must be defined in it, and
every Make target and setting the page tells an operator to use must exist."""

from __future__ import annotations

import re
from pathlib import Path

from pgsteady.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs/launch.md"


def _promise_rows() -> list[list[str]]:
    text = GUIDE.read_text()
    section = text.split("## The old setup's promises, kept", 1)[1]
    rows = [line for line in section.splitlines() if line.startswith("| ")]
    cells = [[c.strip() for c in row.strip("|").split("|")] for row in rows]
    return [c for c in cells[1:] if not set(c[0]) <= {"-", " "}]


def test_every_promise_names_tests_that_exist() -> None:
    rows = _promise_rows()
    assert len(rows) >= 6, rows
    for promise, _feature, tested_by in rows:
        if promise.startswith("a one-page launch guide"):
            continue  # this page; the test you are reading keeps it true
        refs = re.findall(r"`(tests/[^`]+)`", tested_by)
        assert refs, f"promise {promise!r} names no test"
        for ref in refs:
            path, _, name = ref.partition("::")
            file = ROOT / path
            assert file.exists(), f"{promise!r}: {path} does not exist"
            if name:
                assert re.search(rf"^def {re.escape(name)}\(", file.read_text(), re.M), (
                    f"{promise!r}: {path} defines no test {name}"
                )


def test_settings_and_targets_named_on_the_page_exist() -> None:
    text = GUIDE.read_text()
    makefile = (ROOT / "Makefile").read_text()
    for target in set(re.findall(r"make ([a-z][a-z-]+)", text)):
        assert re.search(rf"^{re.escape(target)}:", makefile, re.M), f"make {target}"
    known = set(Settings.model_fields)
    for key in set(re.findall(r"`((?:postgres|pgbouncer|pgbackrest|preflight)_[a-z_]+)`", text)):
        assert key in known, f"setting {key} named in docs/launch.md does not exist"
