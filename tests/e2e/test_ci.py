"""`make ci` end to end on one stack: the real make target, pyinfra, verify and JUnit file.

In order, on one fresh stack: a runner without the inventory's saved `.pgsteady/` state
is stopped before the converge and leaves nothing behind; the first converge (with
ALLOW_NEW_STATE=1) passes every stage with a JUnit file of verify's checks and the
stages; a bad setting then stops the run at the settings stage, naming the key, with the
running host untouched; a fault the converge does not undo (a second superuser) fails
the verify stage, and the JUnit file names the failed check. Over SSH, with the key and
known_hosts handed over as secret texts the way a CI store does (the same stack, reached
through a private sshd): a host key other than the pinned one stops the run before
anything changes; the pinned one, with the state the first converge saved, converges
and verifies over SSH (pyinfra's SSH connector, testinfra's ssh://).
"""

from __future__ import annotations

import os
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.sshd import Sshd
from tests.support.stack import REPO, Stack

pytestmark = pytest.mark.timeout(900)


@dataclass
class CiRun:
    """What one `make ci` printed, and its JUnit file's cases by suite."""

    returncode: int
    output: str
    # suite -> case -> passed|failed|skipped; a verify case is "module::name" (two groups
    # may have a check of the same name, e.g. container and pooler test_healthy)
    cases: dict[str, dict[str, str]]

    def stage(self, name: str) -> str:
        return self.cases["pgsteady ci"][name]


def make_ci(stack: Stack, *extra: str, env: dict[str, str] | None = None) -> CiRun:
    junit = stack.dir / "ci.xml"
    proc = subprocess.run(
        ["make", "-s", "-o", ".venv/.installed", "ci", f"INVENTORY={stack.inventory}",
         f"JUNIT={junit}", *extra],
        cwd=REPO, capture_output=True, text=True, timeout=900, env={**os.environ, **(env or {})},
    )  # fmt: skip
    cases: dict[str, dict[str, str]] = {}
    for suite in ET.parse(junit).getroot().iter("testsuite"):
        for case in suite.iter("testcase"):
            outcome = "passed"
            if case.find("failure") is not None or case.find("error") is not None:
                outcome = "failed"
            elif case.find("skipped") is not None:
                outcome = "skipped"
            name = case.get("name", "")
            if suite.get("name") != "pgsteady ci":
                name = f"{case.get('classname', '').rsplit('.', 1)[-1]}::{name}"
            cases.setdefault(suite.get("name", ""), {})[name] = outcome
    return CiRun(proc.returncode, proc.stdout + proc.stderr, cases)


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    st = Stack()
    st.write_inventory()
    yield st
    st.destroy()


@pytest.fixture(scope="module")
def state_dir(stack: Stack) -> Path:
    return stack.dir / ".pgsteady" / "inventory"


def test_a_runner_without_the_saved_state_changes_nothing(stack: Stack, state_dir: Path) -> None:
    run = make_ci(stack)
    assert run.returncode != 0, run.output[-3000:]
    assert "FAILED at stage state" in run.output, run.output[-3000:]
    assert run.stage("dry-run") == "passed"
    assert run.stage("state") == "failed"
    assert run.stage("deploy") == run.stage("verify") == "skipped"
    # The CA the dry run made is gone again, and the host was not touched.
    assert not (stack.dir / ".pgsteady").exists()
    assert stack.exists_anywhere() == []


def test_first_converge_passes_every_stage(stack: Stack, state_dir: Path) -> None:
    run = make_ci(stack, "ALLOW_NEW_STATE=1")
    assert run.returncode == 0, run.output[-4000:]
    assert "OK: converged and verified" in run.output
    assert set(run.cases["pgsteady ci"].values()) == {"passed"}
    checks = run.cases["@local"]
    assert len(checks) >= 30, checks
    assert "failed" not in checks.values()
    assert (state_dir / "ca.key").stat().st_mode & 0o777 == 0o600
    stack.wait_healthy()


def test_a_bad_setting_stops_at_settings_and_changes_nothing(stack: Stack) -> None:
    conf = stack.app_dir / "config" / "postgresql.conf"
    before = (conf.read_bytes(), stack.inspect()["State"]["StartedAt"])
    stack.write_inventory(postgres_max_connections=0)
    run = make_ci(stack)
    assert run.returncode != 0
    assert "FAILED at stage settings" in run.output, run.output[-3000:]
    assert "postgres_max_connections = 0" in run.output, run.output[-3000:]
    assert run.stage("settings") == "failed"
    assert {run.stage(s) for s in ("dry-run", "state", "deploy", "verify")} == {"skipped"}
    assert (conf.read_bytes(), stack.inspect()["State"]["StartedAt"]) == before
    stack.write_inventory()


def test_a_fault_the_converge_keeps_fails_verify_in_junit(stack: Stack) -> None:
    stack.psql("CREATE ROLE ci_intruder SUPERUSER")
    try:
        run = make_ci(stack)
    finally:
        stack.psql("DROP ROLE ci_intruder")
    assert run.returncode != 0
    assert "FAILED at stage verify" in run.output, run.output[-3000:]
    assert run.stage("deploy") == "passed" and run.stage("verify") == "failed"
    failed = [name for name, outcome in run.cases["@local"].items() if outcome == "failed"]
    assert [name.split("::")[-1].split("[")[0] for name in failed] == ["test_one_superuser"], failed


# --- over SSH, with the key and known_hosts from the "CI's secret store" ----------------------

SSH_INVENTORY = """import os

hosts = [("127.0.0.1", {{
    **{data!r},
    "ssh_key": os.environ["PGSTEADY_SSH_KEY_FILE"],
    "ssh_known_hosts_file": os.environ["PGSTEADY_SSH_KNOWN_HOSTS_FILE"],
    "ssh_strict_host_key_checking": "yes",
}})]
"""


@pytest.fixture(scope="module")
def sshd() -> Iterator[Sshd]:
    server = Sshd().start()
    yield server
    server.stop()


def secrets_env(sshd: Sshd, known_hosts: str) -> dict[str, str]:
    return {
        "PGSTEADY_SSH_PRIVATE_KEY": sshd.client_key.read_text(),
        "PGSTEADY_SSH_KNOWN_HOSTS": known_hosts,
    }


def over_ssh(stack: Stack, sshd: Sshd) -> None:
    """The same stack's inventory, now reaching this machine through ``sshd``."""
    data = {**stack.host_data(), "ssh_port": sshd.port, "ssh_user": "root"}
    stack.inventory.write_text(SSH_INVENTORY.format(data=data))


def test_over_ssh_an_unpinned_host_key_stops_before_any_change(sshd: Sshd, stack: Stack) -> None:
    over_ssh(stack, sshd)
    conf = stack.app_dir / "config" / "postgresql.conf"
    before = (conf.read_bytes(), stack.inspect()["State"]["StartedAt"])
    other = stack.dir / "other_host_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    kind, key = other.with_suffix(".pub").read_text().split()[:2]
    run = make_ci(stack, env=secrets_env(sshd, f"[127.0.0.1]:{sshd.port} {kind} {key}\n"))
    assert run.returncode != 0
    assert "FAILED at stage settings" in run.output, run.output[-3000:]
    assert "127.0.0.1: cannot read its facts" in run.output, run.output[-3000:]
    assert run.stage("deploy") == "skipped"
    assert (conf.read_bytes(), stack.inspect()["State"]["StartedAt"]) == before
    assert "PRIVATE KEY" not in run.output


def test_over_ssh_with_the_saved_state_and_pinned_key_it_converges(
    sshd: Sshd, stack: Stack
) -> None:
    over_ssh(stack, sshd)
    run = make_ci(stack, env=secrets_env(sshd, sshd.known_hosts.read_text()))
    assert run.returncode == 0, run.output[-4000:]
    assert "[127.0.0.1] Connected" in run.output
    assert set(run.cases["pgsteady ci"].values()) == {"passed"}
    assert "failed" not in run.cases["127.0.0.1"].values()
    assert len(run.cases["127.0.0.1"]) >= 30
    assert "PRIVATE KEY" not in run.output
    # pyinfra reached the host through its SSH connector and the verify suite through
    # testinfra's ssh:// backend (this stack is the only one in make test that converges and
    # verifies through the private sshd; the lab's first converge runs over SSH too).
    assert f"verify 127.0.0.1 (ssh://root@127.0.0.1:{sshd.port}" in run.output, run.output[-3000:]
    checks = int(run.output.split(" checks: OK")[0].split()[-1])
    assert checks == len(run.cases["127.0.0.1"]) >= 30, run.output[-3000:]
