"""scripts/run_tests.py (make test): every session's status counts, and an interrupt
reaches each pytest session once, as SIGINT, and is waited for (their clean-up runs)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "run_tests.py"

#: A stand-in pytest: records its arguments, exits with $UNIT_RC / $E2E_RC / $LAB_RC, or
#: with $HANG sleeps until SIGINT and then records its clean-up (what pytest's fixtures do).
FAKE = """#!{python}
import os, sys, time
half = next(h for h in ("lab", "e2e", "unit") if "tests/" + h in sys.argv)
out = os.environ["OUT"]
with open(os.path.join(out, half + ".args"), "w") as f:
    f.write(" ".join(sys.argv[1:]))
if os.environ.get("HANG"):
    try:
        time.sleep(60)
    except KeyboardInterrupt:
        with open(os.path.join(out, half + ".interrupts"), "a") as f:
            f.write("x")
        time.sleep(1)  # a second SIGINT here would abort the clean-up
        sys.exit(2)
sys.exit(int(os.environ[half.upper() + "_RC"]))
"""


@pytest.fixture
def fake(tmp_path: Path) -> Path:
    path = tmp_path / "pytest"
    path.write_text(FAKE.format(python=sys.executable))
    path.chmod(0o755)
    return path


def _run(fake: Path, out: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), str(fake), *args],
        env={**os.environ, "OUT": str(out), **env},
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


HALVES = ("unit", "e2e", "lab")


@pytest.mark.parametrize(
    ("unit", "e2e", "lab", "args", "want"),
    [("0", "0", "0", (), 0), ("1", "0", "0", (), 1), ("0", "1", "0", (), 1),
     ("0", "0", "1", (), 1), ("0", "0", "5", (), 1), ("0", "5", "5", ("-k", "verify"), 0),
     ("5", "0", "5", ("-k", "verify"), 0), ("5", "5", "5", ("-k", "verfy"), 1),
     ("5", "5", "5", (), 1)],
)  # fmt: skip
def test_every_session_must_pass(
    fake: Path, tmp_path: Path, unit: str, e2e: str, lab: str, args: tuple[str, ...], want: int
) -> None:
    proc = _run(fake, tmp_path, *args, UNIT_RC=unit, E2E_RC=e2e, LAB_RC=lab)
    assert proc.returncode == want, proc.stdout + proc.stderr
    assert f"=== chaos+lab (its own session, run beside the above): exit status {lab}" in (
        proc.stdout
    )
    assert f"=== e2e (its own session, run beside the above): exit status {e2e}" in proc.stdout
    assert f"=== unit+integration: exit status {unit}" in proc.stdout
    ran = {h: (tmp_path / f"{h}.args").read_text() for h in HALVES}
    assert ran["lab"].split()[-1 - len(args)] == "tests/lab"
    assert "tests/chaos tests/lab" in ran["lab"]
    assert "tests/unit tests/integration" in ran["unit"]
    assert ran["e2e"].split()[-1 - len(args)] == "tests/e2e"
    for h in HALVES:  # the caller's arguments reach every session, last
        assert ran[h].split()[len(ran[h].split()) - len(args) :] == list(args), ran[h]


def test_a_selection_that_matches_nothing_anywhere_fails_and_says_so(
    fake: Path, tmp_path: Path
) -> None:
    """A mistyped -k in PYTEST_ARGS: every session collects nothing (status 5)."""
    proc = _run(fake, tmp_path, "-k", "verfy", UNIT_RC="5", E2E_RC="5", LAB_RC="5")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "no session ran a test: PYTEST_ARGS selected nothing" in proc.stdout


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupt_reaches_both_sessions_once_and_is_waited_for(
    fake: Path, tmp_path: Path, signum: int
) -> None:
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), str(fake)],
        env={**os.environ, "OUT": str(tmp_path), "HANG": "1"},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while not all((tmp_path / f"{h}.args").exists() for h in HALVES):
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.1)
    if signum == signal.SIGINT:  # Ctrl-C: the terminal signals the whole foreground group
        os.killpg(proc.pid, signum)
    else:
        proc.send_signal(signum)
    output, _ = proc.communicate(timeout=30)
    assert proc.returncode == 1, output
    for half in HALVES:  # each cleaned up, after exactly one SIGINT
        assert (tmp_path / f"{half}.interrupts").read_text() == "x"
    assert "exit status 2" in output
