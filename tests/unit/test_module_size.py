"""Product modules stay small enough to hold in one's head, or say why not."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LIMIT = 400


def test_modules_above_the_limit_say_why_at_the_top() -> None:
    files = [*(REPO / "pgsteady").rglob("*.py"), *(REPO / "tasks").rglob("*.py")]
    assert len(files) > 40
    unexplained = []
    for path in files:
        text = path.read_text()
        if text.count("\n") <= LIMIT:
            continue
        doc = ast.get_docstring(ast.parse(text)) or ""
        if f"Above {LIMIT} lines because" not in doc:
            unexplained.append(f"{path.relative_to(REPO)} ({text.count(chr(10))} lines)")
    assert not unexplained, unexplained
