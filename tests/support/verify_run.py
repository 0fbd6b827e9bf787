"""`make verify` and `make deploy` as an operator runs them, and what verify reported.

``make_verify`` parses the FAIL/SKIP lines, the check total and the JUnit file, so tests
can assert which checks failed, with which fix line, and that the others kept their outcome.
"""

from __future__ import annotations

import re
import subprocess
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.stack import REPO

FAIL_LINE = re.compile(r"^FAIL \[(?P<host>[^\]]+)\] (?P<id>\S+): (?P<what>.*) -- fix: (?P<fix>.*)$")
SKIP_LINE = re.compile(r"^SKIP \[(?P<host>[^\]]+)\] (?P<id>\S+): (?P<why>.*)$")
TOTAL_LINE = re.compile(r"^(\d+) checks: ")


@dataclass
class VerifyRun:
    """What one `make verify` printed and wrote."""

    returncode: int
    output: str
    total: int = 0
    failed: dict[str, tuple[str, str]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    junit_cases: int = 0
    junit_failures: int = 0
    seconds: float = 0.0


def make_verify(inventory: Path, junit: Path, target: str = "verify") -> VerifyRun:
    """`make verify INVENTORY=... JUNIT=...` (the venv's install stamp is taken as is)."""
    started = time.monotonic()
    proc = subprocess.run(
        [
            "make",
            "-s",
            "-o",
            ".venv/.installed",
            target,
            f"INVENTORY={inventory}",
            f"JUNIT={junit}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    run = VerifyRun(proc.returncode, proc.stdout + proc.stderr)
    run.seconds = time.monotonic() - started
    for line in proc.stdout.splitlines():
        if m := FAIL_LINE.match(line):
            run.failed[m["id"]] = (m["what"], m["fix"])
        elif m := SKIP_LINE.match(line):
            run.skipped[m["id"]] = m["why"]
        elif m := TOTAL_LINE.match(line):
            run.total = int(m[1])
    if junit.exists():
        cases = ET.parse(junit).getroot().iter("testcase")
        for case in cases:
            run.junit_cases += 1
            run.junit_failures += bool(
                case.find("failure") is not None or case.find("error") is not None
            )
    return run


def make_deploy(inventory: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "-s", "-o", ".venv/.installed", "deploy", f"INVENTORY={inventory}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
