"""Bad input through the real CLI: a non-zero exit, the clear message, nothing created."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.stack import PYINFRA, REPO, Stack

pytestmark = pytest.mark.timeout(300)

CASES: list[tuple[dict[str, Any], list[str]]] = [
    ({"postgres_memory_limit": "4096GB"},
     ["1 invalid setting(s)", "postgres_memory_limit = '4096GB': above the host's RAM"]),
    ({"backup_schedule": "at 2am"},
     ["backup_schedule = 'at 2am'", "5-field cron expression"]),
    ({"postgres_version": 12}, ["postgres_version = 12: is not supported: use 13 to 18"]),
    ({"postgres_bind": "my-host"}, ["postgres_bind = 'my-host': is not an IP address"]),
    ({"postgres_settings": {"shared_bufers": "1GB"}},
     ["postgres_settings['shared_bufers'] = '1GB'", "did you mean 'shared_buffers'"]),
    ({"postgres_shared_buffers": "1GB"},
     ["postgres_shared_buffers: unknown setting", "server parameters go in postgres_settings"]),
    # the reviewed case: both refused, each with its reason, before anything is created
    ({"postgres_settings": {"fsync": "off"}, "postgres_memory_limit": "64MB"},
     ["2 invalid setting(s)", "postgres_settings['fsync'] = 'off': refused",
      "accepted: on, or leave it out", "postgres_memory_limit = '64MB': below the",
      "max_connections = 200", "accepted: at least"]),
    ({"postgres_version": 16, "postgres_settings": {"hba_file": "/tmp/pgsteady-hba"}},
     ["postgres_settings['hba_file'] = '/tmp/pgsteady-hba': cannot be overridden"]),
    ({"postgres_settings": {"synchronous_commit": "off"}},
     ["postgres_settings['synchronous_commit'] = 'off'", "postgres_accept_async_commit_loss"]),
]  # fmt: skip


@pytest.fixture
def fresh() -> Iterator[Stack]:
    stack = Stack()
    yield stack
    stack.destroy()


def _assert_refused(stack: Stack, result: Any, fragments: list[str]) -> None:
    assert result.returncode != 0, result.output[-2000:]
    for fragment in fragments:
        assert fragment in result.output, (fragment, result.output[-2000:])
    assert "Traceback" not in result.output
    assert stack.exists_anywhere() == []


@pytest.mark.parametrize(("data", "fragments"), CASES, ids=[",".join(c[0]) for c in CASES])
def test_bad_setting_is_refused_and_nothing_is_created(
    fresh: Stack, data: dict[str, Any], fragments: list[str]
) -> None:
    _assert_refused(fresh, fresh.deploy(**data), fragments)


def test_port_in_use_is_refused_and_nothing_is_created(fresh: Stack) -> None:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", fresh.port))
        sock.listen()
        result = fresh.deploy()
    _assert_refused(
        fresh,
        result,
        ["preflight failed", f"port {fresh.port} is in use by", "set postgres_port to a free port"],
    )


def test_statement_logging_of_passwords_warns_and_changes_nothing(fresh: Stack) -> None:
    """log_statement = ddl is valid, but the deploy says what it would log (dry run here)."""
    fresh.write_inventory(postgres_settings={"log_statement": "ddl"})
    proc = subprocess.run(
        [str(PYINFRA), "--dry", str(fresh.inventory), "deploy.py"],
        cwd=REPO, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-2000:]
    assert (
        "postgres_settings['log_statement'] = 'ddl': the server log will hold every "
        "ALTER ROLE ... PASSWORD in clear text"
    ) in output
    assert fresh.exists_anywhere() == []
