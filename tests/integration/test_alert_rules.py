"""The shipped alert rules checked and unit-tested by the real promtool (Debian package).

`promtool check rules` parses every expression and template; `promtool test rules` runs
tests/metrics/*.yml (each alert fires on its fault with the expected labels and
annotations, and stays silent on the healthy case next to it). A rule whose threshold
drifts makes the tests fail.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "files/metrics/pgsteady-alerts.yml"
RULE_TESTS = sorted((REPO / "tests/metrics").glob("*.yml"))
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"

pytestmark = pytest.mark.skipif(
    not Path(PROMTOOL).exists(), reason="promtool missing (sh scripts/ensure-test-host)"
)


def promtool(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PROMTOOL, *args], capture_output=True, text=True, cwd=cwd, timeout=120, check=False
    )


def test_promtool_check_rules_accepts_the_rule_file() -> None:
    proc = promtool("check", "rules", str(RULES))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_promtool_rule_tests_pass() -> None:
    assert RULE_TESTS
    proc = promtool("test", "rules", *map(str, RULE_TESTS))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "FAILED" not in proc.stdout + proc.stderr


def test_a_drifted_threshold_fails_the_rule_tests(tmp_path: Path) -> None:
    """The same tests against a copy whose PostgresWalArchiveStale allows 4 x
    archive_timeout and whose PostgresDown waits 5 minutes: promtool names both."""
    rules = RULES.read_text()
    drifted = rules.replace("clamp_min(2 * pg_settings_archive_timeout_seconds, 60)",
                            "clamp_min(4 * pg_settings_archive_timeout_seconds, 60)")  # fmt: skip
    drifted = drifted.replace(
        "expr: pg_up == 0\n        for: 30s", "expr: pg_up == 0\n        for: 5m"
    )
    assert drifted.count("4 * pg_settings") == 1 and "for: 5m" in drifted
    (tmp_path / "files/metrics").mkdir(parents=True)
    (tmp_path / "files/metrics" / RULES.name).write_text(drifted)
    (tmp_path / "tests/metrics").mkdir(parents=True)
    for test in RULE_TESTS:
        shutil.copy(test, tmp_path / "tests/metrics" / test.name)
    proc = promtool("test", "rules", *(f"tests/metrics/{t.name}" for t in RULE_TESTS),
                    cwd=tmp_path)  # fmt: skip
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert "alertname: PostgresWalArchiveStale" in out
    assert "alertname: PostgresDown" in out


def test_promtool_check_rules_refuses_a_broken_expression(tmp_path: Path) -> None:
    broken = tmp_path / "rules.yml"
    broken.write_text(RULES.read_text().replace("pg_up == 0", "pg_up == == 0"))
    proc = promtool("check", "rules", str(broken))
    assert proc.returncode != 0
    assert "FAILED" in proc.stdout + proc.stderr
