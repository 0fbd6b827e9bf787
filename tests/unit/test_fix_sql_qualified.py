"""Every SQL fix line the verify suite prints, and the runbook's superuser SQL, is safe to
run as printed: a pinned superuser session (PGOPTIONS or ``pgsteady-ctl psql``) and every
function named by its schema, so no overload the application creates can be called."""

from __future__ import annotations

import ast
import re
import types
from pathlib import Path

import pytest

from pgsteady.postgres.session import SUPERUSER_PGOPTIONS, superuser_psql, unqualified_calls
from pgsteady.verify import Fixes
from tests.support.verify_module import load_verify_module

REPO = Path(__file__).resolve().parents[2]
SUITE = REPO / "tests/verify"
#: Helpers whose string arguments are SQL of a fix line.
FIX_SQL_HELPERS = {"superuser_psql", "_psql", "_psql_fix", "_reset"}
#: ``-c '...'`` / ``-c "..."`` of a psql command line.
DASH_C = re.compile(r"-c (?:'([^']*)'|\"([^\"]*)\")")


def test_unqualified_calls_finds_the_reviewers_case() -> None:
    assert unqualified_calls("SELECT pg_drop_replication_slot('s')") == ["pg_drop_replication_slot"]
    assert unqualified_calls("SELECT pg_catalog.pg_drop_replication_slot('a(b')") == []
    assert unqualified_calls("SELECT pid, now() - xact_start, left(query, 80)") == [
        "now",
        "left",
    ]
    assert unqualified_calls("VACUUM (FREEZE, VERBOSE)") == []
    assert unqualified_calls("SELECT coalesce(x, 1) WHERE x IN (1, 2)") == []


def test_superuser_psql_pins_the_session_and_refuses_an_unqualified_call() -> None:
    line = superuser_psql("c", "SELECT pg_catalog.pg_reload_conf()", db="app", port=15432)
    assert f"'PGOPTIONS={SUPERUSER_PGOPTIONS}'" in line
    assert "-e PGPORT=15432 -u postgres c psql -X -v ON_ERROR_STOP=1 -d app " in line
    assert line.endswith(' -c "SELECT pg_catalog.pg_reload_conf()"')
    with pytest.raises(ValueError, match="pg_drop_replication_slot"):
        superuser_psql("c", "SELECT pg_drop_replication_slot('s')")


def _suite_trees() -> dict[Path, ast.Module]:
    return {p: ast.parse(p.read_text(), str(p)) for p in sorted(SUITE.glob("*.py"))}


def _strings(node: ast.AST) -> list[str]:
    """The literal text of ``node``: string constants and the fixed parts of f-strings."""
    return [
        n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)
    ]


def _fix_markers(tree: ast.Module) -> list[str]:
    """The first argument of every ``@pytest.mark.fix(...)``, joined."""
    out = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "fix"
            and node.args
        ):
            out.append("".join(_strings(node.args[0])))
    return out


def _helper_sql(tree: ast.Module) -> list[str]:
    """String arguments of the fix-SQL helpers (whole constants or f-string parts)."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
            if name in FIX_SQL_HELPERS:
                for arg in node.args:
                    out += _strings(arg)
    return out


def test_the_suite_has_fix_lines_to_check() -> None:
    """The scan below sees the fix lines it is meant to (it cannot pass by finding none)."""
    trees = _suite_trees()
    markers = [m for t in trees.values() for m in _fix_markers(t)]
    helper = [s for t in trees.values() for s in _helper_sql(t)]
    assert any("pgsteady-ctl psql" in m for m in markers)
    assert any("pg_catalog.pg_reload_conf()" in s for s in helper)
    assert any("pg_catalog.pg_drop_replication_slot" in s for s in helper)


def test_every_fix_sql_names_its_functions_schema() -> None:
    problems = []
    for path, tree in _suite_trees().items():
        for marker in _fix_markers(tree):
            for single, double in DASH_C.findall(marker):
                if bad := unqualified_calls(single or double):
                    problems.append(f"{path.name}: marker {marker!r}: {bad}")
        for sql in _helper_sql(tree):
            if bad := unqualified_calls(sql):
                problems.append(f"{path.name}: {sql!r}: {bad}")
    assert problems == []


def test_no_fix_line_runs_psql_unpinned() -> None:
    """psql as the superuser only with PGOPTIONS (or through pgsteady-ctl, which sets it)."""
    unpinned = re.compile(r"exec (?:-\w+ \S+ )*-u postgres \S+ psql")
    problems = []
    for path, tree in _suite_trees().items():
        for text in _strings(tree) + _fix_markers(tree):
            if unpinned.search(text) and "PGOPTIONS" not in text:
                problems.append(f"{path.name}: {text!r}")
    assert problems == []


def _runbook_sql() -> list[str]:
    """SQL in docs/operations.md code spans: ``SELECT ...`` and psql ``-c`` arguments."""
    text = (REPO / "docs/operations.md").read_text()
    out = re.findall(r"`((?:SELECT|ALTER|DROP|GRANT|REVOKE)\b[^`\n]*)`", text)
    for command in re.findall(r"pgsteady-ctl psql[^`\n]*", text):
        out += [single or double for single, double in DASH_C.findall(command)]
    return out


def test_runbook_superuser_sql_names_its_functions_schema() -> None:
    sql = _runbook_sql()
    assert any("pg_drop_replication_slot" in s for s in sql)
    bad = {s: unqualified_calls(s) for s in sql if unqualified_calls(s)}
    assert bad == {}


def test_slot_fix_drops_a_foreign_slot_safely_and_leaves_patronis_to_the_member() -> None:
    cluster = load_verify_module("test_cluster")
    s = types.SimpleNamespace(container_name="pg-1", postgres_member_port=15432)
    slots = [
        {"name": "pg_2", "type": "physical", "active": False},
        {"name": "logical_x", "type": "logical", "active": False},
        {"name": "pg_3", "type": "physical", "active": True},
    ]
    fixes = cluster.slot_fixes(slots, ["pg-1", "pg-2", "pg-3"], s, Fixes("inv.py"))
    assert len(fixes) == 2
    assert "Patroni's for member pg-2" in fixes[0] and "remove it" in fixes[0]
    assert "pg_drop_replication_slot" not in fixes[0]
    assert fixes[1].startswith(
        "on the leader: "
        + superuser_psql(
            "pg-1", "SELECT pg_catalog.pg_drop_replication_slot('logical_x')", port=15432
        )
        + " (a permanent slot"
    )
