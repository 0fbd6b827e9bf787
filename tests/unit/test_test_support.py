"""Tests share their harness through the tests.support package, not sys.path edits."""

from __future__ import annotations

import re
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
SYS_PATH_EDIT = re.compile(r"\bsys\.path\.(insert|append|extend)\(")

#: Files still allowed to edit sys.path, and why.
STILL_EDITING = {
    # Re-runs tests/integration's client tests, which import pgserver_supervised by basename.
    "e2e/test_client_container.py",
    # Loads tests/verify modules, which import their own conftest by basename.
    "support/verify_module.py",
    # Writes another project's deploy file that puts a pgsteady checkout on its sys.path.
    "e2e/test_config.py",
    # Runs the host's python3 on the backup tool's zip, as the wrapper on the host does.
    "unit/test_backup_artifact.py",
}


def test_no_test_module_edits_sys_path_to_reach_other_helpers() -> None:
    editing = {
        str(path.relative_to(TESTS))
        for path in TESTS.rglob("*.py")
        if SYS_PATH_EDIT.search(path.read_text())
    }
    editing.discard("unit/test_test_support.py")  # this file names the pattern
    assert editing <= STILL_EDITING, sorted(editing - STILL_EDITING)
