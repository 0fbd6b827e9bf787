"""Running a rolling restart from ONE member (issue 16, items 2 and 6).

pyinfra runs each operation on every host in lockstep, so a roll spread over the hosts'
own operations could not wait for one member to stream again before the next one
restarts. The deploy therefore runs the whole roll as one operation on the cluster's
seed, which drives every member through Patroni, as ``make switchover`` does:
``patronictl`` inside the seed's Postgres container (as the postgres user: Patroni's own
configuration carries the client certificate and REST password, which are never read
or printed here) restarts members and switches over; ``GET /cluster`` on the seed's
REST API tells when each step is done. The order is :mod:`pgsteady.cluster.rolling`'s.

The roll holds the etcd lock of :mod:`pgsteady.cluster.roll_lock` from its first step to
its last; a second one is refused naming the holder. The lock must fence (R9 M1): before
each step the driver renews the lease and checks that the key still carries it (a lapsed
lease or a key another deploy took stops the roll before it touches a member), renews
again at least every :data:`KEEPALIVE_S` while it waits, and a member's ``up`` is bounded
by :data:`UP_TIMEOUT_S`, below the lease's TTL.
"""

from __future__ import annotations

import contextlib
import json
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass

from pgsteady.cluster import rolling
from pgsteady.cluster.etcd_service import wait_all_healthy
from pgsteady.cluster.member_service import PATRONI_DIR
from pgsteady.cluster.operations import OperationError, replica_fitness
from pgsteady.cluster.roll_lock import TTL_S, Holder, script_argv
from pgsteady.cluster.status import CONTAINER_CA, FETCH_SCRIPT, ClusterStatus, parse_cluster
from pgsteady.cluster.topology import Cluster
from pgsteady.postgres.session import postgres_exec

#: ``run(shell command) -> (ok, stdout, stderr)`` on the seed's host.
Run = Callable[[str], tuple[bool, str, str]]
#: ``cycle(member, is_leader)``: restart or recreate one member and wait until it is back.
Cycle = Callable[[str, bool], None]
STEP_TIMEOUT_S = 300.0
POLL_S = 2.0
SETTLE_S = 3.0
#: the longest a member's ``up`` may take (it runs with no renewal): well below TTL_S
UP_TIMEOUT_S = 600
#: renewal period while the driver waits for a step to finish
KEEPALIVE_S = 60.0
#: how long a recreated etcd member has to rejoin before the roll stops
ETCD_HEALTHY_S = 120


@dataclass
class Seed:
    """The member that drives the roll: its container and the cluster's names."""

    run: Run
    container: str
    cluster: Cluster
    member_name: str
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    #: the lock's lease while the roll holds it (renewed by :meth:`keepalive`)
    lease: str | None = None
    renewed_at: float = 0.0

    def exec(self, argv: list[str]) -> tuple[bool, str, str]:
        return self.run(shlex.join(postgres_exec(self.container, *argv)))

    def cluster_status(self) -> ClusterStatus:
        m = self.cluster.member(self.member_name)
        host = f"[{m.address}]" if ":" in m.address else m.address
        url = f"https://{host}:{self.cluster.rest_port}/cluster"
        ok, out, err = self.exec(["python3", "-c", FETCH_SCRIPT, url, CONTAINER_CA])
        if not ok:
            return ClusterStatus(error=f"GET /cluster on {self.member_name} failed: {err.strip()}")
        try:
            return parse_cluster(json.loads(out))
        except ValueError as exc:
            return ClusterStatus(error=f"GET /cluster returned no JSON: {exc}")

    def patronictl(self, *args: str) -> None:
        ok, out, err = self.exec(["patronictl", "-c", PATRONI_DIR, *args])
        if not ok:
            why = (err.strip() or out.strip()).splitlines()
            raise OperationError(f"patronictl {args[0]} failed: {why[-1] if why else '?'}")

    def lock(self, action: str, *rest: str) -> str:
        argv = script_argv(action, *rest)
        ok, out, err = self.exec(argv)
        if not ok:
            raise OperationError(f"the roll lock in etcd ({action}): {err.strip()[-300:]}")
        return out.strip()

    def keepalive(self, force: bool = False) -> None:
        """Renew the lock's lease and check the key still carries it (every
        :data:`KEEPALIVE_S`, or now with ``force``); a lost lock stops the roll."""
        if self.lease is None or not (force or self.clock() - self.renewed_at >= KEEPALIVE_S):
            return
        try:
            self.lock("renew", self.lease)
        except OperationError as exc:
            raise rolling.RollRefused(
                f"rolling change stopped: the roll lock is no longer ours ({exc}); "
                "no further member is touched"
            ) from None
        self.renewed_at = self.clock()

    def wait(self, until: Callable[[], str | None], what: str) -> None:
        deadline = self.clock() + STEP_TIMEOUT_S
        while (waiting := until()) is not None:
            if self.clock() > deadline:
                raise OperationError(f"{what}: not done after {STEP_TIMEOUT_S:g} s ({waiting})")
            self.keepalive()
            self.sleep(POLL_S)


def acquire(seed: Seed, holder: Holder) -> str:
    """Take the lock (its lease id), or :class:`RollRefused` naming who holds it."""
    out = seed.lock("acquire", holder.to_json(), str(TTL_S))
    kind, _, rest = out.partition(" ")
    if kind == "ok":
        seed.lease, seed.renewed_at = rest, seed.clock()
        return rest
    other = Holder.parse(rest)
    who = other.describe() if other else "another operation"
    raise rolling.RollRefused(f"a rolling operation is in progress ({who}); try again after it")


def recreate_commands(cluster: Cluster, name: str, up: str, etcd_ctl: list[str]) -> list[str]:
    """What the roll runs on member ``name``'s host, in order: the stack's ``up`` bounded
    by :data:`UP_TIMEOUT_S`; on an etcd host, then a wait until every etcd member reports
    healthy (that ``up`` recreates the host's etcd too when its image or compose service
    changed, R9 H1), so no two etcd members restart at once. ``etcd_ctl``: etcdctl in
    the host's etcd container."""
    commands = [f"timeout {UP_TIMEOUT_S} {up}"]
    if cluster.member(name) in cluster.etcd_members:
        commands.append(wait_all_healthy(etcd_ctl, ETCD_HEALTHY_S))
    return commands


def release(seed: Seed, lease: str) -> None:
    """Give the lock back; a release that fails (a lease already lapsed, etcd gone) does
    not hide why the roll ended: the lease lapses on its own within TTL_S."""
    seed.lease = None
    with contextlib.suppress(OperationError):
        seed.lock("release", lease)


def _restart(seed: Seed, name: str, max_lag: int, leader: bool) -> None:
    seed.patronictl("restart", seed.cluster.name, name, "--force")

    def back() -> str | None:
        m = seed.cluster_status().member(name)
        if m is None or m.pending_restart:
            return f"{name} is {'gone' if m is None else 'still pending a restart'}"
        if leader:
            return None if m.is_primary and m.state == "running" else f"{name} is {m.state}"
        return replica_fitness(m, name, max_lag)

    seed.wait(back, f"restart of {name}")


def _switchover(seed: Seed, leader: str, candidate: str, max_lag: int) -> None:
    c = seed.cluster.name
    seed.patronictl("switchover", c, "--leader", leader, "--candidate", candidate, "--force")

    def moved() -> str | None:
        cs = seed.cluster_status()
        if cs.leader != candidate:
            return f"{cs.leader or 'nobody'} leads"
        new = cs.member(candidate)
        if new is None or new.state != "running":
            return f"{candidate} is not running yet"
        return replica_fitness(cs.member(leader), leader, max_lag)

    seed.wait(moved, f"switchover from {leader} to {candidate}")


def _settled(seed: Seed, max_lag: int) -> None:
    """Until the cluster is whole again (every replica streams within the lag limit),
    then a moment for the replicas to replay what the step wrote (a primary restarted
    with a lowered max_connections logs the change, which a replica must have replayed
    before its own restart can take the lower value)."""

    def whole() -> str | None:
        try:
            rolling.check_whole(seed.cluster_status(), max_lag)
        except rolling.RollRefused as exc:
            return str(exc)
        return None

    seed.wait(whole, "the cluster whole again")
    seed.sleep(SETTLE_S)


def wait_pending(seed: Seed, settle_s: float) -> ClusterStatus:
    """After a DCS patch, Patroni flags ``pending_restart`` on its next loop: wait until
    every member is flagged, or ``settle_s`` passes (a reload-only change flags none)."""
    deadline = seed.clock() + settle_s
    while True:
        cs = seed.cluster_status()
        every = cs.members and all(m.pending_restart for m in cs.members)
        if every or seed.clock() > deadline:
            return cs
        seed.sleep(POLL_S)


def _steps(seed: Seed, st: rolling.RollState, max_lag: int, cycle: Cycle) -> list[str]:
    """Every step of the roll, each waited for; before each, the lock is renewed and
    checked still ours (and renewed while waiting: :meth:`Seed.keepalive`)."""
    done: list[str] = []
    cs = seed.cluster_status()
    while (step := rolling.next_step(cs, st, max_lag)) is not None:
        seed.keepalive(force=True)
        started = seed.clock()
        if step.action == "switchover":
            assert step.candidate is not None
            _switchover(seed, step.member, step.candidate, max_lag)
        else:
            cycle(step.member, step.member == cs.leader)
        rolling.record(st, step)
        _settled(seed, max_lag)
        done.append(f"{step.describe(st.verb)} ({seed.clock() - started:.1f} s)")
        seed.keepalive(force=True)
        cs = seed.cluster_status()
    return done


def restart_roll(
    seed: Seed, holder: Holder, max_lag: int, lowered: list[str], settle_s: float
) -> list[str]:
    """Restart every member pending a restart, in :func:`rolling.next_step`'s order,
    under the lock; the steps done, one line each."""
    lease = acquire(seed, holder)
    try:
        cs = wait_pending(seed, settle_s)
        rolling.check_whole(cs, max_lag)
        # this run's lowering, or one an earlier run patched into the DCS (R9 M4)
        first = bool(lowered or rolling.leader_lowered(cs))
        st = rolling.RollState(rolling.pending_members(cs), primary_first=first)

        def restart(name: str, leader: bool) -> None:
            _restart(seed, name, max_lag, leader)

        done = _steps(seed, st, max_lag, restart)
        left = rolling.pending_members(seed.cluster_status())
        if left:
            raise rolling.RollRefused(
                f"rolling restart stopped: {', '.join(sorted(left))} still pending a restart "
                f"after {'; '.join(done) or 'no step'}"
            )
        return done
    finally:
        release(seed, lease)


def recreate_roll(
    seed: Seed, holder: Holder, max_lag: int, needs: set[str], recreate: Callable[[str], None]
) -> list[str]:
    """Recreate the containers of ``needs`` (``recreate(member)`` runs the stack's ``up``
    on that member's host), replicas first, one switchover, the old leader last; each
    waited for until it streams again. The steps done, one line each."""
    lease = acquire(seed, holder)
    try:
        rolling.check_whole(seed.cluster_status(), max_lag, needs)
        st = rolling.RollState(set(needs), verb="recreate")

        def cycle(name: str, leader: bool) -> None:
            recreate(name)

            def back() -> str | None:
                return replica_fitness(seed.cluster_status().member(name), name, max_lag)

            seed.wait(back, f"{name} streaming again after its new container")

        return _steps(seed, st, max_lag, cycle)
    finally:
        release(seed, lease)
