"""examples/app run as a real process against a deployed stack, as an operator would.

The app gets its DSN and password file from the environment, exactly as docs/client.md
tells; every health route and the write/read routes are exercised over HTTP, and the row is
checked with an independent connection.  ``VIA`` names how the app reaches the database:
``direct`` (postgres_port) and, once the stack has the pooler, ``pgbouncer``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pgsteady.client import get_pool
from tests.support.fork_safety import assert_fork_safe
from tests.support.stack import REPO, Stack, free_port

pytestmark = [pytest.mark.slow, pytest.mark.docker, pytest.mark.timeout(900)]

APP = REPO / "examples" / "app" / "app.py"


def direct_dsn(stack: Stack) -> str:
    return f"host=127.0.0.1 port={stack.port} user=app dbname=app sslrootcert={stack.ca_file}"


def pgbouncer_dsn(stack: Stack) -> str:
    port = stack.pgbouncer_port  # type: ignore[attr-defined]
    return f"host=127.0.0.1 port={port} user=app dbname=app sslrootcert={stack.ca_file}"


def _has_pooler() -> bool:
    from pgsteady.settings import Settings

    return "pgbouncer_port" in Settings.model_fields


VIA: dict[str, Callable[[Stack], str]] = {"direct": direct_dsn}
if _has_pooler():
    VIA["pgbouncer"] = pgbouncer_dsn


def http(url: str, method: str = "GET", data: dict[str, Any] | None = None) -> tuple[int, Any]:
    body = None if data is None else json.dumps(data).encode()
    req = urllib.request.Request(url, data=body, method=method)
    if body is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=20) as resp:
            status, raw, ctype = resp.status, resp.read(), resp.headers["Content-Type"]
    except urllib.error.HTTPError as err:
        status, raw, ctype = err.code, err.read(), err.headers["Content-Type"]
    return status, json.loads(raw) if ctype == "application/json" else raw.decode()


class RunningApp:
    def __init__(self, proc: subprocess.Popen[str], url: str, log: Path, via: str) -> None:
        self.proc, self.url, self.log, self.via = proc, url, log, via

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture(params=sorted(VIA))
def app(
    request: pytest.FixtureRequest, shared_stack: Stack, tmp_path: Path
) -> Iterator[RunningApp]:
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "DATABASE_URL": VIA[request.param](shared_stack),
        "DATABASE_PASSWORD_FILE": str(shared_stack.app_dir / "secrets" / "app_password"),
        "PGSTEADY_HEALTH_DETAILS": "1",
        "PORT": str(port),
        "PGCONNECT_TIMEOUT": "5",
    }
    log = tmp_path / "app.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, str(APP)], env=env, cwd=tmp_path, stdout=out,
            stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
    running = RunningApp(proc, f"http://127.0.0.1:{port}", log, request.param)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, f"example app exited:\n{running.output()}"
            try:
                if request_url_ok(running.url + "/api/health/live"):
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, f"app did not start:\n{running.output()}"
            time.sleep(0.2)
        yield running
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        with shared_stack.connect() as conn, conn.cursor() as cur:
            cur.execute("DROP TABLE IF EXISTS public.example_notes")  # hand the stack on clean


def request_url_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as resp:
        return resp.status == 200


def test_health_routes_and_a_write_then_read(app: RunningApp, shared_stack: Stack) -> None:
    url = app.url
    for path in ("/api/health", "/api/health/", "/api/health/ready", "/api/health/live"):
        status, body = http(url + path)
        assert status == 200 and body["status"] == "ok", (path, body)
    assert http(url + "/api/health/ready?role=primary") == (200, {"status": "ok"})
    status, body = http(url + "/api/health/ready?role=replica")
    assert status == 503 and "not a replica" in body["error"]
    assert http(url + "/api/health/ready?role=nope")[0] == 400
    status, body = http(url + "/api/health/detailed")
    assert status == 200 and body["database"]["role"] == "primary"
    assert body["database"]["database"] == "app"
    assert body["pool"]["minconn"] == 2 and body["pool"]["maxconn"] == 20

    status, note = http(url + "/notes", "POST", {"body": "hello from the example app"})
    assert status == 201 and note["body"] == "hello from the example app"
    assert http(url + f"/notes/{note['id']}") == (200, note)
    assert http(url + f"/notes/{note['id'] + 1000}")[0] == 404
    assert http(url + "/notes", "POST", {"body": ""})[0] == 400

    # The row is really in the database (an independent session, not the app's pool).
    with shared_stack.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT body FROM public.example_notes WHERE id = %s", (note["id"],))
        assert cur.fetchone() == ("hello from the example app",)
        # The app's sessions are TLS, as the DSN (sslmode added: verify-full) requires.
        cur.execute(
            "SELECT pg_catalog.bool_and(s.ssl), pg_catalog.count(*) FROM pg_catalog.pg_stat_ssl s"
            " JOIN pg_catalog.pg_stat_activity a USING (pid)"
            " WHERE a.usename = 'app' AND a.pid <> pg_catalog.pg_backend_pid()"
        )
        all_tls, sessions = cur.fetchone()
        if app.via == "direct":  # through the pooler these are its server sessions
            assert sessions >= 1 and all_tls is True

    output = app.output()
    assert "connection pool for" in output
    assert shared_stack.secret("app_password") not in output


def test_forked_worker_over_tls_keeps_the_parents_sessions(shared_stack: Stack) -> None:
    """get_pool()'s fork safety over TLS sessions to the deployed server (a TLS close_notify
    or query from the child on the parent's socket would break the parent's session)."""
    from pgsteady.client import close_pool

    close_pool()
    try:
        dsn = direct_dsn(shared_stack)
        password = shared_stack.secret("app_password")
        assert_fork_safe(dsn, connect_kwargs={"password": password})
        with get_pool().connection() as conn:
            assert conn.info.ssl_in_use
    finally:
        close_pool()
