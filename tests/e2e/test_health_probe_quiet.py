"""A deployed stack's health probes leave no trace in the Postgres log (issue 19 item 5),
while a real client's connection is still logged (log_connections = on).

The stack's own probe interval (2 s in the e2e harness) runs for several probes; the
watchdog is kept away so that nothing else of pgsteady connects meanwhile.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from tests.support.stack import Stack, docker

PROBES = 5


def _logs_since(stack: Stack, since: str) -> str:
    proc = docker("logs", "--since", since, stack.container)
    return proc.stdout + proc.stderr


def _probes_since(stack: Stack, since: datetime) -> list[dict]:
    log = stack.inspect()["State"]["Health"]["Log"]
    return [p for p in log if datetime.fromisoformat(p["Start"][:26] + "+00:00") > since]


def test_probes_do_not_log_connections_but_clients_do(deployed: Stack) -> None:
    deployed.wait_healthy()
    deployed.stop_watchdog()
    since = datetime.now(UTC)
    stamp = since.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    deadline = time.monotonic() + 120
    while len(probes := _probes_since(deployed, since)) < PROBES:
        assert time.monotonic() < deadline, f"only {len(probes)} probes ran"
        time.sleep(1)
    assert all(p["ExitCode"] == 0 for p in probes), probes
    assert deployed.inspect()["State"]["Health"]["Status"] == "healthy"
    assert "connection received" not in _logs_since(deployed, stamp)

    with deployed.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT 1")
    time.sleep(0.5)
    assert "connection received: host=" in _logs_since(deployed, stamp)
