"""Thread-safe psycopg2 connection pool with health-checked checkout and safe transactions.

Why not ``psycopg2.pool.ThreadedConnectionPool``: it opens connections while holding its one
lock (a reconnect that backs off for seconds would stall every ``putconn``), raises at once
when exhausted instead of waiting, and has no checkout validation.  This pool keeps the same
``getconn``/``putconn`` shape and adds what it lacks.

Checkout (:meth:`Pool.getconn`):

1. Take an idle connection (most recently returned first) or reserve a slot for a new one if
   fewer than ``maxconn`` exist; otherwise wait up to the acquire timeout, then raise
   :class:`PoolExhausted`.
2. An idle connection is validated: ``conn.closed`` always (free); a ``SELECT 1`` round trip
   only if it sat idle for ``idle_check_after`` seconds or longer, or if another connection was
   found broken since it was returned (after a server restart every idle connection is
   suspect).  A connection failing either check is closed and replaced.
3. New connections are opened outside the lock, retrying ``OperationalError`` with
   exponential backoff and jitter (:class:`~pgsteady.client.retry.Backoff`); when the budget
   runs out, :class:`ConnectFailed` is raised.  A refused login (wrong password, no
   pg_hba.conf entry, unknown role: :func:`~pgsteady.client.errors.is_auth_failure`) is not
   retried: :class:`AuthenticationFailed` is raised after the first attempt.

Return (:meth:`Pool.putconn`): an open transaction is rolled back; a connection that is closed,
fails the rollback, or is passed with ``discard=True`` is closed instead of pooled.  Every
path out of a checkout -- including ``KeyboardInterrupt``, ``SystemExit`` or a gevent
``Timeout`` (``BaseException``) raised inside ``COMMIT`` or the rollback -- gives the slot
back; a connection interrupted that way is discarded, since its state is unknown.

Transactions (:meth:`Pool.transaction`, :meth:`Pool.run`) -- the exact contract:

* The body runs in one transaction; on normal exit ``COMMIT`` is sent, on exception the
  transaction is rolled back and the exception propagates.
* If the connection breaks before ``COMMIT`` is sent (during the body, or found already closed
  when committing), :class:`ConnectionLost` is raised.  Nothing was committed.
  ``run(fn, idempotent=True)`` re-runs ``fn`` on a fresh connection (backoff between tries,
  ``txn_backoff`` budget); without the opt-in, it is raised to the caller.
* If the connection breaks while ``COMMIT`` is in flight (``commit()`` raises and the session is
  gone), the server may or may not have committed: :class:`CommitOutcomeUnknown` is raised and
  is never retried, not even with ``idempotent=True``.  psycopg2 cannot tell "COMMIT never left
  the client" from "the reply was lost", so both count as unknown.
* If the server answers ``COMMIT`` with an error on a live session (deferred constraint,
  serialization failure), the transaction definitely rolled back; that error propagates as is.

Above 400 lines because the pool's checkout, return and transaction paths share one
lock and one set of invariants; they are kept together so that they can be read as one.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, replace
from typing import Any, TypeVar

import psycopg2
import psycopg2.extensions as ext

from .errors import (
    AuthenticationFailed,
    CommitOutcomeUnknown,
    ConnectFailed,
    ConnectionLost,
    PoolClosed,
    PoolExhausted,
    commit_outcome_unknown,
    is_auth_failure,
    is_connection_broken,
)
from .retry import Backoff, Clock, Rand, Sleep, retry_call

log = logging.getLogger("pgsteady.client")

T = TypeVar("T")
Connection = ext.connection
Cursor = ext.cursor

DEFAULT_TXN_BACKOFF = Backoff(base=0.1, cap=2.0, max_attempts=3, deadline=30.0)


@dataclass(frozen=True)
class PoolStats:
    """A consistent snapshot of pool counters.

    ``size`` counts connections open or being opened; ``in_use`` those lent out (or being
    opened for a borrower); ``waits`` checkouts that had to wait for a free slot; ``exhausted``
    checkouts that gave up with :class:`PoolExhausted`; ``connects`` successful connection
    opens; ``reconnects`` those that replaced a connection discarded as broken; ``failures``
    failed connection attempts; ``discarded`` connections closed as broken or on request.
    """

    minconn: int
    maxconn: int
    size: int
    in_use: int
    idle: int
    waits: int
    exhausted: int
    connects: int
    reconnects: int
    failures: int
    discarded: int

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass
class _Idle:
    conn: Connection
    since: float


class Pool:
    """A bounded pool of psycopg2 connections (see the module docstring for the contract).

    ``dsn`` and ``connect_kwargs`` go to ``psycopg2.connect``; ``connect_timeout`` (seconds,
    libpq) bounds one connection attempt.  ``acquire_timeout`` is the default wait for a free
    connection.  ``idle_check_after`` is the idle time (seconds) after which checkout pings
    with ``SELECT 1``; 0 pings every time, ``None`` never.  With ``prefill`` the constructor
    opens ``minconn`` connections (retrying per ``connect_backoff``) and raises
    :class:`ConnectFailed` if it cannot.  ``clock``, ``sleep``, ``rand`` and ``connect`` are
    injectable for tests.
    """

    def __init__(
        self,
        dsn: str = "",
        *,
        minconn: int = 2,
        maxconn: int = 20,
        acquire_timeout: float = 10.0,
        idle_check_after: float | None = 30.0,
        connect_timeout: int = 5,
        connect_backoff: Backoff | None = None,
        txn_backoff: Backoff = DEFAULT_TXN_BACKOFF,
        prefill: bool = True,
        connect_kwargs: dict[str, Any] | None = None,
        clock: Clock = time.monotonic,
        sleep: Sleep = time.sleep,
        rand: Rand = random.random,
        connect: Callable[..., Connection] = psycopg2.connect,
    ) -> None:
        if not 0 <= minconn <= maxconn or maxconn < 1:
            raise ValueError("need 0 <= minconn <= maxconn and maxconn >= 1")
        self.minconn, self.maxconn = minconn, maxconn
        self.acquire_timeout = acquire_timeout
        self.idle_check_after = idle_check_after
        self.connect_backoff = connect_backoff or Backoff()
        self.txn_backoff = txn_backoff
        self._dsn = dsn
        self._kwargs = {"connect_timeout": connect_timeout, **(connect_kwargs or {})}
        self._clock, self._sleep, self._rand, self._connect = clock, sleep, rand, connect
        self._cond = threading.Condition(threading.Lock())
        self._idle: deque[_Idle] = deque()
        self._lent: dict[int, Connection] = {}
        self._size = 0
        self._closed = False
        self._last_break = float("-inf")
        self._pending_replacements = 0
        self._counts = dict.fromkeys(
            ("waits", "exhausted", "connects", "reconnects", "failures", "discarded"), 0
        )
        if prefill and minconn:
            self._prefill()

    # -- checkout / return -------------------------------------------------------------------

    def getconn(self, timeout: float | None = None, *, connect_retry: bool = True) -> Connection:
        """Check out a healthy connection; wait at most ``timeout`` s for a free slot.

        Raises :class:`PoolExhausted`, :class:`ConnectFailed` or :class:`PoolClosed`.  With
        ``connect_retry=False`` a needed new connection gets one attempt only (for probes).
        """
        entry = self._reserve(self.acquire_timeout if timeout is None else timeout)
        try:
            if entry is not None:
                conn = self._validate(entry)
                if conn is not None:
                    return self._lend(conn)
            return self._lend(self._open(connect_retry))
        except BaseException:
            if entry is not None:  # interrupted while validating: its state is unknown
                self._close_quietly(entry.conn)
            with self._cond:
                self._size -= 1
                self._cond.notify()
            raise

    def putconn(self, conn: Connection, *, discard: bool = False) -> None:
        """Return ``conn``; roll back any open transaction; close it if broken or ``discard``."""
        with self._cond:
            if self._lent.pop(id(conn), None) is None:
                raise ValueError("connection was not checked out from this pool")
        try:
            broken = discard or not self._reset(conn)
        except BaseException:  # interrupted during the rollback: give the slot back
            self._forget(conn)
            raise
        with self._cond:
            if broken or self._closed:
                self._size -= 1
                self._close_quietly(conn)
                if broken:
                    self._counts["discarded"] += 1
                    self._pending_replacements += 1
                    self._last_break = self._clock()
            else:
                self._idle.append(_Idle(conn, self._clock()))
            self._cond.notify()

    @contextmanager
    def connection(
        self, timeout: float | None = None, *, connect_retry: bool = True
    ) -> Iterator[Connection]:
        """Borrow a connection for the block; uncommitted work is rolled back on return."""
        conn = self.getconn(timeout, connect_retry=connect_retry)
        try:
            yield conn
        except BaseException as exc:
            self.putconn(conn, discard=is_connection_broken(exc, conn))
            raise
        self.putconn(conn)

    # -- transactions ------------------------------------------------------------------------

    @contextmanager
    def transaction(self, timeout: float | None = None) -> Iterator[Cursor]:
        """Run the block in one transaction on a pooled connection; yields a cursor.

        Commits on normal exit.  Raises :class:`ConnectionLost` if the connection broke before
        ``COMMIT`` was sent (nothing committed) and :class:`CommitOutcomeUnknown` if it broke
        while ``COMMIT`` was in flight.  Other exceptions roll back and propagate unchanged.
        """
        conn = self.getconn(timeout)
        try:
            with conn.cursor() as cur:
                yield cur
        except BaseException as exc:
            broken = is_connection_broken(exc, conn)
            self.putconn(conn, discard=broken)
            if broken and isinstance(exc, psycopg2.Error):
                raise ConnectionLost(f"connection lost before COMMIT: {exc}".strip()) from exc
            raise
        self._commit(conn)

    def run(
        self, fn: Callable[[Cursor], T], *, idempotent: bool = False, timeout: float | None = None
    ) -> T:
        """Run ``fn(cursor)`` in a transaction (see :meth:`transaction`) and return its result.

        With ``idempotent=True`` a :class:`ConnectionLost` (nothing committed) re-runs ``fn`` on
        a fresh connection within the ``txn_backoff`` budget; ``fn`` must then be safe to call
        more than once.  :class:`CommitOutcomeUnknown` is never retried.
        """

        def attempt() -> T:
            with self.transaction(timeout) as cur:
                return fn(cur)

        if not idempotent:
            return attempt()
        return retry_call(
            attempt,
            self.txn_backoff,
            retry_on=lambda exc: isinstance(exc, ConnectionLost),
            clock=self._clock,
            sleep=self._sleep,
            rand=self._rand,
        )

    # -- lifecycle / introspection -----------------------------------------------------------

    def stats(self) -> PoolStats:
        """Snapshot of the pool counters."""
        with self._cond:
            idle = len(self._idle)
            return PoolStats(
                minconn=self.minconn,
                maxconn=self.maxconn,
                size=self._size,
                in_use=self._size - idle,
                idle=idle,
                **self._counts,
            )

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Close idle connections now and lent ones when returned; wake and fail waiters."""
        with self._cond:
            self._closed = True
            idle = list(self._idle)
            self._idle.clear()
            self._size -= len(idle)
            self._cond.notify_all()
        for entry in idle:
            self._close_quietly(entry.conn)

    def abandon_after_fork(self) -> int:
        """In a forked child: let go of the parent's connections without touching them.

        The child shares the parent's sockets, so neither a query nor a ``close()`` (which
        sends libpq's Terminate message) may reach them: each socket is replaced by
        ``/dev/null`` in this process only, then the connection objects are closed.  The
        parent's sessions are unaffected.  The pool is closed afterwards; returns the number
        of connections let go.  Call it only in a single-threaded child right after fork.
        """
        conns = [entry.conn for entry in self._idle] + list(self._lent.values())
        self._idle.clear()
        self._lent.clear()
        self._closed, self._size = True, 0
        self._cond = threading.Condition(threading.Lock())  # the parent's may be held
        devnull = os.open(os.devnull, os.O_RDWR)
        try:
            for conn in conns:
                with suppress(Exception):
                    if not conn.closed:
                        os.dup2(devnull, conn.fileno())
                self._close_quietly(conn)
        finally:
            os.close(devnull)
        return len(conns)

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals ---------------------------------------------------------------------------

    def _prefill(self) -> None:
        conns: list[Connection] = []
        try:
            for _ in range(self.minconn):
                conns.append(self.getconn())
        except BaseException:
            for conn in conns:
                self.putconn(conn)
            self.close()
            raise
        for conn in conns:
            self.putconn(conn)

    def _reserve(self, timeout: float) -> _Idle | None:
        """Pop an idle entry, or reserve a new-connection slot (returns ``None``)."""
        deadline = self._clock() + timeout
        waited = False
        with self._cond:
            while True:
                if self._closed:
                    raise PoolClosed("pool is closed")
                if self._idle:
                    return self._idle.pop()
                if self._size < self.maxconn:
                    self._size += 1
                    return None
                if not waited:
                    waited = True
                    self._counts["waits"] += 1
                remaining = deadline - self._clock()
                if remaining <= 0:
                    self._counts["exhausted"] += 1
                    raise PoolExhausted(f"all {self.maxconn} connections in use for {timeout:g}s")
                self._cond.wait(remaining)

    def _validate(self, entry: _Idle) -> Connection | None:
        """Return the idle connection if healthy, else close it and return ``None``."""
        conn = entry.conn
        suspect = entry.since <= self._last_break
        stale = (
            self.idle_check_after is not None
            and self._clock() - entry.since >= self.idle_check_after
        )
        healthy = not conn.closed
        if healthy and (stale or suspect):
            try:
                with conn.cursor() as cur:
                    cur.execute("SELECT 1")
                conn.rollback()
            except psycopg2.Error:
                healthy = False
        if healthy:
            return conn
        self._close_quietly(conn)
        with self._cond:
            self._counts["discarded"] += 1
            self._pending_replacements += 1
            self._last_break = self._clock()
        return None

    def _open(self, retry: bool) -> Connection:
        policy = self.connect_backoff if retry else replace(self.connect_backoff, max_attempts=1)
        attempts = 0

        def on_failure(attempt: int, exc: BaseException, wait: float | None) -> None:
            nonlocal attempts
            attempts = attempt
            with self._cond:
                self._counts["failures"] += 1
            log.warning("connect attempt %d failed: %s (retry in %s)", attempt, exc, wait)

        def retryable(exc: BaseException) -> bool:
            return isinstance(exc, psycopg2.OperationalError) and not is_auth_failure(exc)

        try:
            conn = retry_call(
                lambda: self._connect(self._dsn, **self._kwargs),
                policy,
                retry_on=retryable,
                clock=self._clock,
                sleep=self._sleep,
                rand=self._rand,
                on_failure=on_failure,
            )
        except psycopg2.OperationalError as exc:
            if is_auth_failure(exc):
                raise AuthenticationFailed(
                    f"login refused, not retried: {exc}".strip(), attempts
                ) from exc
            msg = f"could not connect after {attempts} attempt(s): {exc}".strip()
            raise ConnectFailed(msg, attempts) from exc
        with self._cond:
            self._counts["connects"] += 1
            if self._pending_replacements:
                self._pending_replacements -= 1
                self._counts["reconnects"] += 1
        return conn

    def _lend(self, conn: Connection) -> Connection:
        with self._cond:
            self._lent[id(conn)] = conn
        return conn

    def _commit(self, conn: Connection) -> None:
        if conn.closed:  # COMMIT cannot have been sent: nothing committed
            self.putconn(conn, discard=True)
            raise ConnectionLost("connection closed before COMMIT")
        try:
            conn.commit()
        except Exception as exc:
            unknown = commit_outcome_unknown(exc, conn)
            self.putconn(conn, discard=unknown)
            if unknown:
                raise CommitOutcomeUnknown(
                    f"connection lost during COMMIT; it may or may not have committed: {exc}"
                ) from exc
            raise
        except BaseException:
            # KeyboardInterrupt, SystemExit, a gevent Timeout ... mid-COMMIT: the session may
            # be waiting for the reply, so it cannot be reused; close it and free the slot.
            self.putconn(conn, discard=True)
            raise
        self.putconn(conn)

    @staticmethod
    def _reset(conn: Connection) -> bool:
        """Bring ``conn`` back to idle-in-no-transaction; False if that is impossible."""
        try:
            if conn.closed:
                return False
            if conn.info.transaction_status != ext.TRANSACTION_STATUS_IDLE:
                conn.rollback()
            return conn.info.transaction_status == ext.TRANSACTION_STATUS_IDLE
        except Exception:
            return False

    def _forget(self, conn: Connection) -> None:
        """Close a returned connection whose reset was interrupted and free its slot."""
        self._close_quietly(conn)
        with self._cond:
            self._size -= 1
            self._counts["discarded"] += 1
            self._pending_replacements += 1
            self._last_break = self._clock()
            self._cond.notify()

    @staticmethod
    def _close_quietly(conn: Connection) -> None:
        with suppress(Exception):
            conn.close()
