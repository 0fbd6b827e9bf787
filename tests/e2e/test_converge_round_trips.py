"""A no-op converge asks the host few facts (issue 19 item 4): each is a round trip over
SSH. The files the converge writes are read in one round trip (tasks/noop_guard.py);
a file that drifted is still rewritten, and the run after that changes nothing.

On the e2e conftest's ``shared_stack`` (no deploy of its own): the drift is re-converged,
so the stack is handed on converged.
"""

from __future__ import annotations

import os
from pathlib import Path

from tests.support.stack import Stack

#: Facts of a no-op converge of the default stack: 137 before noop_guard, 49 with it.
MAX_FACTS = 70


def _facts(output: str) -> int:
    return sum("Getting fact:" in line for line in output.splitlines())


def test_noop_converge_reads_the_written_files_in_one_round_trip(shared_stack: Stack) -> None:
    result = shared_stack.deploy("--debug")
    assert result.returncode == 0, result.output[-3000:]
    assert result.changed == 0, result.changed_operations()
    facts = _facts(result.output)
    assert facts <= MAX_FACTS, f"{facts} facts (round trips) for a no-op converge"
    # The written files' own facts (stat, directory, sha1) are skipped.
    assert f"Getting fact: files.Sha1File (path={shared_stack.app_dir}/config/" not in result.output


def test_drifted_files_are_still_rewritten(shared_stack: Stack) -> None:
    conf = Path(shared_stack.app_dir) / "config" / "postgresql.conf"
    ctl_env = Path(shared_stack.app_dir) / "etc" / "ctl.env"
    cron = Path(f"/etc/cron.d/pgsteady-backup-{shared_stack.name}")
    before = {p: p.read_bytes() for p in (conf, ctl_env, cron)}
    os.chmod(conf, 0o600)
    with ctl_env.open("a") as f:
        f.write("DRIFT=1\n")
    with cron.open("a") as f:
        f.write("# drift\n")
    result = shared_stack.deploy()
    assert result.returncode == 0, result.output[-3000:]
    changed = result.changed_operations()
    assert any(f"Set {conf} to owner" in c for c in changed), changed
    assert any("Write ctl.env" in c for c in changed), changed
    assert any(f"Write {cron}" in c for c in changed), changed
    assert {p: p.read_bytes() for p in before} == before
    assert oct(conf.stat().st_mode & 0o777) == "0o640"
    assert shared_stack.deploy().changed == 0
