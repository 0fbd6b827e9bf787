"""The failover trial's writers: one through the proxy, one probe per member.

Every statement runs on an asynchronous psycopg2 connection under a client-side
deadline: a paused server (``docker pause``, SIGSTOP) keeps its TCP connections open and
answers nothing, and a server-side ``statement_timeout`` must not be used instead,
because cancelling a commit that waits for a synchronous standby makes Postgres report
it committed (with a warning) although no standby has it. A statement past its
deadline is abandoned with its connection; a COMMIT abandoned or failed after it was
sent is recorded as *unknown*, never as acknowledged.
"""

from __future__ import annotations

import contextlib
import select
import threading
import time
from collections.abc import Mapping
from typing import Any

import psycopg2
import psycopg2.extensions as ext

from pgsteady.lab.failover import Ack

WRITES = "failover_writes"
PROBES = "failover_probe"
#: Creates the writers' tables on the leader (replicas get them through WAL).
SCHEMA = (
    f"CREATE TABLE IF NOT EXISTS public.{WRITES} (n bigint PRIMARY KEY, "
    "at timestamptz NOT NULL DEFAULT clock_timestamp()); "
    f"CREATE TABLE IF NOT EXISTS public.{PROBES} (member text NOT NULL, n bigint NOT NULL, "
    "PRIMARY KEY (member, n))"
)


def _wait(conn: Any, deadline: float) -> None:
    """Poll an asynchronous connection until its operation completes or ``deadline``."""
    while True:
        state = conn.poll()
        if state == ext.POLL_OK:
            return
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no answer before the deadline")
        fd = conn.fileno()
        if state == ext.POLL_READ:
            select.select([fd], [], [], left)
        elif state == ext.POLL_WRITE:
            select.select([], [fd], [], left)


def connect(dsn: str, timeout: float) -> Any:
    """An autocommit connection (asynchronous mode) opened within ``timeout`` seconds."""
    conn = psycopg2.connect(dsn, async_=True)
    try:
        _wait(conn, time.monotonic() + timeout)
    except BaseException:
        conn.close()
        raise
    return conn


def execute(conn: Any, sql: str, args: tuple[Any, ...], timeout: float) -> list[tuple[Any, ...]]:
    """Run ``sql`` on ``conn`` within ``timeout`` seconds; its rows (if any)."""
    cur = conn.cursor()
    cur.execute(sql, args)
    _wait(conn, time.monotonic() + timeout)
    return cur.fetchall() if cur.description else []


class _Loop:
    """A thread that makes one attempt every ``period`` seconds until stopped."""

    def __init__(self, period: float) -> None:
        self.period = period
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def attempt(self) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        next_at = time.monotonic()
        while not self.stopping.is_set():
            self.attempt()
            next_at = max(next_at + self.period, time.monotonic())
            self.stopping.wait(max(0.0, next_at - time.monotonic()))

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=30)


class Writer(_Loop):
    """Commits numbered rows through ``dsn`` (the proxy's primary port), reconnecting.

    Each attempt takes the next number, so every number is sent at most once: ``acks``
    holds the acknowledged ones, ``unknown`` those whose COMMIT was sent but whose answer
    never came (an error or the deadline), ``errors`` a sample of what failed. A refusal
    by a read-only server (a replica) committed nothing and keeps the connection.
    """

    def __init__(self, dsn: str, period: float = 0.1, timeout: float = 2.0) -> None:
        super().__init__(period)
        self.dsn, self.timeout = dsn, timeout
        self.acks: list[Ack] = []
        self.unknown: list[int] = []
        self.errors: list[str] = []
        self.conn: Any = None
        self.n = 0

    def statement(self) -> tuple[str, tuple[Any, ...]]:
        """The INSERT of row ``self.n``; it returns the acknowledging server instance."""
        return (
            f"INSERT INTO public.{WRITES} (n) VALUES (%s) "
            "RETURNING host(inet_server_addr()) || '|' || pg_postmaster_start_time()::text",
            (self.n,),
        )

    def attempt(self) -> None:
        if self.conn is None:
            try:
                self.conn = connect(self.dsn, self.timeout)
            except (psycopg2.Error, TimeoutError) as exc:
                self._error(exc)
                return
        self.n += 1
        sql, args = self.statement()
        try:
            rows = execute(self.conn, sql, args, self.timeout)
        except psycopg2.errors.ReadOnlySqlTransaction:
            return
        except (psycopg2.Error, TimeoutError) as exc:
            self.unknown.append(self.n)
            self._error(exc)
            self._drop()
            return
        self.acks.append(Ack(self.n, time.monotonic(), str(rows[0][0])))

    def _error(self, exc: BaseException) -> None:
        if len(self.errors) < 200:
            self.errors.append(f"{time.monotonic():.3f} {type(exc).__name__}: {exc}".strip())

    def _drop(self) -> None:
        with contextlib.suppress(psycopg2.Error):
            self.conn.close()
        self.conn = None

    def stop(self) -> None:
        super().stop()
        if self.conn is not None:
            self._drop()


class Probe(Writer):
    """Commits numbered rows straight to one member's own port, whatever its role: a
    replica refuses them, a primary acknowledges them (``Ack.instance`` is the member)."""

    def __init__(self, member: str, dsn: str, period: float = 0.1, timeout: float = 2.0) -> None:
        super().__init__(dsn, period, timeout)
        self.member = member

    def statement(self) -> tuple[str, tuple[Any, ...]]:
        return (
            f"INSERT INTO public.{PROBES} (member, n) VALUES (%s, %s) RETURNING %s",
            (self.member, self.n, self.member),
        )


class Probes:
    """One :class:`Probe` per member."""

    def __init__(self, dsns: Mapping[str, str], period: float = 0.1) -> None:
        self.probes = {m: Probe(m, dsn, period) for m, dsn in dsns.items()}

    def start(self) -> None:
        for p in self.probes.values():
            p.start()

    def stop(self) -> None:
        for p in self.probes.values():
            p.stopping.set()
        for p in self.probes.values():
            p.stop()

    def acks(self) -> dict[str, list[Ack]]:
        return {m: list(p.acks) for m, p in self.probes.items()}
