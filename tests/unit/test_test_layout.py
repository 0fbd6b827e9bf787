"""The test tree itself: `make test` collects several directories in one pytest run."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
#: The directories `make test` runs (Makefile's test target: scripts/run_tests.py, in
#: sessions side by side).
RUN_TOGETHER = ("unit", "integration", "e2e", "chaos", "lab")


def test_test_modules_have_unique_names_across_one_run() -> None:
    """pytest's default import mode refuses two test modules of one basename in one run
    (`import file mismatch`): a second test_tls.py or test_pgbackrest.py stops the suite."""
    names = Counter(p.name for d in RUN_TOGETHER for p in (TESTS / d).glob("test_*.py"))
    assert [n for n, c in names.items() if c > 1] == []


def test_make_test_runs_these_directories() -> None:
    """make test runs scripts/run_tests.py: every test directory in exactly one session."""
    import importlib.util

    makefile = (TESTS.parent / "Makefile").read_text()
    recipe = makefile.split("\ntest:", 1)[1].split("\n\n", 1)[0]
    line = next(x for x in recipe.splitlines() if "$(PYTEST)" in x)
    assert "scripts/run_tests.py $(PYTEST)" in line, line
    script = TESTS.parent / "scripts" / "run_tests.py"
    spec = importlib.util.spec_from_file_location("run_tests", script)
    assert spec is not None and spec.loader is not None
    runner = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(runner)
    sessions = [d for dirs in runner.SESSIONS.values() for d in dirs]
    assert sorted(sessions) == sorted(f"tests/{d}" for d in RUN_TOGETHER), sessions


def test_no_test_imports_a_conftest_by_its_bare_name() -> None:
    """Directories without ``__init__.py`` each load their conftest.py as the module
    ``conftest``: in a session over two of them, ``from conftest import`` gets whichever
    was loaded last (tests/chaos's beside tests/lab stopped that session's collection).
    Tests import a conftest by its package path (``tests.lab.conftest``)."""
    offenders = [
        f"{p.relative_to(TESTS)}:{n}"
        for d in RUN_TOGETHER
        for p in (TESTS / d).rglob("*.py")
        for n, line in enumerate(p.read_text().splitlines(), 1)
        if line.startswith(("from conftest import", "import conftest"))
    ]
    assert offenders == []
