"""Operation names in tasks/ are short imperative sentences (what pyinfra prints per change)."""

from __future__ import annotations

import ast
from pathlib import Path

TASKS = Path(__file__).resolve().parents[2] / "tasks"
#: Verbs an operation name may start with; a noun phrase ("TLS directory") is refused.
VERBS = {
    "Apply", "Build", "Check", "Create", "Enable", "Generate", "Install", "Issue", "Load",
    "Pull", "Reload", "Remove", "Restart", "Set", "Start", "Stop", "Take", "Upgrade", "Upload",
    "Wait", "Write",
}  # fmt: skip


def _literal_start(node: ast.expr) -> str | None:
    """The leading literal text of a str or f-string expression, else None."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr) and node.values:
        first = node.values[0]
        if isinstance(first, ast.Constant) and isinstance(first.value, str):
            return first.value
        return ""
    return None


def operation_names() -> list[tuple[str, int, str]]:
    """(file, line, leading text) of every ``name=`` string and ``directory_owned`` name."""
    found = []
    for path in sorted(TASKS.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            values = [k.value for k in node.keywords if k.arg == "name"]
            if isinstance(node.func, ast.Name) and node.func.id == "directory_owned":
                values += node.args[1:2]
            for value in values:
                text = _literal_start(value)
                if text is not None:
                    found.append((path.name, node.lineno, text))
    return found


def test_every_operation_name_starts_with_a_verb() -> None:
    names = operation_names()
    assert len(names) > 40, names  # the walk finds the operations at all
    bad = [n for n in names if n[2].split(" ", 1)[0] not in VERBS]
    assert not bad, bad


def test_operation_names_are_short_and_end_without_a_full_stop() -> None:
    bad = [n for n in operation_names() if len(n[2]) > 90 or n[2].rstrip().endswith(".")]
    assert not bad, bad
