"""The shipped alert rules against their promtool tests, the contract and the runbook.

Every alert of files/metrics/pgsteady-alerts.yml has a promtool test case where it fires
and one where it stays silent, a severity, a summary, a description and a runbook_url
whose anchor is a heading of docs/operations.md. The checks are shown to fail on a rule
file that breaks them. (promtool itself runs in tests/integration/test_alert_rules.py.)
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "files/metrics/pgsteady-alerts.yml"
RULE_TESTS = sorted((REPO / "tests/metrics").glob("*.yml"))
OPERATIONS = REPO / "docs/operations.md"
MONITORING = REPO / "docs/monitoring.md"

#: The alerts issue 17 asks for (named in the metrics contract between the exporters and
#: the rules).
REQUIRED = {
    "PostgresDown", "PostgresRestarted", "PostgresCrashLoop", "PostgresConnectionsHigh",
    "PostgresDeadlocks", "PostgresLongTransaction", "PostgresXidWraparoundRisk",
    "PostgresReplicationLagHigh", "PostgresReplicationSlotInactive",
    "PostgresArchivingFailing", "PostgresWalArchiveStale", "PostgresBackupTooOld",
    "HostDiskAlmostFull", "CertificateExpiresSoon", "PgsteadyMetricsStale", "ExporterDown",
}  # fmt: skip


def alert_rules(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The alerting rules (not recording rules) of a Prometheus rule file."""
    return [r for g in doc["groups"] for r in g["rules"] if "alert" in r]


def test_cases(docs: Iterable[dict[str, Any]]) -> tuple[set[str], set[str]]:
    """(alerts some case expects to fire, alerts some case expects to stay silent)."""
    fires: set[str] = set()
    silent: set[str] = set()
    for doc in docs:
        for test in doc.get("tests", []):
            for case in test.get("alert_rule_test", []):
                (fires if case.get("exp_alerts") else silent).add(case["alertname"])
    return fires, silent


test_cases.__test__ = False  # a helper, not a pytest test


def github_anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives the headings of a Markdown page."""
    anchors = set()
    in_code = False
    for line in markdown.splitlines():
        if line.startswith("```"):
            in_code = not in_code
        if in_code or not line.startswith("#"):
            continue
        title = line.lstrip("#").strip().lower()
        anchors.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return anchors


def problems(rules: dict[str, Any], tests: list[dict[str, Any]], runbook: str) -> list[str]:
    """Each way the rule file falls short: untested alerts, bad labels, dead runbook links."""
    found = []
    fires, silent = test_cases(tests)
    anchors = github_anchors(runbook)
    for rule in alert_rules(rules):
        name = rule["alert"]
        if name not in fires:
            found.append(f"{name}: no promtool case where it fires")
        if name not in silent:
            found.append(f"{name}: no promtool case where it stays silent")
        if rule.get("labels", {}).get("severity") not in ("critical", "warning"):
            found.append(f"{name}: severity must be critical or warning")
        notes = rule.get("annotations", {})
        for key in ("summary", "description", "runbook_url"):
            if not notes.get(key):
                found.append(f"{name}: no {key} annotation")
        url = notes.get("runbook_url", "")
        page, _, anchor = url.partition("#")
        if page != "docs/operations.md" or anchor not in anchors:
            found.append(f"{name}: runbook_url {url!r} is not a heading of docs/operations.md")
    return found


def _load() -> tuple[dict[str, Any], list[dict[str, Any]]]:
    return yaml.safe_load(RULES.read_text()), [yaml.safe_load(p.read_text()) for p in RULE_TESTS]


def test_every_alert_is_tested_labelled_and_has_a_runbook_section() -> None:
    rules, tests = _load()
    assert RULE_TESTS, "no promtool test file under tests/metrics"
    assert problems(rules, tests, OPERATIONS.read_text()) == []


def test_every_alert_of_the_issue_is_shipped() -> None:
    rules, _ = _load()
    assert REQUIRED - {r["alert"] for r in alert_rules(rules)} == set()


def test_every_alert_is_explained_in_the_monitoring_page() -> None:
    rules, _ = _load()
    page = MONITORING.read_text()
    assert [r["alert"] for r in alert_rules(rules) if f"`{r['alert']}`" not in page] == []


def test_the_checks_catch_an_untested_alert_and_a_dead_runbook_link() -> None:
    rules, tests = _load()
    rules["groups"][0]["rules"].append(
        {
            "alert": "PostgresOnFire",
            "expr": "vector(1)",
            "labels": {"severity": "page-me"},
            "annotations": {"summary": "s", "runbook_url": "docs/operations.md#no-such-part"},
        }
    )
    found = problems(rules, tests, OPERATIONS.read_text())
    assert [p for p in found if p.startswith("PostgresOnFire")] == [
        "PostgresOnFire: no promtool case where it fires",
        "PostgresOnFire: no promtool case where it stays silent",
        "PostgresOnFire: severity must be critical or warning",
        "PostgresOnFire: no description annotation",
        "PostgresOnFire: runbook_url 'docs/operations.md#no-such-part' is not a heading of "
        "docs/operations.md",
    ]
    # An alert tested only where it fires is caught too.
    only_fires = [
        {"tests": [{"alert_rule_test": [{"alertname": "PostgresDown", "exp_alerts": [{}]}]}]}
    ]
    assert "PostgresDown: no promtool case where it stays silent" in problems(
        rules, only_fires, OPERATIONS.read_text()
    )


def test_github_anchors() -> None:
    page = "# Ops\n## Pool exhausted / too many connections\n```sh\n# not a heading\n```\n" \
           "### Archive stuck\n## Updates (`make update-image`)\n"  # fmt: skip
    assert github_anchors(page) == {
        "ops", "pool-exhausted--too-many-connections", "archive-stuck",
        "updates-make-update-image",
    }  # fmt: skip
