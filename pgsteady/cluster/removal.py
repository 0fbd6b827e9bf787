"""Taking a member out of its cluster for good (issue 16 item 5): ``make remove-member``.

The operator's steps (docs/operations.md "Remove a member"): while the host is still in
the inventory, ``make remove-member HOST=x`` (``GONE=1`` when the host is dead), then
delete it from the inventory and ``make deploy``: the other members' Patroni allowlist,
pg_hba lines, HAProxy backends and the backup host's pgN list are rendered from the
inventory, so they stop naming it.

:func:`plan` decides, before anything changes, whether ``x`` may leave:
- it must be a member, and at least 3 members must remain (the smallest etcd quorum);
- etcd runs on the first 3 members in inventory order (5 from 7 up,
  :func:`~pgsteady.cluster.topology.etcd_count`), and a running etcd cluster's members are
  fixed at its first start: pgsteady does not ``etcdctl member add``/``remove`` yet. So a
  removal must leave the etcd set as it is: a host that runs etcd is refused, and so is a
  removal that would shrink etcd (7 members to 6), naming the hosts that may go.

:func:`remove` then, against the running cluster (REST API of the remaining members):
- refuses while ``x`` leads (switch over first, to the synchronous standby) or while any
  remaining member is not running: the slot clean-up below is cluster-wide;
- stops ``x``'s stack for good (its containers stopped with restart policy ``no``), or
  with ``gone`` contacts it not at all;
- waits until its member key is gone from the DCS (at once on a clean stop, within the
  ttl for a dead host; a host that still runs keeps it, and the wait fails naming it).
  For a dead host the wait is :func:`gone_wait`: Patroni's ttl as the DCS holds it, plus
  ``loop_wait`` and :data:`GONE_MARGIN_S`, bounded (review R10 L3; it was the fixed
  ``--timeout``, 120 s, while ``patroni_ttl`` may be up to 3600 s);
- drops its replication slot: Patroni 4 keeps the slot of a member that left for
  ``member_slots_ttl`` (30 min by default) in case it comes back, on the leader and as a
  copy on every replica, and recreates it if dropped by hand. ``member_slots_ttl`` is set
  to 0 in the DCS until no remaining member has the slot, then to the value pgsteady
  converges (:data:`~pgsteady.cluster.patroni.MEMBER_SLOTS_TTL_S`), not to the value it
  found: a removal killed while it held 0 left 0 there, and the next removal or deploy
  sets it back (review R10 L1).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pgsteady.cluster.operations import OperationError, RestApi, _wait
from pgsteady.cluster.patroni import MEMBER_SLOTS_TTL_S
from pgsteady.cluster.status import ClusterStatus
from pgsteady.cluster.topology import Cluster, etcd_count


@dataclass(frozen=True)
class Removal:
    """A checked removal: the cluster, the host leaving and the members that stay."""

    cluster: str
    host: str
    remaining: tuple[str, ...]
    etcd_members: tuple[str, ...]

    @property
    def slot(self) -> str:
        """The member's replication slot name (Patroni: ``-`` and ``.`` become ``_``)."""
        return slot_name(self.host)


def slot_name(member: str) -> str:
    """Patroni's slot name for ``member`` (member names are ``[a-z0-9-]``: Patroni makes
    each ``-`` and ``.`` a ``_``)."""
    return member.lower().replace("-", "_").replace(".", "_")


def etcd_after(names: list[str], host: str) -> tuple[list[str], list[str]]:
    """(etcd members now, etcd members once ``host`` is gone), by inventory order."""
    remaining = [n for n in names if n != host]
    return names[: etcd_count(len(names))], remaining[: etcd_count(len(remaining))]


def _problem(names: list[str], host: str, cluster: str) -> str | None:
    if host not in names:
        return f"not a member of cluster {cluster!r} (its members: {', '.join(names)})"
    if len(names) - 1 < 3:
        return (
            f"cluster {cluster!r} would keep {len(names) - 1} members; 3 is the smallest "
            "(an etcd quorum that survives the loss of one)"
        )
    now, after = etcd_after(names, host)
    if host in now:
        joining = [n for n in after if n not in now]
        return (
            f"it runs one of the {len(now)} etcd members of cluster {cluster!r} "
            f"({', '.join(now)}); without it {', '.join(joining)} would have to join etcd, "
            "and pgsteady does not add members to a running etcd cluster"
        )
    if after != [n for n in now if n != host]:
        return (
            f"etcd would shrink from {len(now)} to {len(after)} members (dropping "
            f"{', '.join(n for n in now if n not in after)}), which pgsteady does not do "
            "to a running etcd cluster"
        )
    return None


def plan(cluster: Cluster, host: str) -> Removal:
    """The checked removal of ``host`` from ``cluster``; OperationError naming the host,
    why not, and which members may be removed."""
    names = [m.name for m in cluster.members]
    problem = _problem(names, host, cluster.name)
    if problem:
        allowed = [n for n in names if _problem(names, n, cluster.name) is None]
        accepted = ", ".join(allowed) if allowed else "none while the cluster has this size"
        raise OperationError(f"HOST = {host!r}: {problem}; accepted: {accepted}")
    remaining = tuple(n for n in names if n != host)
    return Removal(cluster.name, host, remaining, tuple(etcd_after(names, host)[1]))


def _check_cluster(cs: ClusterStatus, r: Removal) -> None:
    """Refusals against the running cluster, before anything changes."""
    if cs.error:
        raise OperationError(cs.error)
    if cs.leader == r.host:
        standby = next((m.name for m in cs.members if m.sync), None) or "<a replica>"
        raise OperationError(
            f"{r.host} leads cluster {r.cluster}: switch over first "
            f"(make switchover TO={standby}), then remove it; nothing was changed"
        )
    if cs.leader is None:
        raise OperationError(f"cluster {r.cluster} has no running leader; nothing was changed")
    names = {m.name: m for m in cs.members}
    down = [n for n in r.remaining if n not in names or names[n].state not in RUNNING]
    if down:
        raise OperationError(
            f"{', '.join(down)} not running: remove {r.host} once every remaining member "
            "runs (make status); nothing was changed"
        )


#: Patroni states of a member whose Postgres runs (a leader, or a replica streaming or
#: catching up from the archive).
RUNNING = ("running", "streaming", "in archive recovery")


def _config(api: RestApi, leader: str) -> dict[str, Any]:
    status, text = api.call(leader, "/config")
    if status != 200:
        raise OperationError(f"GET /config on {leader} failed ({status}): {text[:200]}")
    return dict(json.loads(text))


def _patch(api: RestApi, leader: str, body: dict[str, Any]) -> None:
    status, text = api.call(leader, "/config", "PATCH", body)
    if status != 200:
        raise OperationError(f"PATCH /config on {leader} failed ({status}): {text[:200]}")


#: seconds past ``ttl + loop_wait`` for a dead member's key to go (etcd may extend a
#: lease's remaining time when its own leader changes)
GONE_MARGIN_S = 30
#: the longest GONE=1 waits: the largest ttl pgsteady accepts (3600 s), a loop, the margin
GONE_MAX_WAIT_S = 3600 + 60 + GONE_MARGIN_S


def gone_wait(config: dict[str, Any], timeout: float) -> tuple[float, str]:
    """How long GONE=1 waits for a dead member's key, from the DCS ``config`` (Patroni's
    ``ttl`` and ``loop_wait``; its defaults 30 and 10 when absent), at least ``timeout``
    and at most :data:`GONE_MAX_WAIT_S`; and the sentence that says so."""
    ttl, loop = _seconds(config.get("ttl"), 30), _seconds(config.get("loop_wait"), 10)
    derived = ttl + loop + GONE_MARGIN_S
    wait = min(max(timeout, derived), GONE_MAX_WAIT_S)
    why = f"Patroni's ttl {ttl:g} s + loop_wait {loop:g} s + {GONE_MARGIN_S} s"
    if derived > GONE_MAX_WAIT_S:
        why += f", bounded at {GONE_MAX_WAIT_S} s"
    elif timeout > derived:
        why = f"--timeout, more than {why}"
    return wait, f"waiting up to {wait:g} s for the dead member's key to expire ({why})"


def _seconds(value: Any, default: float) -> float:
    try:
        return max(float(value), 0.0) if value is not None else default
    except (TypeError, ValueError):
        return default


def _no_keepalive() -> None:
    """No lock to renew (the default of :func:`remove`)."""


def drop_slot(
    api: RestApi,
    r: Removal,
    slot_holders: Callable[[], list[str]],
    timeout: float,
    keepalive: Callable[[], None] = _no_keepalive,
) -> None:
    """Have Patroni drop the removed member's slot everywhere (``member_slots_ttl`` 0
    meanwhile), then set ``member_slots_ttl`` to the value the deploy converges; with no
    slot left, only set that value back if a killed removal left another there."""
    keepalive()
    leader = api.cluster().leader or r.remaining[0]
    if not slot_holders():
        left = _config(api, leader).get("member_slots_ttl")
        if str(left) != str(MEMBER_SLOTS_TTL_S):
            _patch(api, leader, {"member_slots_ttl": MEMBER_SLOTS_TTL_S})
        return
    _patch(api, leader, {"member_slots_ttl": 0})
    try:

        def dropped() -> str | None:
            keepalive()
            held = slot_holders()
            return f"slot {r.slot} still on {', '.join(held)}" if held else None

        _wait(dropped, timeout, f"dropping {r.host}'s replication slot", time.monotonic)
    finally:
        _patch(api, leader, {"member_slots_ttl": MEMBER_SLOTS_TTL_S})


def remove(
    api: RestApi,
    r: Removal,
    stop: Callable[[], None] | None,
    slot_holders: Callable[[], list[str]],
    timeout: float,
    keepalive: Callable[[], None] = _no_keepalive,
    say: Callable[[str], None] = lambda _: None,
) -> str:
    """Take ``r.host`` out of the running cluster (see the module docstring). ``stop``
    stops its stack for good; None: the host is gone (dead). ``slot_holders`` names the
    remaining members whose Postgres still has the member's slot. ``keepalive`` renews
    the roll lock the caller holds (before each change and while waiting); it raises
    when the lock is no longer ours, which ends the removal. ``say`` gets progress."""
    cs = api.cluster()
    _check_cluster(cs, r)
    started = time.monotonic()
    wait = timeout
    if stop is None:  # a dead member's key expires within Patroni's ttl
        wait, message = gone_wait(_config(api, cs.leader or r.remaining[0]), timeout)
        say(f"{r.host}: {message}")
    if stop is not None:
        keepalive()
        stop()

    def left() -> str | None:
        keepalive()
        now = api.cluster()
        if now.error:
            return now.error
        m = now.member(r.host)
        return f"{r.host} is still {m.role}/{m.state} in the DCS" if m else None

    what = f"{r.host} leaving the DCS"
    if stop is None:  # a dead member's key expires within patroni_ttl; a live one's never
        what += " (GONE=1 is for a host that is down: a running member keeps its key)"
    _wait(left, wait, what, time.monotonic)
    drop_slot(api, r, slot_holders, timeout, keepalive)
    return (
        f"{r.host} left cluster {r.cluster} after {time.monotonic() - started:.1f} s: "
        f"{'its containers are stopped and stay stopped, ' if stop else ''}its member key "
        f"and replication slot are gone. Now delete {r.host} from the inventory and run "
        "make deploy: the other members then stop naming it"
    )
