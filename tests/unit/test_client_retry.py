"""Unit tests for pgsteady.client: backoff, error classification, pool logic, WSGI routing."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from wsgiref.util import setup_testing_defaults

import psycopg2
import psycopg2.errors
import psycopg2.extensions as ext
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pgsteady.client import (
    Backoff,
    CommitOutcomeUnknown,
    ConnectFailed,
    ConnectionLost,
    HealthApp,
    Pool,
    PoolClosed,
    PoolExhausted,
    commit_outcome_unknown,
    is_auth_failure,
    is_connection_broken,
    retry_call,
)

pytestmark = pytest.mark.timeout(30)


class FakeClock:
    """Monotonic clock that only moves when ``sleep`` is called."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def always_fail(exc: Exception | None = None) -> Callable[[], None]:
    def fn() -> None:
        raise exc or psycopg2.OperationalError("refused")

    return fn


# -- backoff schedule ------------------------------------------------------------------------


def test_nominal_schedule_doubles_and_caps() -> None:
    policy = Backoff(base=1, factor=2, cap=30)
    assert [policy.nominal(n) for n in range(7)] == [1, 2, 4, 8, 16, 30, 30]
    assert policy.nominal(10_000) == 30  # no overflow


def test_no_jitter_is_exact() -> None:
    policy = Backoff(base=1, cap=10, jitter=0)
    gen = policy.delays(rand=lambda: 0.99)
    assert [next(gen) for _ in range(6)] == [1, 2, 4, 8, 10, 10]


@pytest.mark.parametrize(("r", "expected"), [(0.0, 0.8), (0.5, 1.0), (1.0, 1.2)])
def test_jitter_extremes(r: float, expected: float) -> None:
    assert Backoff(base=1, jitter=0.2).delay(0, rand=lambda: r) == pytest.approx(expected)


@given(
    n=st.integers(min_value=0, max_value=60),
    r=st.floats(min_value=0, max_value=1, exclude_max=True),
    jitter=st.floats(min_value=0, max_value=1),
    cap=st.floats(min_value=0.5, max_value=120),
)
def test_jitter_bounds(n: int, r: float, jitter: float, cap: float) -> None:
    policy = Backoff(base=1, factor=2, cap=cap, jitter=jitter)
    nominal = policy.nominal(n)
    delay = policy.delay(n, rand=lambda: r)
    assert nominal * (1 - jitter) - 1e-9 <= delay <= min(cap, nominal * (1 + jitter)) + 1e-9
    assert 0 <= delay <= cap


@pytest.mark.parametrize(
    "kwargs", [{"factor": 0.5}, {"jitter": 1.5}, {"max_attempts": 0}, {"base": -1}]
)
def test_invalid_policies_rejected(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Backoff(**kwargs)


def test_retry_sleeps_follow_schedule_until_max_attempts() -> None:
    clock = FakeClock()
    calls = []

    def fn() -> None:
        calls.append(clock())
        raise psycopg2.OperationalError("down")

    policy = Backoff(base=1, cap=4, jitter=0, max_attempts=5, deadline=None)
    with pytest.raises(psycopg2.OperationalError):
        retry_call(fn, policy, retry_on=lambda e: True, clock=clock, sleep=clock.sleep)
    assert clock.sleeps == [1, 2, 4, 4]
    assert calls == [0, 1, 3, 7, 11]


def test_retry_deadline_truncates_last_sleep_and_stops() -> None:
    clock = FakeClock()
    calls = []

    def fn() -> None:
        calls.append(clock())
        raise psycopg2.OperationalError("down")

    policy = Backoff(base=1, cap=30, jitter=0, max_attempts=None, deadline=5)
    with pytest.raises(psycopg2.OperationalError):
        retry_call(fn, policy, retry_on=lambda e: True, clock=clock, sleep=clock.sleep)
    assert clock.sleeps == [1, 2, 2]  # the 4 s sleep is cut to the deadline
    assert calls == [0, 1, 3, 5]  # last attempt exactly at the deadline, none after
    assert max(calls) <= 5


def test_retry_deadline_counts_time_spent_in_attempts() -> None:
    clock = FakeClock()

    def slow_fail() -> None:
        clock.now += 3  # each attempt itself takes 3 s
        raise psycopg2.OperationalError("timeout")

    policy = Backoff(base=1, jitter=0, max_attempts=None, deadline=5)
    with pytest.raises(psycopg2.OperationalError):
        retry_call(slow_fail, policy, retry_on=lambda e: True, clock=clock, sleep=clock.sleep)
    assert clock.sleeps == [1]  # at t=3 sleep 1; at t=7 past the deadline: give up


def test_retry_jitter_uses_injected_rand() -> None:
    clock = FakeClock()
    policy = Backoff(base=1, jitter=0.5, max_attempts=3, deadline=None)
    with pytest.raises(psycopg2.OperationalError):
        retry_call(
            always_fail(),
            policy,
            retry_on=lambda e: True,
            clock=clock,
            sleep=clock.sleep,
            rand=lambda: 0.0,
        )
    assert clock.sleeps == [0.5, 1.0]


def test_retry_returns_value_and_reports_failures() -> None:
    clock = FakeClock()
    results = iter([psycopg2.OperationalError("a"), psycopg2.OperationalError("b"), "ok"])
    seen: list[tuple[int, float | None]] = []

    def fn() -> str:
        value = next(results)
        if isinstance(value, Exception):
            raise value
        return value

    policy = Backoff(jitter=0)
    out = retry_call(
        fn,
        policy,
        retry_on=lambda e: True,
        clock=clock,
        sleep=clock.sleep,
        on_failure=lambda n, exc, wait: seen.append((n, wait)),
    )
    assert out == "ok"
    assert seen == [(1, 1.0), (2, 2.0)]


def test_retry_does_not_retry_other_errors() -> None:
    clock = FakeClock()
    with pytest.raises(ValueError):
        retry_call(
            always_fail(ValueError("bug")),
            Backoff(),
            retry_on=lambda e: isinstance(e, psycopg2.OperationalError),
            clock=clock,
            sleep=clock.sleep,
        )
    assert clock.sleeps == []


# -- error classification --------------------------------------------------------------------


class Conn:
    def __init__(self, closed: int = 0) -> None:
        self.closed = closed


@pytest.mark.parametrize(
    ("exc", "closed", "broken"),
    [
        (psycopg2.OperationalError("server closed the connection unexpectedly"), 2, True),
        (psycopg2.OperationalError("SSL SYSCALL error: EOF detected"), 0, True),
        (psycopg2.InterfaceError("connection already closed"), 0, True),
        (psycopg2.errors.AdminShutdown("terminating connection"), 0, True),
        (psycopg2.errors.CrashShutdown(), 0, True),
        (psycopg2.errors.ConnectionFailure(), 0, True),
        (psycopg2.errors.SerializationFailure("could not serialize"), 0, False),
        (psycopg2.errors.UniqueViolation("duplicate key"), 0, False),
        (psycopg2.errors.QueryCanceled("statement timeout"), 0, False),
        (psycopg2.errors.UniqueViolation("duplicate key"), 1, True),  # closed wins
        (ValueError("application bug"), 0, False),
    ],
)
def test_is_connection_broken(exc: Exception, closed: int, broken: bool) -> None:
    assert is_connection_broken(exc, Conn(closed)) is broken


@pytest.mark.parametrize(
    ("exc", "closed", "unknown"),
    [
        # socket died while COMMIT was in flight: may have committed
        (psycopg2.OperationalError("server closed the connection unexpectedly"), 2, True),
        (psycopg2.errors.AdminShutdown("terminating connection"), 2, True),
        (psycopg2.InterfaceError("connection already closed"), 1, True),
        # the server answered COMMIT with an error on a live session: definitely rolled back
        (psycopg2.errors.SerializationFailure("could not serialize"), 0, False),
        (psycopg2.errors.ForeignKeyViolation("deferred constraint"), 0, False),
        # anything else out of commit() proves nothing
        (RuntimeError("weird"), 0, True),
    ],
)
def test_commit_outcome_unknown(exc: Exception, closed: int, unknown: bool) -> None:
    assert commit_outcome_unknown(exc, Conn(closed)) is unknown


_REFUSED = 'connection to server at "127.0.0.1", port 5432 failed: FATAL:  '


@pytest.mark.parametrize(
    ("exc", "auth"),
    [
        (psycopg2.OperationalError(_REFUSED + 'password authentication failed for user "app"'),
         True),
        (psycopg2.OperationalError(_REFUSED + 'no pg_hba.conf entry for host "10.0.0.5", user '
                                   '"app", database "app", no encryption'), True),
        (psycopg2.OperationalError(_REFUSED + 'pg_hba.conf rejects connection for host "::1"'),
         True),
        (psycopg2.OperationalError(_REFUSED + 'role "nobody" does not exist'), True),
        (psycopg2.OperationalError('role "ro" is not permitted to log in'), True),
        (psycopg2.OperationalError("fe_sendauth: no password supplied"), True),
        (psycopg2.errors.InvalidPassword(), True),  # 28P01
        (psycopg2.errors.InvalidAuthorizationSpecification(), True),  # 28000
        # transient: retried
        (psycopg2.OperationalError(_REFUSED + "the database system is starting up"), False),
        (psycopg2.OperationalError("server closed the connection unexpectedly"), False),
        (psycopg2.OperationalError(_REFUSED + "Connection refused"), False),
        (psycopg2.OperationalError(_REFUSED + 'database "app" does not exist'), False),
        (psycopg2.errors.CannotConnectNow(), False),
        (ValueError("password authentication failed"), False),  # not a driver error
    ],
)  # fmt: skip
def test_is_auth_failure(exc: Exception, auth: bool) -> None:
    assert is_auth_failure(exc) is auth


# -- pool logic with fake connections --------------------------------------------------------


class FakeCursor:
    def __init__(self, conn: FakeConn) -> None:
        self.conn = conn
        self.connection = conn

    def __enter__(self) -> FakeCursor:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def execute(self, sql: str, params: Any = None) -> None:
        self.conn.executed.append(sql)
        if self.conn.fail_execute:
            self.conn.closed = 2
            raise psycopg2.OperationalError("server closed the connection unexpectedly")
        self.conn.status = ext.TRANSACTION_STATUS_INTRANS

    def fetchone(self) -> tuple[int]:
        return (1,)


class FakeInfo:
    def __init__(self, conn: FakeConn) -> None:
        self._conn = conn

    @property
    def transaction_status(self) -> int:
        return self._conn.status


class FakeConn:
    def __init__(self) -> None:
        self.closed = 0
        self.status = ext.TRANSACTION_STATUS_IDLE
        self.executed: list[str] = []
        self.fail_execute = False
        self.commit_error: Exception | None = None
        self.commits = 0
        self.info = FakeInfo(self)

    def cursor(self) -> FakeCursor:
        return FakeCursor(self)

    def commit(self) -> None:
        if self.commit_error is not None:
            if is_connection_broken(self.commit_error):
                self.closed = 2
            raise self.commit_error
        self.commits += 1
        self.status = ext.TRANSACTION_STATUS_IDLE

    def rollback(self) -> None:
        if self.closed:
            raise psycopg2.InterfaceError("connection already closed")
        self.status = ext.TRANSACTION_STATUS_IDLE

    def close(self) -> None:
        self.closed = 1


class FakeConnector:
    """``connect`` replacement: fails ``failures`` times, then hands out FakeConns."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.made: list[FakeConn] = []

    def __call__(self, dsn: str, **kwargs: Any) -> FakeConn:
        if self.failures:
            self.failures -= 1
            raise psycopg2.OperationalError("connection refused")
        conn = FakeConn()
        self.made.append(conn)
        return conn


def make_pool(connector: FakeConnector | None = None, **kwargs: Any) -> tuple[Pool, FakeClock]:
    clock = FakeClock()
    defaults: dict[str, Any] = {
        "minconn": 0,
        "maxconn": 2,
        "connect_backoff": Backoff(jitter=0, max_attempts=5, deadline=None),
        "clock": clock,
        "sleep": clock.sleep,
        "connect": connector or FakeConnector(),
    }
    return Pool("", **{**defaults, **kwargs}), clock


def test_connect_retries_with_backoff_then_succeeds() -> None:
    connector = FakeConnector(failures=3)
    pool, clock = make_pool(connector, minconn=1)
    assert clock.sleeps == [1, 2, 4]
    stats = pool.stats()
    assert (stats.size, stats.idle, stats.failures, stats.connects) == (1, 1, 3, 1)


def test_connect_gives_up_with_connect_failed() -> None:
    pool, clock = make_pool(FakeConnector(failures=99))
    with pytest.raises(ConnectFailed) as info:
        pool.getconn()
    assert info.value.attempts == 5
    assert isinstance(info.value.__cause__, psycopg2.OperationalError)
    assert pool.stats().size == 0  # the reserved slot was given back


def test_connect_retry_false_tries_once() -> None:
    pool, clock = make_pool(FakeConnector(failures=99))
    with pytest.raises(ConnectFailed):
        pool.getconn(connect_retry=False)
    assert clock.sleeps == []


def test_exhausted_pool_waits_then_raises() -> None:
    pool = Pool("", minconn=0, maxconn=1, connect=FakeConnector(), acquire_timeout=0.2)
    held = pool.getconn()
    with pytest.raises(PoolExhausted):
        pool.getconn()
    stats = pool.stats()
    assert (stats.in_use, stats.waits, stats.exhausted) == (1, 1, 1)
    # a waiter gets the connection as soon as it is returned
    threading.Timer(0.05, pool.putconn, args=(held,)).start()
    assert pool.getconn(timeout=5) is held


def test_broken_connection_replaced_and_idle_conns_become_suspect() -> None:
    connector = FakeConnector()
    pool, clock = make_pool(connector, idle_check_after=None)
    a, b = pool.getconn(), pool.getconn()
    pool.putconn(b)
    a.closed = 2  # died while lent
    pool.putconn(a)
    # b was idle when a broke: it is pinged on checkout even though idle checks are off
    b.fail_execute = True
    c = pool.getconn()
    assert c is not b and c is connector.made[-1]
    assert b.executed == ["SELECT 1"]
    stats = pool.stats()
    assert (stats.discarded, stats.reconnects, stats.size) == (2, 1, 1)


def test_idle_check_only_after_threshold() -> None:
    pool, clock = make_pool(idle_check_after=30)
    conn = pool.getconn()
    pool.putconn(conn)
    assert pool.getconn() is conn and conn.executed == []
    pool.putconn(conn)
    clock.now += 31
    assert pool.getconn() is conn and conn.executed == ["SELECT 1"]


def test_putconn_rolls_back_and_rejects_foreign_connections() -> None:
    pool, _ = make_pool()
    conn = pool.getconn()
    conn.status = ext.TRANSACTION_STATUS_INTRANS
    pool.putconn(conn)
    assert conn.status == ext.TRANSACTION_STATUS_IDLE and pool.stats().idle == 1
    with pytest.raises(ValueError):
        pool.putconn(FakeConn())


def test_run_commits_and_returns_result() -> None:
    pool, _ = make_pool()
    assert pool.run(lambda cur: cur.execute("INSERT") or 42) == 42
    assert pool.stats().idle == 1 and pool.stats().in_use == 0


def test_connection_lost_before_commit_not_retried_without_opt_in() -> None:
    connector = FakeConnector()
    pool, _ = make_pool(connector)
    calls = []

    def fn(cur: FakeCursor) -> None:
        calls.append(cur.conn)
        cur.conn.fail_execute = len(calls) == 1
        cur.execute("INSERT")

    with pytest.raises(ConnectionLost):
        pool.run(fn)
    assert len(calls) == 1
    assert pool.run(fn, idempotent=True) is None  # now succeeds on the first try
    assert len(calls) == 2


def test_connection_lost_before_commit_retried_when_idempotent() -> None:
    pool, clock = make_pool()
    calls = []

    def fn(cur: FakeCursor) -> str:
        calls.append(cur.conn)
        cur.conn.fail_execute = len(calls) < 3
        cur.execute("INSERT")
        return "done"

    assert pool.run(fn, idempotent=True) == "done"
    assert len(calls) == 3 and calls[0] is not calls[2]
    assert calls[2].commits == 1


def test_commit_outcome_unknown_is_never_retried() -> None:
    pool, _ = make_pool()
    calls = []

    def fn(cur: FakeCursor) -> None:
        calls.append(cur.conn)
        cur.execute("INSERT")
        cur.conn.commit_error = psycopg2.OperationalError("server closed the connection")

    with pytest.raises(CommitOutcomeUnknown) as info:
        pool.run(fn, idempotent=True)
    assert len(calls) == 1
    assert isinstance(info.value.__cause__, psycopg2.OperationalError)
    assert pool.stats().discarded == 1


def test_commit_rejected_by_server_propagates_as_is() -> None:
    pool, _ = make_pool()

    def fn(cur: FakeCursor) -> None:
        cur.execute("INSERT")
        cur.conn.commit_error = psycopg2.errors.SerializationFailure("could not serialize")

    with pytest.raises(psycopg2.errors.SerializationFailure):
        pool.run(fn, idempotent=True)
    assert pool.stats().idle == 1  # the session is fine: pooled again


def test_application_error_rolls_back_and_keeps_connection() -> None:
    connector = FakeConnector()
    pool, _ = make_pool(connector)
    with pytest.raises(KeyError), pool.transaction() as cur:
        cur.execute("INSERT")
        raise KeyError("bug")
    stats = pool.stats()
    assert (stats.idle, stats.discarded) == (1, 0)
    (conn,) = connector.made
    assert conn.commits == 0 and conn.status == ext.TRANSACTION_STATUS_IDLE  # rolled back


def test_closed_pool_refuses_checkout() -> None:
    pool, _ = make_pool(minconn=1)
    pool.close()
    with pytest.raises(PoolClosed):
        pool.getconn()
    assert pool.stats().size == 0


# -- WSGI routing with a fake pool -----------------------------------------------------------


class FakeHealthCursor:
    def __init__(self, pool: FakePool) -> None:
        self.pool = pool
        self.last = ""

    def __enter__(self) -> FakeHealthCursor:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def execute(self, sql: str, params: Any = None) -> None:
        if self.pool.down:
            raise psycopg2.OperationalError("could not connect")
        self.last = sql

    def fetchone(self) -> tuple[Any, ...]:
        if "pg_is_in_recovery" in self.last:
            return ("15.8", self.pool.replica, "postgres", 7_000_000)
        return (1,)


class FakePool:
    def __init__(self) -> None:
        self.down = False
        self.replica = False
        self.hang = False
        self.release = threading.Event()
        self.connections = 0

    @contextmanager
    def connection(
        self, timeout: float | None = None, *, connect_retry: bool = True
    ) -> Iterator[FakePool]:
        self.connections += 1
        if self.hang:
            self.release.wait(5)
        yield self

    def cursor(self) -> FakeHealthCursor:
        return FakeHealthCursor(self)

    def stats(self) -> dict[str, int]:
        return {"size": 2, "in_use": 0, "idle": 2}


def call(app: HealthApp, path: str, method: str = "GET") -> tuple[str, dict[str, str], Any]:
    environ: dict[str, Any] = {"PATH_INFO": path, "REQUEST_METHOD": method}
    setup_testing_defaults(environ)
    environ["wsgi.input"] = io.BytesIO(b"")
    captured: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        captured["status"], captured["headers"] = status, dict(headers)

    body = b"".join(app(environ, start_response))
    return captured["status"], captured["headers"], json.loads(body) if body else None


def test_routes_when_database_up() -> None:
    app = HealthApp(FakePool(), details=True)
    status, headers, body = call(app, "/health")
    assert status == "200 OK" and body == {"status": "ok"}
    assert headers["Content-Type"] == "application/json"
    assert headers["Cache-Control"] == "no-store"
    status, _, body = call(app, "/health/detailed")
    assert status == "200 OK"
    assert body["database"]["role"] == "primary"
    assert body["database"]["server_version"] == "15.8"
    assert body["database"]["size_bytes"] == 7_000_000
    assert body["database"]["latency_ms"] >= 0
    assert body["pool"] == {"size": 2, "in_use": 0, "idle": 2}
    assert call(app, "/health/ready")[0] == "200 OK"
    assert call(app, "/health/live/")[0] == "200 OK"  # trailing slash tolerated


def test_replica_role_reported() -> None:
    pool = FakePool()
    pool.replica = True
    _, _, body = call(HealthApp(pool, details=True), "/health/detailed")
    assert body["database"]["role"] == "replica" and body["database"]["in_recovery"] is True


def test_routes_when_database_down() -> None:
    pool = FakePool()
    pool.down = True
    app = HealthApp(pool, details=True)
    for path in ("/health", "/health/ready", "/health/detailed"):
        status, headers, body = call(app, path)
        assert status == "503 Service Unavailable", path
        assert body["status"] == "unavailable" and "OperationalError" in body["error"]
        assert headers["Content-Type"] == "application/json"
    assert call(app, "/health/detailed")[2]["pool"]["size"] == 2
    before = pool.connections
    assert call(app, "/health/live")[0] == "200 OK"
    assert pool.connections == before  # live never touches the database


def test_ready_is_bounded_when_database_hangs() -> None:
    pool = FakePool()
    pool.hang = True
    app = HealthApp(pool, ready_timeout=0.2, details=True)
    try:
        status, _, body = call(app, "/health/ready")
        assert status == "503 Service Unavailable" and "exceeded" in body["error"]
        # while that probe is still stuck, the next one answers at once instead of piling up
        status, _, body = call(app, "/health/ready")
        assert status == "503 Service Unavailable" and "still running" in body["error"]
        assert pool.connections == 1
        assert call(app, "/health/live")[0] == "200 OK"
    finally:
        pool.release.set()


def test_public_bodies_carry_the_status_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the opt-in: no pid, uptime, version, db name, pool figures or error text."""
    monkeypatch.delenv("PGSTEADY_HEALTH_DETAILS", raising=False)
    pool = FakePool()
    app = HealthApp(pool)
    for path in ("/health", "/health/ready", "/health/live"):
        assert call(app, path)[2] == {"status": "ok"}, path
    assert call(app, "/health/detailed")[0] == "404 Not Found"
    assert call(app, "/health/detailed")[2] == {"status": "error", "error": "not found"}
    pool.down = True
    for path in ("/health", "/health/ready"):
        assert call(app, path)[:3:2] == ("503 Service Unavailable", {"status": "unavailable"})


@pytest.mark.parametrize(("env", "on"), [("1", True), ("true", True), ("yes", True),
                                         ("0", False), ("", False), ("off", False)])  # fmt: skip
def test_details_opt_in_by_environment(monkeypatch: pytest.MonkeyPatch, env: str, on: bool) -> None:
    monkeypatch.setenv("PGSTEADY_HEALTH_DETAILS", env)
    app = HealthApp(FakePool())
    assert app.details is on
    assert ("pid" in call(app, "/health/live")[2]) is on
    assert (call(app, "/health/detailed")[0] == "200 OK") is on
    assert HealthApp(FakePool(), details=False).details is False  # the argument wins


def test_unknown_path_and_wrong_method() -> None:
    app = HealthApp(FakePool())
    status, _, body = call(app, "/nope")
    assert status == "404 Not Found" and body["error"] == "not found"
    status, headers, _ = call(app, "/health", method="POST")
    assert status == "405 Method Not Allowed" and headers["Allow"] == "GET, HEAD"
    assert call(app, "/health/live", method="DELETE")[0] == "405 Method Not Allowed"


def test_head_has_headers_but_no_body() -> None:
    status, headers, body = call(HealthApp(FakePool()), "/health", method="HEAD")
    assert status == "200 OK" and body is None and int(headers["Content-Length"]) > 0
