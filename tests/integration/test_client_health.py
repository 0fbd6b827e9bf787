"""pgsteady.client.HealthApp served over real HTTP, against a real PostgreSQL taken down and up.

The tests only use the ``server`` fixture's PostgresServer protocol, so a container-backed
fixture can replace SupervisedPostgres.
"""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import psycopg2
import pytest
from pgserver_supervised import PostgresServer, SupervisedPostgres, available

from pgsteady.client import Backoff, HealthApp, Pool
from pgsteady.client.health import DETAILS_ENV

_UNAVAILABLE = available()
pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(_UNAVAILABLE is not None, reason=_UNAVAILABLE or ""),
]

READY_TIMEOUT = 1.5


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    with SupervisedPostgres() as srv:
        yield srv


@contextmanager
def serving(server: PostgresServer, **options: Any) -> Iterator[str]:
    """A HealthApp on a real pool, served over HTTP on a free port; yields its base URL."""
    pool = Pool(
        server.dsn(),
        minconn=1,
        maxconn=4,
        connect_timeout=2,
        connect_backoff=Backoff(base=0.2, max_attempts=3, deadline=5),
    )
    app = HealthApp(pool, timeout=3.0, ready_timeout=READY_TIMEOUT, **options)
    httpd: WSGIServer = make_server("127.0.0.1", 0, app, handler_class=QuietHandler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}"
    finally:
        httpd.shutdown()
        thread.join(10)
        httpd.server_close()
        pool.close()


@pytest.fixture
def base_url(server: PostgresServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The public app: no opt-in (argument or environment)."""
    monkeypatch.delenv(DETAILS_ENV, raising=False)
    with serving(server) as url:
        yield url


@pytest.fixture
def detailed_url(server: PostgresServer) -> Iterator[str]:
    """The app with details, for routes only trusted callers reach."""
    with serving(server, details=True) as url:
        yield url


def fetch(url: str, method: str = "GET") -> tuple[int, str, dict[str, Any], float]:
    """(status, content type, JSON body, seconds taken) -- never raises for HTTP errors."""
    started = time.monotonic()
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=15) as resp:
            status, ctype, raw = resp.status, resp.headers["Content-Type"], resp.read()
    except urllib.error.HTTPError as err:
        status, ctype, raw = err.code, err.headers["Content-Type"], err.read()
    return status, ctype, json.loads(raw), time.monotonic() - started


def _server_version(server: PostgresServer) -> str:
    with psycopg2.connect(server.dsn()) as conn, conn.cursor() as cur:
        cur.execute("SHOW server_version")
        return cur.fetchone()[0]


def test_endpoints_when_up(server: PostgresServer, base_url: str, detailed_url: str) -> None:
    status, ctype, body, _ = fetch(base_url + "/health")
    assert (status, ctype, body) == (200, "application/json", {"status": "ok"})

    status, _, body, _ = fetch(detailed_url + "/health/detailed")
    assert status == 200 and body["status"] == "ok"
    db = body["database"]
    assert db["role"] == "primary" and db["in_recovery"] is False
    assert db["server_version"] == _server_version(server)
    assert db["size_bytes"] > 0 and 0 <= db["latency_ms"] < 1000
    assert body["pool"]["maxconn"] == 4 and body["pool"]["size"] >= 1

    assert fetch(base_url + "/health/ready")[0] == 200
    assert fetch(base_url + "/health/live")[0] == 200
    assert fetch(base_url + "/health/nope")[0] == 404
    assert fetch(base_url + "/health", method="POST")[0] == 405


def test_ready_503_while_down_and_200_after(
    server: PostgresServer, base_url: str, detailed_url: str
) -> None:
    assert fetch(base_url + "/health/ready")[0] == 200
    server.stop()
    try:
        seen = [fetch(base_url + "/health/ready") for _ in range(3)]
        for status, ctype, body, took in seen:
            assert status == 503 and ctype == "application/json"
            assert body == {"status": "unavailable"}  # no libpq error text in public
            assert took < READY_TIMEOUT + 1.0  # bounded: never hangs
        assert fetch(base_url + "/health")[0] == 503
        status, _, body, _ = fetch(detailed_url + "/health/detailed")
        assert status == 503 and "pool" in body and body["error"]
        assert fetch(base_url + "/health/live")[0] == 200
    finally:
        server.start()

    deadline = time.monotonic() + 30
    while fetch(base_url + "/health/ready")[0] != 200:
        assert fetch(base_url + "/health/live")[0] == 200
        assert time.monotonic() < deadline, "ready did not come back after the server started"
        time.sleep(0.1)
    assert fetch(base_url + "/health")[0] == 200
    assert fetch(base_url + "/health/live")[0] == 200


def test_ready_recovers_after_sigkill(server: PostgresServer, base_url: str) -> None:
    """ready turns 503 after a SIGKILL and back to 200 once the supervisor restarted it."""
    assert fetch(base_url + "/health/ready")[0] == 200
    server.kill_postmaster()
    deadline = time.monotonic() + 30
    statuses: list[int] = []
    while not (503 in statuses and statuses[-1] == 200):
        assert time.monotonic() < deadline, f"ready did not go down and up: {statuses}"
        status, _, _, took = fetch(base_url + "/health/ready")
        assert took < READY_TIMEOUT + 1.0
        statuses.append(status)
        time.sleep(0.02)
    assert fetch(base_url + "/health/live")[0] == 200


def test_public_routes_expose_no_server_details(server: PostgresServer, base_url: str) -> None:
    """Without the opt-in no route names the version, pid, database or pool, up or down."""
    version = _server_version(server)
    secrets = [version, str(os.getpid()), "postgres", "pool", "pid", "uptime", "127.0.0.1"]
    bodies = []
    for path in ("/health", "/health/ready", "/health/live", "/health/detailed", "/nope"):
        status, _, body, _ = fetch(base_url + path)
        bodies.append((path, status, body))
    server.stop()
    try:
        for path in ("/health", "/health/ready", "/health/live", "/health/detailed"):
            status, _, body, _ = fetch(base_url + path)
            bodies.append((path, status, body))
    finally:
        server.start()
    statuses = {(path, status) for path, status, _ in bodies}
    assert ("/health/detailed", 404) in statuses and ("/health", 503) in statuses
    for path, status, body in bodies:
        assert set(body) <= {"status", "error"}, (path, body)
        text = json.dumps(body)
        for secret in secrets:
            assert secret not in text, (path, status, body)
    assert all(b["status"] in ("ok", "unavailable", "error") for _, _, b in bodies)
