"""Import structure: no cycles in pgsteady/ and tasks/, and the host-side backup tool
(pgsteady/backuptool) is an acyclic, standard-library-only package whose command line is
the only module that imports both the backup and the restore side.

Edges are module-level imports (what runs when a module is imported), found with ast;
imports inside functions run later and cannot deadlock an import, so they are not edges.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TOOL = "pgsteady.backuptool"
BACKUP_SIDE = {f"{TOOL}.backup"}
RESTORE_SIDE = {f"{TOOL}.restore", f"{TOOL}.drill", f"{TOOL}.load", f"{TOOL}.databases"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules(*roots: str) -> dict[str, Path]:
    """Every module under the given top-level directories, by dotted name."""
    return {module_name(p): p for root in roots for p in sorted((REPO / root).rglob("*.py"))}


def top_level_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """Imports that run when the module is imported (not in functions, not TYPE_CHECKING)."""
    found: list[ast.Import | ast.ImportFrom] = []
    todo: list[ast.stmt] = list(tree.body)
    while todo:
        node = todo.pop(0)
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        elif isinstance(node, ast.If):
            if "TYPE_CHECKING" not in ast.unparse(node.test):
                todo += node.body + node.orelse
        elif isinstance(node, ast.Try):
            todo += node.body + node.orelse + node.finalbody
            todo += [s for h in node.handlers for s in h.body]
    return found


def imported_names(name: str, path: Path, node: ast.Import | ast.ImportFrom) -> list[str]:
    """The absolute module names an import statement can import."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for _ in range(node.level - 1):
            package = package.rpartition(".")[0]
        base = f"{package}.{node.module}" if node.module else package
    else:
        base = node.module or ""
    return [base, *(f"{base}.{alias.name}" for alias in node.names)]


def graph(known: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the modules of ``known`` it imports at module level (with their packages)."""
    edges: dict[str, set[str]] = {}
    for name, path in known.items():
        out = edges.setdefault(name, set())
        for node in top_level_imports(ast.parse(path.read_text(), str(path))):
            for target in imported_names(name, path, node):
                parts = target.split(".")
                for i in range(1, len(parts) + 1):
                    candidate = ".".join(parts[:i])
                    is_ancestor = name == candidate or name.startswith(candidate + ".")
                    if candidate in known and not is_ancestor:
                        out.add(candidate)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module, or a self-import."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in edges.get(v, ()):
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def reachable(edges: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for w in edges.get(todo.pop(), ()):
            if w not in seen:
                seen.add(w)
                todo.append(w)
    return seen


def test_the_cycle_finder_finds_a_cycle() -> None:
    """The control case: a two-module and a self cycle are reported, a chain is not."""
    edges = {"a": {"b"}, "b": {"a"}, "c": {"c"}, "d": {"e"}, "e": set()}
    assert cycles(edges) == [["a", "b"], ["c"]]


def test_pgsteady_and_tasks_have_no_import_cycles() -> None:
    edges = graph(modules("pgsteady", "tasks"))
    assert len(edges) > 40 and f"{TOOL}.cli" in edges
    assert cycles(edges) == []


def test_backuptool_has_no_import_cycles_and_only_the_cli_joins_the_sides() -> None:
    known = {n: p for n, p in modules("pgsteady").items() if n.startswith(TOOL)}
    edges = graph(known)
    assert cycles(edges) == []
    assert not [m for m, out in edges.items() if f"{TOOL}.cli" in out], "nothing imports cli"
    for name in sorted(edges):
        below = reachable(edges, name)
        joins = bool(below & BACKUP_SIDE) and bool(below & RESTORE_SIDE)
        assert not joins or name == f"{TOOL}.cli", f"{name} reaches both sides"
    assert edges[f"{TOOL}.cli"] >= BACKUP_SIDE and f"{TOOL}.restore" in edges[f"{TOOL}.cli"]


@pytest.mark.parametrize("path", sorted((REPO / "pgsteady" / "backuptool").glob("*.py")))
def test_backuptool_imports_only_the_standard_library(path: Path) -> None:
    """Every import, also inside functions, is relative (the package) or of the stdlib."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            tops = [alias.name.split(".")[0] for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            tops = [] if node.level else [(node.module or "").split(".")[0]]
        else:
            continue
        outside = [t for t in tops if t not in sys.stdlib_module_names]
        assert not outside, f"{path.name}:{node.lineno} imports {outside}: not on the host"
