"""pgsteady.client against a deployed pgsteady container instead of a bare server.

The pool and health-endpoint tests of tests/integration only use the PostgresServer
protocol (dsn, kill_postmaster, stop, start); here they run against the real product:
the postmaster is PID 1 of a container that Docker restarts, and the database is down
while the stack is stopped with ``pgsteady-ctl down``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.stack import Stack

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))

from test_client_health import (  # noqa: E402, F401
    base_url,
    detailed_url,
    test_endpoints_when_up,
    test_ready_503_while_down_and_200_after,
    test_ready_recovers_after_sigkill,
)
from test_client_pool import (  # noqa: E402, F401
    test_pool_exhausted_is_bounded,
    test_pool_survives_postmaster_sigkill,
)

pytestmark = pytest.mark.timeout(600)


class ContainerServer:
    """A deployed stack seen through the PostgresServer protocol."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.ctl = str(stack.app_dir / "bin" / "pgsteady-ctl")

    def dsn(self) -> str:
        s = self.stack
        return (
            f"host=127.0.0.1 port={s.port} user=app dbname=app password={s.secret('app_password')}"
            f" sslmode=verify-full sslrootcert={s.ca_file}"
        )

    def kill_postmaster(self) -> int:
        # Docker's restart delay resets only after 10 s of uptime (FINDINGS.md).
        time.sleep(max(0.0, 11 - self._uptime()))
        pid = self.stack.host_pid()
        os.kill(pid, signal.SIGKILL)
        return pid

    def _uptime(self) -> float:
        proc = subprocess.run(
            ["/usr/bin/docker", "exec", self.stack.container, "cat", "/proc/1/stat"],
            capture_output=True, text=True,
        )  # fmt: skip
        if proc.returncode != 0:
            return 0.0
        ticks = int(proc.stdout.rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as f:
            return float(f.read().split()[0]) - ticks / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        subprocess.run([self.ctl, "down"], check=True, capture_output=True)

    def start(self) -> None:
        subprocess.run([self.ctl, "up"], check=True, capture_output=True)
        self.stack.wait_until_accepting()


@pytest.fixture(scope="module")
def server() -> Iterator[ContainerServer]:
    """A stack of its own: its kills leave restarts that `make status` warns about (the
    shared stack's later modules must not see them)."""
    stack = Stack()
    result = stack.deploy()
    if result.returncode != 0:
        stack.destroy()
        pytest.fail(result.output[-4000:])
    try:
        yield ContainerServer(stack)
    finally:
        stack.destroy()
