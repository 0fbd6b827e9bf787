"""pgsteady.client.Pool against a real PostgreSQL whose postmaster gets SIGKILLed mid-load.

The test body only uses the ``server`` fixture's PostgresServer protocol (dsn, kill_postmaster,
stop, start), so a container-backed fixture can replace SupervisedPostgres.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import gevent
import psycopg2
import psycopg2.extensions
import pytest
from pgserver_supervised import PostgresServer, SupervisedPostgres, available

from pgsteady.client import (
    AuthenticationFailed,
    Backoff,
    CommitOutcomeUnknown,
    ConnectFailed,
    ConnectionLost,
    Pool,
    PoolExhausted,
)

_UNAVAILABLE = available()
pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(_UNAVAILABLE is not None, reason=_UNAVAILABLE or ""),
]

WRITERS = 8


@pytest.fixture(scope="module")
def server() -> Iterator[SupervisedPostgres]:
    with SupervisedPostgres() as srv:
        yield srv


@dataclass
class Ledger:
    """What every writer call returned, with timestamps (thread-safe)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    acked: set[int] = field(default_factory=set)
    unknown: set[int] = field(default_factory=set)
    failed: dict[int, str] = field(default_factory=dict)
    # (call started, call returned, ok) in monotonic seconds
    events: list[tuple[float, float, bool]] = field(default_factory=list)

    def record(self, row_id: int, outcome: str, started: float) -> None:
        with self.lock:
            now = time.monotonic()
            if outcome == "acked":
                self.acked.add(row_id)
            elif outcome == "unknown":
                self.unknown.add(row_id)
            else:
                self.failed[row_id] = outcome
            self.events.append((started, now, outcome == "acked"))

    def first_success_after(self, t: float) -> float | None:
        """End time of the first successful call that *started* after ``t``."""
        with self.lock:
            return min((end for start, end, ok in self.events if ok and start > t), default=None)

    def outage(self) -> tuple[float | None, float | None]:
        """(first failure, first success of a call started after it); either may be None."""
        with self.lock:
            first_fail = min((end for _, end, ok in self.events if not ok), default=None)
        if first_fail is None:
            return None, None
        return first_fail, self.first_success_after(first_fail)


def writer(pool: Pool, ids: Iterator[int], ledger: Ledger, stop: threading.Event, n: int) -> None:
    idempotent = n % 2 == 0  # half the writers opt in to retry-before-commit
    while not stop.is_set():
        row_id = next(ids)  # itertools.count: atomic under the GIL

        def insert(cur: Any, row_id: int = row_id) -> None:
            cur.execute("INSERT INTO writes (id, writer) VALUES (%s, %s)", (row_id, n))

        started = time.monotonic()
        try:
            pool.run(insert, idempotent=idempotent)
        except CommitOutcomeUnknown:
            ledger.record(row_id, "unknown", started)
        except (ConnectionLost, ConnectFailed, PoolExhausted, psycopg2.Error) as exc:
            ledger.record(row_id, type(exc).__name__, started)
        else:
            ledger.record(row_id, "acked", started)


def test_pool_survives_postmaster_sigkill(
    server: PostgresServer, capsys: pytest.CaptureFixture[str]
) -> None:
    with psycopg2.connect(server.dsn()) as conn, conn.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS writes")
        cur.execute("CREATE TABLE writes (id bigint PRIMARY KEY, writer int NOT NULL)")
    conn.close()

    pool = Pool(server.dsn(), minconn=2, maxconn=12, idle_check_after=5, connect_timeout=2)
    ledger, stop, ids = Ledger(), threading.Event(), itertools.count(1)
    threads = [
        threading.Thread(target=writer, args=(pool, ids, ledger, stop, n), name=f"writer-{n}")
        for n in range(WRITERS)
    ]
    for thread in threads:
        thread.start()
    try:
        time.sleep(1.5)
        acked_before_kill = len(ledger.acked)
        killed_at = time.monotonic()
        server.kill_postmaster()
        server_back_at = _wait_for(lambda: _connects(server.dsn()), 60)
        # Recovered = a call started after the first failure has succeeded.  (Calls started
        # right after the SIGKILL may still succeed: orphaned backends live on briefly.)
        recovered_at = _wait_for(lambda: ledger.outage()[1], 60)
        time.sleep(1.5)  # keep writing after the recovery
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
    assert not any(t.is_alive() for t in threads)
    stats = pool.stats()
    pool.close()

    with psycopg2.connect(server.dsn()) as conn, conn.cursor() as cur:
        cur.execute("SELECT id FROM writes")
        present = {row[0] for row in cur.fetchall()}
    conn.close()

    first_fail, first_ok_after = ledger.outage()
    failed_kinds: dict[str, int] = {}
    for kind in ledger.failed.values():
        failed_kinds[kind] = failed_kinds.get(kind, 0) + 1
    report = {
        "calls": len(ledger.events),
        "acked": len(ledger.acked),
        "acked_before_kill": acked_before_kill,
        "failed_calls": len(ledger.failed),
        "failed_by_kind": failed_kinds,
        "commit_outcome_unknown": len(ledger.unknown),
        "unknown_present": len(ledger.unknown & present),
        "unknown_absent": len(ledger.unknown - present),
        "outage_s_first_failure_to_first_success": (
            round(first_ok_after - first_fail, 3) if first_fail and first_ok_after else None
        ),
        "kill_to_recovery_s": round(recovered_at - killed_at, 3),
        "kill_to_server_accepting_s": round(server_back_at - killed_at, 3),
        "pool": stats.as_dict(),
    }
    with capsys.disabled():
        print("\n[pool-kill-report] " + json.dumps(report, sort_keys=True))

    assert acked_before_kill > 0
    assert ledger.acked <= present, f"acknowledged writes lost: {sorted(ledger.acked - present)}"
    assert not (set(ledger.failed) & present), "a call that raised before COMMIT committed"
    assert present <= ledger.acked | ledger.unknown, "rows nobody wrote or acknowledged"
    assert ledger.first_success_after(recovered_at + 1.0) is not None, "pool did not keep working"
    assert stats.reconnects >= 1 and stats.failures >= 1
    assert stats.in_use == 0 and stats.size <= 12


def test_pool_exhausted_is_bounded(server: PostgresServer) -> None:
    with Pool(server.dsn(), minconn=1, maxconn=2, acquire_timeout=0.3) as pool:
        held = [pool.getconn(), pool.getconn()]
        started = time.monotonic()
        with pytest.raises(PoolExhausted):
            pool.getconn()
        assert 0.25 <= time.monotonic() - started < 2
        for conn in held:
            pool.putconn(conn)
        assert pool.run(lambda cur: cur.execute("SELECT 1") or cur.fetchone()) == (1,)


def _connects(dsn: str) -> float | None:
    """Monotonic time if a fresh connection succeeds now, else None."""
    try:
        psycopg2.connect(dsn, connect_timeout=1).close()
    except psycopg2.OperationalError:
        return None
    return time.monotonic()


def _wait_for(probe: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value is not None:
            return value
        time.sleep(0.02)
    raise AssertionError(f"condition not met within {timeout}s")


# -- an interrupt inside COMMIT, and a login the server refuses ------------------------------


class InterruptibleConnection(psycopg2.extensions.connection):
    """A real connection whose ``commit()`` can be made to raise a BaseException.

    ``raise_after`` decides whether the exception arrives after COMMIT reached the server
    (an interrupt while waiting for the reply's aftermath) or before it is sent.
    """

    interrupt: BaseException | None = None
    raise_after = True

    def commit(self) -> None:
        exc = type(self).interrupt
        if exc is not None and not type(self).raise_after:
            raise exc
        super().commit()
        if exc is not None:
            raise exc


@pytest.fixture
def interruptible() -> Iterator[type[InterruptibleConnection]]:
    yield InterruptibleConnection
    InterruptibleConnection.interrupt = None


@pytest.mark.parametrize("after", [True, False], ids=["after-commit-sent", "before-commit-sent"])
@pytest.mark.parametrize(
    "interrupt",
    [KeyboardInterrupt(), SystemExit(3), gevent.Timeout(0.1)],
    ids=["KeyboardInterrupt", "SystemExit", "gevent.Timeout"],
)
def test_base_exception_during_commit_frees_the_slot(
    server: PostgresServer,
    interruptible: type[InterruptibleConnection],
    interrupt: BaseException,
    after: bool,
) -> None:
    with Pool(
        server.dsn(),
        minconn=2,
        maxconn=2,
        acquire_timeout=0.5,
        connect_kwargs={"connection_factory": interruptible},
    ) as pool:
        before = pool.stats()
        assert (before.size, before.in_use, before.idle) == (2, 0, 2)
        interruptible.interrupt, interruptible.raise_after = interrupt, after
        with pytest.raises(type(interrupt)), pool.transaction() as cur:
            cur.execute("SELECT 1")
        interruptible.interrupt = None

        stats = pool.stats()
        assert stats.in_use == 0, stats  # the slot came back
        assert stats.discarded == before.discarded + 1  # the interrupted session is closed
        # Every slot can be checked out again (a leaked slot raises PoolExhausted here).
        held = [pool.getconn(timeout=1), pool.getconn(timeout=1)]
        for conn in held:
            assert not conn.closed
            pool.putconn(conn)
        assert pool.stats().in_use == 0
        assert pool.run(lambda c: c.execute("SELECT 2") or c.fetchone()) == (2,)


ROLE, PASSWORD = "h5_login", "right-password-1"


@pytest.fixture(scope="module")
def password_role(server: SupervisedPostgres) -> str:
    """A role that must log in with scram-sha-256 (the fixture's cluster trusts the rest)."""
    with psycopg2.connect(server.dsn()) as conn, conn.cursor() as cur:
        cur.execute(f"CREATE ROLE {ROLE} LOGIN PASSWORD %s", (PASSWORD,))
    hba = server.datadir / "pg_hba.conf"
    rules = f"host all {ROLE} 127.0.0.1/32 scram-sha-256\n" + hba.read_text()
    hba.write_text(rules)
    with psycopg2.connect(server.dsn()) as conn, conn.cursor() as cur:
        cur.execute("SELECT pg_reload_conf()")
    time.sleep(0.5)  # the postmaster rereads pg_hba.conf on SIGHUP
    return f"host=127.0.0.1 port={server.port} user={ROLE} dbname=postgres"


def test_wrong_password_fails_fast_without_retry(password_role: str) -> None:
    # The right password logs in (so the failure below is the password, not the setup).
    with Pool(password_role + f" password={PASSWORD}", minconn=1, maxconn=1) as pool:
        assert pool.run(lambda c: c.execute("SELECT current_user") or c.fetchone()) == (ROLE,)

    slow_retry = Backoff(base=1.0, cap=30.0, max_attempts=10, deadline=60.0)  # the default
    started = time.monotonic()
    with pytest.raises(AuthenticationFailed) as info:
        Pool(password_role + " password=wrong", minconn=1, connect_backoff=slow_retry)
    took = time.monotonic() - started
    assert took < 1.0, f"a refused login took {took:.1f}s (retried?)"
    assert info.value.attempts == 1
    assert isinstance(info.value, ConnectFailed)  # callers catching ConnectFailed still do
    assert "password authentication failed" in str(info.value.__cause__)

    with Pool(password_role + " password=wrong", minconn=0, maxconn=1) as pool:
        started = time.monotonic()
        with pytest.raises(AuthenticationFailed):
            pool.getconn()
        assert time.monotonic() - started < 1.0
        assert pool.stats().size == 0  # the reserved slot was given back
