"""The process cluster as a *cluster under test* for failover trials
(:class:`pgsteady.lab.failover_trial.ClusterUnderTest`).

``with process_cluster(tmp, profile="default", synchronous=False) as cluster:`` starts
the live cluster of :mod:`tests.support.patroni_lab` (3 etcd members with TLS and RBAC,
Patroni 4.0.7 members m1 and m2, Postgres 15) with the profile's timings and HAProxy in front,
and yields a :class:`ProcessCluster`.

The faults are signals to the member's processes, all on this one host:

- ``postmaster_kill``: SIGKILL to the postmaster (PID from postmaster.pid);
- ``primary_kill``: SIGKILL to Patroni, its children and the postmaster's process group
  at once (the ``docker kill`` analogue: nothing of the member runs any more); the repair
  starts Patroni again on the kept data directory, which rejoins with pg_rewind;
- ``primary_pause``: SIGSTOP to the same processes (``docker pause``), SIGCONT as repair;
- ``etcd_member_lost`` / ``etcd_quorum_lost``: SIGKILL to one / two etcd members (the
  victim's first), started again by the repair;
- ``switchover``: POST /switchover to the leader's REST API (client certificate and
  password).

Network isolation of one member is not among them: every member, etcd and HAProxy
share the loopback interface and dial from 127.0.0.1, so no packet filter rule can cut
one member off from the others without cutting the rest (the host-container lab can).
HAProxy runs apart from the members (on m1's address): here it survives every fault,
as the proxy on a surviving host does in a real cluster.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.support.patroni_lab import (
    SUPERUSER_PW,
    PatroniLab,
    haproxy_in_front,
    running_patroni,
)

PATRONI_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ ")
#: Patroni timings (ttl / loop_wait / retry_timeout): the design's default and tight
#: profiles (cluster-design §6). Patroni's floor for ttl is 20 s.
PROFILES: dict[str, dict[str, int]] = {
    "default": {"ttl": 24, "loop_wait": 4, "retry_timeout": 10},
    "tight": {"ttl": 20, "loop_wait": 2, "retry_timeout": 9},
}


def descendants(*roots: int) -> list[int]:
    """``roots`` and every process below them (from /proc's parent PIDs). Postgres
    children make themselves session leaders, so a process group misses them."""
    parent: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = (entry / "stat").read_text()
                parent[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, todo = [], list(roots)
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.append(pid)
            todo += [child for child, ppid in parent.items() if ppid == pid]
    return found


def patroni_lines(log: Path, count: int) -> list[str]:
    """The last ``count`` lines Patroni itself wrote to ``log`` (Postgres' own lines, which
    share the file, carry a dotted timestamp; Patroni's a comma)."""
    text = log.read_text(errors="replace") if log.exists() else ""
    return [line for line in text.splitlines() if PATRONI_LINE.match(line)][-count:]


class ProcessCluster:
    """Faults, repairs and waits on the live process cluster."""

    def __init__(self, lab: PatroniLab, profile: str, synchronous: bool) -> None:
        self.lab, self.profile, self.synchronous = lab, profile, synchronous
        self.paused: list[int] = []
        self.etcd_down: list[str] = []

    # --- ClusterUnderTest ---------------------------------------------------------------

    def members(self) -> list[str]:
        return sorted(self.lab.members)

    def leader(self) -> str:
        """The leader key's value; an etcdctl call that fails under load is retried for
        10 s before this says there is no leader."""
        deadline = time.monotonic() + 10
        while not (name := self.lab.leader()) and time.monotonic() < deadline:
            time.sleep(0.5)
        return name

    def timeline(self) -> int:
        status, body = self.lab.request(self.leader(), "/patroni")
        if status != 200:
            raise RuntimeError(f"GET /patroni on the leader answered {status}")
        return int(json.loads(body)["timeline"])

    def proxy_dsn(self) -> str:
        c = self.lab.cluster
        return self._dsn(c.member("m1").address, c.postgres_port, "verify-ca")

    def member_dsn(self, name: str) -> str:
        c = self.lab.cluster
        return self._dsn(c.member(name).address, c.member_port, "verify-full")

    def hold_seconds(self, kind: str) -> float:
        c = self.lab.cluster
        if kind == "etcd_quorum_lost":  # long enough for the leader to give up its role
            return float(c.ttl + c.retry_timeout)
        return float(2 * c.loop_wait + 2)

    def inject(self, kind: str, victim: str) -> float:
        at = time.monotonic()
        if kind == "postmaster_kill":
            pid = self._postmaster(victim)
            at = time.monotonic()
            os.kill(pid, signal.SIGKILL)
        elif kind in ("primary_kill", "primary_pause"):
            sig = signal.SIGKILL if kind == "primary_kill" else signal.SIGSTOP
            targets = self._member_processes(victim)
            at = time.monotonic()
            self._send(targets, sig)
            self.paused = targets if sig == signal.SIGSTOP else []
        elif kind in ("etcd_member_lost", "etcd_quorum_lost"):
            names = [victim] + [m.name for m in self.lab.cluster.etcd_members if m.name != victim]
            for name in names[: 1 if kind == "etcd_member_lost" else 2]:
                self.lab.etcd.stop(name)
                self.etcd_down.append(name)
        elif kind == "switchover":
            other = next(m for m in self.members() if m != victim)
            body = json.dumps({"leader": victim, "candidate": other})
            # Patroni answers once the new leader runs (seconds, more on a loaded machine)
            status, text = self.lab.request(
                victim, "/switchover", "POST", body, gated=True, timeout=120
            )
            if status != 200:
                raise RuntimeError(f"switchover refused: {status} {text}")
        else:
            raise ValueError(f"unknown fault kind {kind!r}")
        return at

    def repair(self, kind: str, victim: str) -> None:
        if kind == "primary_kill":
            proc = self.lab.members[victim].proc
            proc.wait(timeout=30)
            self.lab.restart(victim)
        elif kind == "primary_pause":
            self.resume()
        for name in self.etcd_down:
            self.lab.etcd.start(name)
        self.etcd_down = []

    def wait_whole(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        self.lab.etcd.wait_healthy(3, timeout)
        while True:  # a member may restart under a check (demotion, rewind): check again
            try:
                self._check_whole(deadline)
                return
            except (AssertionError, RuntimeError, OSError) as exc:
                if time.monotonic() > deadline:
                    logs = "".join(
                        f"\n--- {m.name}: " + "\n".join(patroni_lines(m.log, 8))
                        for m in self.lab.members.values()
                    )
                    raise TimeoutError(f"not whole within {timeout:.0f} s: {exc}{logs}") from exc
                time.sleep(1)

    def _check_whole(self, deadline: float) -> None:
        """One leader answering as primary, every other member streaming from it, and in
        synchronous mode a synchronous standby."""
        while not (leader := self.leader()):
            if time.monotonic() > deadline:
                raise RuntimeError("no member holds the leader key")
            time.sleep(0.5)

        def left() -> float:
            return max(1.0, deadline - time.monotonic())

        self.lab.wait_role(leader, "primary", left())
        for name in self.members():
            if name != leader:
                self.lab.wait_role(name, "replica", left())
                self.lab.wait_streaming(leader, name, left())
        if self.synchronous:
            self._wait_sync_standby(leader, deadline)

    # --- helpers --------------------------------------------------------------------------

    def _dsn(self, host: str, port: int, sslmode: str) -> str:
        ca = self.lab.ca
        return (
            f"host={host} port={port} dbname=postgres user=postgres password={SUPERUSER_PW} "
            f"sslmode={sslmode} sslrootcert={ca} connect_timeout=2 application_name=failover"
        )

    def _postmaster(self, name: str) -> int:
        pidfile = self.lab.members[name].dir / "data" / "postmaster.pid"
        return int(pidfile.read_text().split()[0])

    def _member_processes(self, name: str) -> list[int]:
        """Every process of member ``name``: Patroni, the postmaster (Patroni starts it
        in a session of its own) and everything below them."""
        return descendants(self.lab.members[name].proc.pid, self._postmaster(name))

    @staticmethod
    def _send(pids: list[int], sig: signal.Signals) -> None:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def resume(self) -> None:
        """SIGCONT to whatever :meth:`inject` paused."""
        self._send(self.paused, signal.SIGCONT)
        self.paused = []

    def _wait_sync_standby(self, leader: str, deadline: float) -> None:
        """Until the leader names a synchronous standby that is in sync."""
        query = "SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'"
        member = self.lab.members[leader]
        while member.sql(self.lab.cluster.member_port, query) != "1":
            if time.monotonic() > deadline:
                raise TimeoutError(f"{leader} has no synchronous standby")
            time.sleep(0.5)


@contextlib.contextmanager
def process_cluster(
    tmp: Path, profile: str = "default", synchronous: bool = False
) -> Iterator[ProcessCluster]:
    """The live cluster with ``profile``'s timings, synchronous mode on or off, HAProxy
    in front; every process stopped (a paused one resumed first) on exit."""
    changes: dict[str, Any] = {**PROFILES[profile], "synchronous_mode": synchronous}
    with running_patroni(tmp, cluster_changes=changes) as lab:
        cluster = ProcessCluster(lab, profile, synchronous)
        try:
            with haproxy_in_front(lab.etcd, lab.root):
                cluster.wait_whole(180)
                yield cluster
        finally:
            cluster.resume()
            for name in cluster.etcd_down:
                with contextlib.suppress(OSError, subprocess.SubprocessError):
                    lab.etcd.start(name)
