"""Tests share their harness through the tests.support package, not sys.path edits."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

from tests.support import sshd, stack

TESTS = Path(__file__).resolve().parents[1]
SYS_PATH_EDIT = re.compile(r"\bsys\.path\.(insert|append|extend)\(")

#: Files still allowed to edit sys.path, and why.
STILL_EDITING = {
    # The lead switches it to tests.support.stack; tests/e2e/stack.py re-exports until then.
    "lab/conftest.py",
    # Re-runs tests/integration's client tests, which import pgserver_supervised by basename.
    "e2e/test_client_container.py",
    # Loads tests/verify modules, which import their own conftest by basename.
    "integration/test_verify_roles.py",
}


def test_no_test_module_edits_sys_path_to_reach_other_helpers() -> None:
    editing = {
        str(path.relative_to(TESTS))
        for path in TESTS.rglob("*.py")
        if SYS_PATH_EDIT.search(path.read_text())
    }
    editing.discard("unit/test_test_support.py")  # this file names the pattern
    assert editing <= STILL_EDITING, sorted(editing - STILL_EDITING)


def _load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"compat_{path.stem}", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_old_e2e_module_paths_re_export_the_support_objects() -> None:
    """tests/lab/conftest.py and bench/ still import `stack` / `sshd` from tests/e2e."""
    old_stack = _load(TESTS / "e2e" / "stack.py")
    assert old_stack.Stack is stack.Stack
    assert old_stack.DeployResult is stack.DeployResult
    assert old_stack.parse_grand_total is stack.parse_grand_total
    for name in old_stack.__all__:
        assert getattr(old_stack, name) is getattr(stack, name), name
    assert _load(TESTS / "e2e" / "sshd.py").Sshd is sshd.Sshd
