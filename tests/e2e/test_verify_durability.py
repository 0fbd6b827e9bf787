"""`make verify` catches a running server that would lose acknowledged commits.

One converged stack; each fault is made the way an operator or the app role could make it
(ALTER SYSTEM, ALTER ROLE ... SET), `make verify` must fail the durability check with a fix
line that undoes it, and an inventory that accepts asynchronous commits turns the failure
into a reported skip.
"""

from __future__ import annotations

import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.support.stack import Stack
from tests.support.verify_run import VerifyRun, make_verify

pytestmark = pytest.mark.timeout(900)

FSYNC = "durability/fsync_and_full_page_writes_on"
SYNC = "durability/synchronous_commit"


def _junit(st: Stack, name: str) -> Path:
    return st.dir / f"durability-{name}.xml"  # the shared stack's dir: test_verify's too


def _verify(st: Stack, name: str) -> VerifyRun:
    return make_verify(st.inventory, _junit(st, name))


def _apply_config(st: Stack) -> None:
    proc = subprocess.run(
        [f"{st.app_dir}/bin/pgsteady-ctl", "apply-config"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr


def test_durability_checks_pass_on_a_converged_host(shared_stack: Stack) -> None:
    run = _verify(shared_stack, "baseline")
    assert FSYNC not in run.failed and SYNC not in run.failed, run.output[-3000:]
    assert FSYNC not in run.skipped and SYNC not in run.skipped
    ran = {
        case.get("name", ""): {child.tag for child in case}
        for case in ET.parse(_junit(shared_stack, "baseline")).getroot().iter("testcase")
        if "test_durability" in case.get("classname", "")
    }
    assert len(ran) == 2, ran  # both checks ran, and passed:
    assert all(not {"failure", "error", "skipped"} & tags for tags in ran.values()), ran


def test_async_commit_for_the_app_role_is_caught(shared_stack: Stack) -> None:
    shared_stack.psql("ALTER ROLE app SET synchronous_commit = off")
    try:
        run = _verify(shared_stack, "async-role")
    finally:
        shared_stack.psql("ALTER ROLE app RESET synchronous_commit")
    what, fix = run.failed[SYNC]
    assert "role app: synchronous_commit = off" in what
    assert "ALTER ROLE app RESET synchronous_commit" in fix
    assert run.returncode != 0 and FSYNC not in run.failed

    # Accepted in the inventory: reported as a skip with the reason, not a failure.
    shared_stack.psql("ALTER ROLE app SET synchronous_commit = off")
    shared_stack.write_inventory(postgres_accept_async_commit_loss=True)
    try:
        run = _verify(shared_stack, "async-accepted")
    finally:
        shared_stack.psql("ALTER ROLE app RESET synchronous_commit")
        shared_stack.write_inventory()
    assert SYNC not in run.failed
    assert "accepted by postgres_accept_async_commit_loss" in run.skipped[SYNC]


def test_fsync_off_at_runtime_is_caught(shared_stack: Stack) -> None:
    shared_stack.psql("ALTER SYSTEM SET fsync = off")
    _apply_config(shared_stack)
    try:
        run = _verify(shared_stack, "fsync-off")
    finally:
        shared_stack.psql("ALTER SYSTEM RESET ALL")
        _apply_config(shared_stack)
    what, fix = run.failed[FSYNC]
    assert "fsync = off" in what and "postgresql.auto.conf" in what
    assert "ALTER SYSTEM RESET fsync" in fix
    assert _verify(shared_stack, "after").failed.keys().isdisjoint({FSYNC, SYNC})
