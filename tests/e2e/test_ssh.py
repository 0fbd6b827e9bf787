"""Deploy and verify over SSH: pyinfra and testinfra reach the host as an operator's would.

A private sshd on 127.0.0.1 (key login only) stands in for a remote host; the inventory
names it ``127.0.0.1`` with ssh_port/ssh_user/ssh_key/known_hosts, so the deploy runs
through pyinfra's SSH connector and the verify suite through testinfra's ``ssh://``.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.support.sshd import Sshd
from tests.support.stack import PYINFRA, REPO, Stack

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def sshd() -> Iterator[Sshd]:
    server = Sshd().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def ssh_stack(sshd: Sshd) -> Iterator[Stack]:
    stack = Stack()
    data = {**stack.host_data(), **sshd.host_data()}
    stack.inventory.write_text(f"hosts = [('127.0.0.1', {data!r})]\n")
    yield stack
    stack.destroy()


def test_deploy_and_verify_over_ssh(sshd: Sshd, ssh_stack: Stack) -> None:
    deploy = subprocess.run(
        [str(PYINFRA), "-y", str(ssh_stack.inventory), "deploy.py"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    output = deploy.stdout + deploy.stderr
    assert deploy.returncode == 0, output[-4000:]
    assert "[127.0.0.1] Connected" in output, output[-4000:]

    junit = ssh_stack.dir / "verify-ssh.xml"
    verify = subprocess.run(
        [sys.executable, "-m", "pgsteady.verify", "--inventory", str(ssh_stack.inventory)]
        + ["--junit", str(junit)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    out = verify.stdout + verify.stderr
    assert verify.returncode == 0, out[-4000:]
    assert "verify 127.0.0.1 (ssh://root@127.0.0.1:" in out
    checks = int(out.split(" checks: OK")[0].split()[-1])
    assert checks >= 30, out
    assert 'testsuite name="127.0.0.1"' in junit.read_text()
