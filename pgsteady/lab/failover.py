"""Failover figures from what the writers saw (issue 15, Tests and figures). Pure.

A trial injects one fault into a cluster under test while two writers run:

- the **writer** commits numbered rows through the proxy's primary port about every
  100 ms, reconnecting after each failure, and records each acknowledged number with the
  monotonic time its COMMIT returned and the server instance that acknowledged it
  (``"<address>|<postmaster start>"``);
- the **probe** commits numbered rows to every member directly (one thread per member)
  and records which member acknowledged which row, and when.

From those records: the **gap** (the fault to the first acknowledged write, from a new
server instance when the fault replaces it), the longest stretch without any
acknowledged write, the **loss** (acknowledged numbers missing on the leader afterwards)
and **split brain** (two members acknowledging commits in interleaved turns).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: The fault kinds, each with what it does to the cluster (the table's wording).
KINDS: dict[str, str] = {
    "postmaster_kill": "kill -9 of the primary's postmaster (Patroni starts it again in place)",
    "primary_kill": "SIGKILL of the primary's Patroni and Postgres at once (`docker kill` / "
    "power loss of the primary)",
    "primary_pause": "SIGSTOP of the primary's Patroni and Postgres (`docker pause`), SIGCONT "
    "once a new primary serves",
    "etcd_member_lost": "SIGKILL of the etcd member on the primary's host, started again "
    "afterwards",
    "etcd_quorum_lost": "SIGKILL of 2 of the 3 etcd members, started again after the "
    "leader's retry_timeout has passed",
    "switchover": "planned switchover through the REST API (POST /switchover)",
}
#: Kinds only the host-container lab can stage (pgsteady/lab/cluster_backend.py): one
#: host per member, each with its own dockerd and network interface.
LAB_KINDS: dict[str, str] = {
    "container_kill": "`docker kill` of the primary's Postgres container on its host (its "
    "restart policy starts it again; `docker start` as the repair otherwise)",
    "host_power_loss": "power loss of the primary's host (its container killed), powered "
    "on again once a new primary serves",
    "host_isolated": "the primary's host cut off the network (peers, etcd, clients), "
    "reconnected once a new primary serves",
}
#: Every kind a trial knows (the process cluster stages :data:`KINDS`).
ALL_KINDS: dict[str, str] = {**KINDS, **LAB_KINDS}
#: Kinds after which the writer must be served by a server instance other than the one
#: that served before the fault (a restarted or a new primary).
NEW_INSTANCE = frozenset({"postmaster_kill", "primary_kill", "primary_pause", "switchover",
                          *LAB_KINDS})  # fmt: skip
#: Kinds that move the leader key to another member (a killed container comes back on
#: its host within the lease: its member keeps the key).
NEW_LEADER = frozenset({"primary_kill", "primary_pause", "switchover", "host_power_loss",
                        "host_isolated"})  # fmt: skip
#: Kinds whose gap is measured from the repair (writes may stop while the fault lasts).
FROM_HEAL = frozenset({"etcd_quorum_lost"})
#: The kinds whose p95 is the headline "primary lost → writes accepted on the new primary".
PRIMARY_LOST = ("primary_kill", "primary_pause")


@dataclass(frozen=True)
class Ack:
    """One acknowledged commit: its number, when COMMIT returned, who acknowledged it."""

    n: int
    at: float
    instance: str


def first_ack_after(
    acks: Iterable[Ack], start: float, not_instance: str | None = None
) -> Ack | None:
    """The earliest ack after ``start``, skipping acks by ``not_instance`` (the faulted
    server, whose backends may still commit a moment after the fault)."""
    later = [a for a in acks if a.at > start and a.instance != not_instance]
    return min(later, key=lambda a: a.at) if later else None


def longest_gap(times: Iterable[float], start: float, end: float) -> float:
    """The longest stretch in ``[start, end]`` without an ack: from ``start`` to the first
    ack, between acks, and from the last ack to ``end``."""
    inside = sorted(t for t in times if start < t <= end)
    edges = [start, *inside, end]
    return max(b - a for a, b in zip(edges, edges[1:], strict=False))


def lost(acked: Iterable[int], present: Iterable[int]) -> list[int]:
    """Acknowledged numbers that the leader does not have, in order."""
    return sorted(set(acked) - set(present))


def turns(
    acks: Mapping[str, Sequence[float]], start: float, end: float
) -> list[tuple[str, float, float, int]]:
    """The acks in ``[start, end]`` by time, grouped into turns: (member, first ack and
    last ack relative to ``start``, count). m1 m1 m2 m2 is one turn each."""
    events = sorted((t, m) for m, times in acks.items() for t in times if start <= t <= end)
    out: list[tuple[str, float, float, int]] = []
    for t, member in events:
        rel = round(t - start, 3)
        if out and out[-1][0] == member:
            m, first, _, count = out[-1]
            out[-1] = (m, first, rel, count + 1)
        else:
            out.append((member, rel, rel, 1))
    return out


def interleaved(acks: Mapping[str, Sequence[float]], start: float, end: float) -> list[str]:
    """Members whose acks in ``[start, end]`` come in more than one turn (:func:`turns`).

    A member that acknowledges again after another member did (m1 m2 m1) was a primary
    at the same time as that other member: split brain.
    """
    members = [t[0] for t in turns(acks, start, end)]
    return sorted({m for m in members if members.count(m) > 1})


def trial_figures(
    kind: str,
    acks: Sequence[Ack],
    fault_at: float,
    end_at: float,
    instance_before: str,
    healed_at: float | None = None,
) -> dict[str, Any]:
    """The writer's figures of one trial: ``seconds`` (the gap as defined for ``kind``),
    ``longest_gap_seconds`` from the fault to ``end_at``, and, for faults that stop writes
    until repaired, how long writes went on after the fault."""
    if kind not in ALL_KINDS:
        raise ValueError(f"unknown fault kind {kind!r}; expected one of {', '.join(ALL_KINDS)}")
    start = healed_at if kind in FROM_HEAL and healed_at is not None else fault_at
    skip = instance_before if kind in NEW_INSTANCE else None
    first = first_ack_after(acks, start, skip)
    out: dict[str, Any] = {
        "seconds": None if first is None else round(first.at - start, 3),
        "served_by": None if first is None else first.instance.split("|")[0],
        "longest_gap_seconds": round(longest_gap([a.at for a in acks], fault_at, end_at), 3),
    }
    if kind in FROM_HEAL and healed_at is not None:
        before = [a.at for a in acks if fault_at < a.at <= healed_at]
        out["writes_went_on_seconds"] = round(max(before) - fault_at, 3) if before else 0.0
        out["fault_lasted_seconds"] = round(healed_at - fault_at, 3)
    return out
