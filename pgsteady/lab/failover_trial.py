"""One failover trial against a *cluster under test*, whatever runs it.

:class:`ClusterUnderTest` is what a backend provides: the members, the leader and its
timeline, the proxy's and each member's DSN, the faults and their repair, and a wait
until the cluster is whole again. The process cluster of the integration tests and the
bench (``tests/support/failover_lab.py``) implements it today; the host-container lab
(one Patroni container per lab host, issue 15) can implement the same methods.

:func:`run_trial` starts the writers (:mod:`pgsteady.lab.writers`), injects one fault
into the current leader, waits for the outcome the kind promises, repairs, waits until
the cluster is whole, and computes the figures (:mod:`pgsteady.lab.failover`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

import psycopg2

from pgsteady.lab import failover
from pgsteady.lab.writers import PROBES, SCHEMA, WRITES, Probes, Writer


class ClusterUnderTest(Protocol):
    """A running cluster with a proxy in front and faults that can be injected."""

    def members(self) -> list[str]:
        """The Postgres members' names."""
        ...

    def leader(self) -> str:
        """The member holding the leader key ('' when none does)."""
        ...

    def timeline(self) -> int:
        """The leader's timeline."""
        ...

    def proxy_dsn(self) -> str:
        """A libpq DSN for the proxy's read-write port on a host that survives the faults."""
        ...

    def member_dsn(self, name: str) -> str:
        """A libpq DSN for member ``name``'s own Postgres port (the split-brain probe)."""
        ...

    def inject(self, kind: str, victim: str) -> float:
        """Inflict fault ``kind`` (a key of :data:`failover.ALL_KINDS`) on leader ``victim``;
        the monotonic time just before the fault took effect."""
        ...

    def repair(self, kind: str, victim: str) -> None:
        """Undo what the fault left behind (resume, start again); no-op for some kinds."""
        ...

    def hold_seconds(self, kind: str) -> float:
        """How long a fault that moves no leader lasts before :meth:`repair`."""
        ...

    def wait_whole(self, timeout: float) -> None:
        """Until one leader serves and every other member streams from it, with every
        consensus member healthy; raises when ``timeout`` passes first."""
        ...


def _until(check: Callable[[], bool], timeout: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(step)
    return False


def _rows(dsn: str, query: str) -> list[tuple[Any, ...]]:
    conn = psycopg2.connect(dsn, connect_timeout=10)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(query)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


def prepare(cluster: ClusterUnderTest) -> None:
    """Create the writers' tables (through the proxy, on the leader) and empty them."""
    _rows(cluster.proxy_dsn(), f"{SCHEMA}; TRUNCATE public.{WRITES}, public.{PROBES}")


def run_trial(cluster: ClusterUnderTest, kind: str, timeout: float = 180.0) -> dict[str, Any]:
    """One trial of fault ``kind``; its figures, the loss and the split-brain verdict.

    ``timeout`` bounds each wait (the outcome, the cluster whole again); a trial whose
    writes never resume records ``seconds: None`` and still repairs the cluster.
    """
    if kind not in failover.ALL_KINDS:
        raise ValueError(
            f"unknown fault kind {kind!r}; expected one of {', '.join(failover.ALL_KINDS)}"
        )
    cluster.wait_whole(timeout)
    prepare(cluster)
    victim, timeline_before = cluster.leader(), cluster.timeline()
    writer = Writer(cluster.proxy_dsn())
    probes = Probes({m: cluster.member_dsn(m) for m in cluster.members()})
    writer.start()
    probes.start()
    try:
        if not _until(lambda: len(writer.acks) >= 5, 60):
            raise RuntimeError(f"the writer got no acks before the fault: {writer.errors[-3:]}")
        instance_before = writer.acks[-1].instance
        fault_at = cluster.inject(kind, victim)
        healed_at = None
        if kind in failover.NEW_INSTANCE:
            _until(lambda: failover.first_ack_after(writer.acks, fault_at, instance_before)
                   is not None, timeout)  # fmt: skip
        else:
            time.sleep(cluster.hold_seconds(kind))
        cluster.repair(kind, victim)
        if kind in failover.FROM_HEAL:
            healed_at = time.monotonic()
            _until(lambda: failover.first_ack_after(writer.acks, healed_at) is not None, timeout)
        try:
            cluster.wait_whole(timeout)
            whole_again = True
        except Exception as exc:  # reported, and the caller decides
            whole_again, whole_error = False, f"{type(exc).__name__}: {exc}"[:3000]
        whole_at = time.monotonic()
        time.sleep(1.0)  # a few acks on the cluster as it is now
    finally:
        writer.stop()
        probes.stop()
    end_at = time.monotonic()
    leader = cluster.leader()
    reference = cluster.member_dsn(leader)
    present = {r[0] for r in _rows(reference, f"SELECT n FROM public.{WRITES}")}
    probe_rows = {(m, n) for m, n in _rows(reference, f"SELECT member, n FROM public.{PROBES}")}
    probe_acks = probes.acks()
    acked = [a.n for a in writer.acks]
    probe_times = {m: [a.at for a in acks] for m, acks in probe_acks.items()}
    out: dict[str, Any] = {
        "kind": kind,
        **failover.trial_figures(kind, writer.acks, fault_at, end_at, instance_before, healed_at),
        "whole_again": whole_again,
        "whole_after_seconds": round(whole_at - fault_at, 3),
        "leader_before": victim,
        "leader_after": leader,
        "timeline_before": timeline_before,
        "timeline_after": cluster.timeline(),
        "acked": len(acked),
        "lost": failover.lost(acked, present),
        "lost_acks": [
            [a.n, round(a.at - fault_at, 3), a.instance.split("|")[0]]
            for a in writer.acks
            if a.n not in present
        ][:20],
        "unknown": len(writer.unknown),
        "unknown_committed": len(set(writer.unknown) & present),
        "probe_acked": {m: len(a) for m, a in probe_acks.items()},
        "split_brain": failover.interleaved(probe_times, fault_at - 1, end_at),
        "probe_turns": failover.turns(probe_times, fault_at - 1, end_at),
        "probe_lost": sorted(
            f"{m}:{a.n}"
            for m, acks in probe_acks.items()
            for a in acks
            if (m, a.n) not in probe_rows
        ),  # fmt: skip
    }
    if not whole_again:
        out["whole_error"] = whole_error
    return out
