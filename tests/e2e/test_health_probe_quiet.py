"""A deployed stack's health probes leave no trace in the Postgres log (issue 19 item 5),
while a real client's connection is still logged (log_connections = on).

The stack's own probe interval (2 s in the e2e harness) runs for several probes; the
watchdog is kept away so that nothing else of pgsteady connects meanwhile. On the e2e
conftest's ``shared_stack`` (no deploy of its own): the watchdog's cron files and the
stack's stop marker are put back as they were afterwards.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from tests.support.stack import Stack, docker

PROBES = 5


def _logs_since(stack: Stack, since: str) -> str:
    proc = docker("logs", "--since", since, stack.container)
    return proc.stdout + proc.stderr


def _probes_since(stack: Stack, since: datetime) -> list[dict]:
    log = stack.inspect()["State"]["Health"]["Log"]
    return [p for p in log if datetime.fromisoformat(p["Start"][:26] + "+00:00") > since]


@pytest.fixture
def quiet_stack(shared_stack: Stack) -> Iterator[Stack]:
    """The shared stack with its watchdog kept away; handed back as it was."""
    shared_stack.wait_healthy()
    jobs = {p: (p.read_bytes(), p.stat().st_mode) for p in shared_stack.scheduled_files()}
    marker = shared_stack.app_dir / ".stopped"
    had_marker = marker.exists()
    shared_stack.stop_watchdog()
    try:
        yield shared_stack
    finally:
        for path, (content, mode) in jobs.items():
            path.write_bytes(content)
            path.chmod(mode)
        if not had_marker:
            marker.unlink(missing_ok=True)


def test_probes_do_not_log_connections_but_clients_do(quiet_stack: Stack) -> None:
    since = datetime.now(UTC)
    stamp = since.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    deadline = time.monotonic() + 120
    while len(probes := _probes_since(quiet_stack, since)) < PROBES:
        assert time.monotonic() < deadline, f"only {len(probes)} probes ran"
        time.sleep(1)
    assert all(p["ExitCode"] == 0 for p in probes), probes
    assert quiet_stack.inspect()["State"]["Health"]["Status"] == "healthy"
    assert "connection received" not in _logs_since(quiet_stack, stamp)

    with quiet_stack.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT 1")
    time.sleep(0.5)
    assert "connection received: host=" in _logs_since(quiet_stack, stamp)
