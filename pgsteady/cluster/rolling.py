"""The order of a rolling change in a cluster (issue 16, items 1, 2 and 6): pure logic.

A rolling change cycles every member that needs it (a restart for ``pending_restart``, a
container recreation for a new image) one at a time, the leader last, so writes stop
only for one switchover:

1. each replica that needs it, one by one; each must stream again within the lag limit
   before the next (the driver waits, :mod:`pgsteady.cluster.roll_driver`);
2. a switchover to a replica that no longer needs it;
3. the old leader, now a replica.

PostgreSQL requires a hot standby's ``max_connections``, ``max_prepared_transactions``,
``max_locks_per_transaction``, ``max_worker_processes`` and ``max_wal_senders`` to be at
least the primary's; Patroni starts a replica with the larger of the DCS value and the
one in its pg_controldata (which follows the primary's WAL). Raising them replicas first
is therefore right; LOWERING one only takes effect on replicas after the primary runs
the lower value, so that roll restarts the leader first in place (a restart's write gap,
no switchover), then the replicas.

:func:`next_step` is called again after each step with the cluster as it is now, so a
roll stopped half way resumes where it stopped. It refuses (:class:`RollRefused`) when
the cluster is not whole: no single running leader, maintenance mode, a member that is
not a streaming replica within the lag limit.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pgsteady.cluster.operations import OperationError, replica_fitness
from pgsteady.cluster.status import ClusterStatus

#: Hot-standby parameters a replica must hold at least at the primary's value.
AT_LEAST_PRIMARY = (
    "max_connections",
    "max_prepared_transactions",
    "max_locks_per_transaction",
    "max_worker_processes",
    "max_wal_senders",
)


class RollRefused(OperationError):
    """A rolling change cannot start or go on; the message names the member and why."""


@dataclass(frozen=True)
class Step:
    """``cycle`` (restart or recreate) ``member``, or ``switchover`` from leader ``member``
    to ``candidate``."""

    action: str
    member: str
    candidate: str | None = None

    def describe(self, cycle: str = "restart") -> str:
        if self.action == "switchover":
            return f"switchover from {self.member} to {self.candidate}"
        return f"{cycle} {self.member}"


@dataclass
class RollState:
    """What this roll has done so far (the planner never cycles a member twice)."""

    needs: set[str]
    primary_first: bool = False
    #: what cycling a member is, for the steps' lines (restart, recreate)
    verb: str = "restart"
    cycled: list[str] = field(default_factory=list)
    switched_from: str | None = None


def lowered(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    """The :data:`AT_LEAST_PRIMARY` parameters whose value goes down from ``before``
    (the DCS ``postgresql.parameters`` now) to ``after`` (what the deploy sends)."""
    out = []
    for name in AT_LEAST_PRIMARY:
        try:
            old, new = int(str(before[name])), int(str(after[name]))
        except (KeyError, ValueError):
            continue
        if new < old:
            out.append(name)
    return out


def leader_lowered(cs: ClusterStatus) -> list[str]:
    """The :data:`AT_LEAST_PRIMARY` parameters the leader runs above the DCS value
    (Patroni 4's ``pending_restart_reason``): a lowering still to apply, whichever run
    patched the DCS (R9 M4: a lowering whose first roll was refused)."""
    leader = cs.member(cs.leader) if cs.leader else None
    if leader is None:
        return []
    running = {name: old for name, old, _ in leader.pending_changes}
    dcs = {name: new for name, _, new in leader.pending_changes}
    return lowered(running, dcs)


def pending_members(cs: ClusterStatus) -> set[str]:
    """The members Patroni flags ``pending_restart``."""
    return {m.name for m in cs.members if m.pending_restart}


def check_whole(cs: ClusterStatus, max_lag: int, expected: Iterable[str] = ()) -> str:
    """The leader's name, or :class:`RollRefused` naming what is not whole."""
    if cs.error:
        raise RollRefused(f"rolling change refused: {cs.error}")
    if cs.paused:
        raise RollRefused("rolling change refused: the cluster is in maintenance mode (paused)")
    leader = cs.member(cs.leader) if cs.leader else None
    if leader is None or leader.state != "running":
        names = ", ".join(cs.leaders) or "none"
        raise RollRefused(f"rolling change refused: no single running leader (primaries: {names})")
    for name in expected:
        if cs.member(name) is None:
            raise RollRefused(f"rolling change refused: {name} is not in the cluster")
    for m in cs.members:
        if m.name != leader.name:
            problem = replica_fitness(m, m.name, max_lag)
            if problem:
                raise RollRefused(f"rolling change refused: {problem}")
    return leader.name


def next_step(cs: ClusterStatus, st: RollState, max_lag: int) -> Step | None:
    """The next step of the roll, None when it is done (see the module docstring)."""
    leader = check_whole(cs, max_lag)
    todo = [n for n in sorted(st.needs) if n not in st.cycled]
    if st.primary_first and leader in todo:
        return Step("cycle", leader)
    replicas = [n for n in todo if n != leader]
    if replicas:
        return Step("cycle", replicas[0])
    if leader not in todo:
        return None
    if st.switched_from is not None:
        raise RollRefused(
            f"rolling change stopped: {leader} leads after the switchover from "
            f"{st.switched_from} and still needs it; see docs/operations.md"
        )
    # a replica already cycled, or one that never needed it (both run the new settings)
    fit = [
        m
        for m in cs.members
        if m.name != leader and (m.name in st.cycled or m.name not in st.needs)
    ]
    if not fit:
        raise RollRefused(
            f"rolling change refused: no replica to switch over to from {leader} "
            "(a cluster of one member cannot roll without downtime)"
        )
    # in synchronous mode Patroni takes only a synchronous standby as the candidate: one
    # comes first, cycled or not (R9 L3); then a cycled replica, then the least lag
    candidate = min(
        fit, key=lambda m: (not m.sync, m.name not in st.cycled, m.lag_bytes or 0, m.name)
    )
    return Step("switchover", leader, candidate.name)


def record(st: RollState, step: Step) -> None:
    """Note a finished step in ``st``."""
    if step.action == "switchover":
        st.switched_from = step.member
    else:
        st.cycled.append(step.member)
