"""The health routes in Flask and Starlette, and readiness by role on a real primary and a
real streaming replica (pg_basebackup -R from the primary, replay paused to make lag)."""

from __future__ import annotations

import asyncio
import atexit
import json
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg2
import pytest
from flask import Flask
from pgserver_supervised import SupervisedPostgres, available
from starlette.applications import Starlette

from pgsteady.client import Backoff, HealthApp, Pool
from pgsteady.client.asgi import health_routes
from pgsteady.client.flask import health_blueprint

_UNAVAILABLE = available()
pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.skipif(_UNAVAILABLE is not None, reason=_UNAVAILABLE or ""),
]
ROUTES = ("/api/health", "/api/health/", "/api/health/ready", "/api/health/live")


class Replica(SupervisedPostgres):
    """A hot standby streaming from ``primary`` (base backup over the primary's socket)."""

    def __init__(self, primary: SupervisedPostgres) -> None:
        super().__init__()
        self.primary = primary

    def setup(self) -> Replica:
        atexit.register(self.close)
        self._run_as_user(
            [str(self.bindir / "pg_basebackup"), "-D", str(self.datadir), "-R", "-X", "stream",
             "-c", "fast", "--no-sync", "-h", str(self.primary.sockdir),
             "-p", str(self.primary.port), "-U", "postgres"]
        )  # fmt: skip
        self.sockdir.mkdir()
        os.chown(self.sockdir, self._uid, self._gid)
        self.start()
        return self


def socket_dsn(srv: SupervisedPostgres) -> str:
    return f"host={srv.sockdir} port={srv.port} user=postgres dbname=postgres"


def sql(srv: SupervisedPostgres, query: str, *params: Any) -> Any:
    with psycopg2.connect(socket_dsn(srv)) as conn, conn.cursor() as cur:
        cur.execute(query, params or None)
        return cur.fetchone() if cur.description else None


def small_pool(srv: SupervisedPostgres) -> Pool:
    return Pool(
        socket_dsn(srv), minconn=1, maxconn=3, connect_timeout=2,
        connect_backoff=Backoff(base=0.1, max_attempts=2, deadline=3),
    )  # fmt: skip


@pytest.fixture(scope="module")
def primary() -> Iterator[SupervisedPostgres]:
    with SupervisedPostgres() as srv:
        yield srv


@pytest.fixture(scope="module")
def replica(primary: SupervisedPostgres) -> Iterator[Replica]:
    with Replica(primary) as srv:
        yield srv


@pytest.fixture(autouse=True)
def no_details_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PGSTEADY_HEALTH_DETAILS", raising=False)


# -- a minimal ASGI client: drives the real Starlette app without an HTTP server -----------


def asgi_get(app: Any, path: str, method: str = "GET") -> tuple[int, dict[str, Any]]:
    raw_path, _, query = path.partition("?")
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
        "scheme": "http", "path": raw_path, "raw_path": raw_path.encode(),
        "query_string": query.encode(), "root_path": "", "headers": [],
        "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80),
    }  # fmt: skip
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    headers = {k.decode().lower(): v.decode() for k, v in start["headers"]}
    if start["status"] < 400 or headers.get("content-type") == "application/json":
        assert headers["cache-control"] == "no-store"
        return start["status"], json.loads(body) if body else {}
    return start["status"], {}


def flask_get(app: Flask, path: str, method: str = "GET") -> tuple[int, dict[str, Any]]:
    resp = app.test_client().open(path, method=method)
    if resp.mimetype == "application/json":
        assert resp.headers["Cache-Control"] == "no-store"
        return resp.status_code, resp.get_json()
    return resp.status_code, {}


def flask_app(pool: Pool, **kw: Any) -> Flask:
    app = Flask(__name__)
    app.register_blueprint(health_blueprint(pool, **kw))
    return app


def starlette_app(pool: Pool, **kw: Any) -> Starlette:
    return Starlette(routes=health_routes(pool, **kw))


ADAPTERS = {"flask": (flask_app, flask_get), "asgi": (starlette_app, asgi_get)}


@pytest.mark.parametrize("adapter", sorted(ADAPTERS))
def test_routes_on_a_primary(primary: SupervisedPostgres, adapter: str) -> None:
    make, get = ADAPTERS[adapter]
    with small_pool(primary) as pool:
        app = make(pool)
        for path in ROUTES:
            assert get(app, path) == (200, {"status": "ok"}), path
        assert get(app, "/api/health/detailed")[0] == 404  # details are opt-in
        assert get(app, "/api/health/ready?role=primary") == (200, {"status": "ok"})
        assert get(app, "/api/health/ready?role=replica") == (503, {"status": "unavailable"})
        assert get(app, "/api/health/ready?max_lag_s=5") == (200, {"status": "ok"})
        status, body = get(app, "/api/health/ready?role=leader")
        assert status == 400 and "role='leader'" in body["error"]
        status, body = get(app, "/api/health/ready?role=replica&max_lag_s=-1")
        assert status == 400 and "max_lag_s='-1'" in body["error"]
        assert get(app, "/api/health/ready", method="POST")[0] == 405
        assert get(app, "/health")[0] == 404

        detailed = make(pool, details=True, prefix="/ops/db/")
        status, body = get(detailed, "/ops/db/detailed")
        assert status == 200 and body["database"]["role"] == "primary"
        assert body["pool"]["maxconn"] == 3
        assert "pid" in get(detailed, "/ops/db/live")[1]
        status, body = get(detailed, "/ops/db/ready?role=replica")
        assert status == 503 and "not a replica" in body["error"]
        assert get(detailed, "/api/health")[0] == 404


@pytest.mark.parametrize("adapter", sorted(ADAPTERS))
def test_routes_answer_503_while_the_server_is_down(
    primary: SupervisedPostgres, adapter: str
) -> None:
    make, get = ADAPTERS[adapter]
    with small_pool(primary) as pool:
        app = make(pool, ready_timeout=1.0, timeout=1.5)
        primary.stop()
        try:
            for path in ("/api/health", "/api/health/ready", "/api/health/ready?role=primary"):
                started = time.monotonic()
                assert get(app, path) == (503, {"status": "unavailable"}), path
                assert time.monotonic() - started < 3.0  # bounded probe
            assert get(app, "/api/health/live") == (200, {"status": "ok"})
        finally:
            primary.start()


def wsgi_get(app: HealthApp, path: str) -> tuple[int, dict[str, Any]]:
    raw, _, query = path.partition("?")
    out: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        out["status"] = int(status.split()[0])

    env = {"PATH_INFO": raw, "QUERY_STRING": query, "REQUEST_METHOD": "GET"}
    body = b"".join(app(env, start_response))
    return out["status"], json.loads(body)


def wait_for(predicate: Any, timeout: float = 30.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_replica_readiness_follows_replay_lag(
    primary: SupervisedPostgres, replica: Replica
) -> None:
    """role=replica is ready within max_lag_s, not ready once replay falls behind."""
    sql(primary, "CREATE TABLE IF NOT EXISTS ticks (at timestamptz)")
    sql(primary, "INSERT INTO ticks VALUES (now())")

    target = sql(primary, "SELECT pg_catalog.pg_current_wal_lsn()")[0]

    def caught_up() -> bool:
        row = sql(
            replica,
            "SELECT pg_catalog.pg_last_wal_receive_lsn() = pg_catalog.pg_last_wal_replay_lsn()"
            " AND pg_catalog.pg_last_wal_replay_lsn() >= %s::pg_lsn",
            target,
        )
        return bool(row[0])

    wait_for(caught_up, what="the replica to replay the first write")
    with small_pool(replica) as pool:
        app = HealthApp(pool, prefix="/api/health", details=True)
        status, body = wsgi_get(app, "/api/health/detailed")
        assert status == 200 and body["database"]["role"] == "replica"
        assert wsgi_get(app, "/api/health/ready?role=replica&max_lag_s=1")[0] == 200
        status, body = wsgi_get(app, "/api/health/ready?role=primary")
        assert status == 503 and "in recovery" in body["error"]

        sql(replica, "SELECT pg_catalog.pg_wal_replay_pause()")
        try:
            time.sleep(2.5)  # the last replayed commit ages
            sql(primary, "INSERT INTO ticks VALUES (now())")
            wait_for(
                lambda: sql(
                    replica,
                    "SELECT pg_catalog.pg_last_wal_receive_lsn()"
                    " > pg_catalog.pg_last_wal_replay_lsn()",
                )[0],
                what="WAL received but not replayed",
            )
            status, body = wsgi_get(app, "/api/health/ready?role=replica&max_lag_s=1")
            assert status == 503 and "exceeds max_lag_s=1" in body["error"], body
            assert wsgi_get(app, "/api/health/ready?role=replica&max_lag_s=600")[0] == 200
            assert wsgi_get(app, "/api/health/ready?max_lag_s=1")[0] == 503
        finally:
            sql(replica, "SELECT pg_catalog.pg_wal_replay_resume()")
        wait_for(
            lambda: wsgi_get(app, "/api/health/ready?role=replica&max_lag_s=1")[0] == 200,
            what="ready again after replay resumed",
        )


def test_forked_blueprint_probes_the_childs_pool() -> None:
    """With no pool given, the adapters ask get_pool() on every probe (never a stale one)."""
    calls: list[int] = []

    class Provider:
        def __call__(self) -> Any:
            calls.append(threading.get_ident())
            raise RuntimeError("no pool here")

    app = Flask(__name__)
    app.register_blueprint(health_blueprint(Provider()))
    assert flask_get(app, "/api/health/ready")[0] == 503
    assert flask_get(app, "/api/health")[0] == 503
    assert len(calls) == 2
