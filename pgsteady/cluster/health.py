"""The cluster checks of ``make verify``: one leader, every replica streaming within the
lag limit, no inactive replication slot, archiving healthy on the primary.

Each ``*_problems`` function is pure (what Patroni's ``GET /cluster`` and the leader's
:data:`LEADER_SQL` said in, one sentence per problem out); tests/verify/test_cluster.py
gathers the inputs on the host and the integration tests gather them from a live cluster.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pgsteady.cluster.member_service import HAPROXY_LOADED, haproxy_marker
from pgsteady.cluster.status import ClusterStatus
from pgsteady.units import format_bytes

#: Patroni 3 says ``running`` for a replica that replicates; Patroni 4 says ``streaming``.
REPLICATING_STATES = frozenset({"running", "streaming"})

#: Run on the leader as the superuser with search_path pinned to pg_catalog, pg_temp;
#: every name is qualified anyway. One JSON object (see :class:`LeaderView`).
LEADER_SQL = """
SELECT pg_catalog.json_build_object(
  'in_recovery', pg_catalog.pg_is_in_recovery(),
  'streaming', (SELECT coalesce(pg_catalog.json_agg(application_name), '[]')
                FROM pg_catalog.pg_stat_replication WHERE state = 'streaming'),
  'slots', (SELECT coalesce(pg_catalog.json_agg(pg_catalog.json_build_object(
                'name', slot_name, 'type', slot_type, 'active', active)), '[]')
            FROM pg_catalog.pg_replication_slots),
  'archive_mode', pg_catalog.current_setting('archive_mode'),
  'archiver', (SELECT pg_catalog.json_build_object(
                 'archived_count', archived_count, 'failed_count', failed_count,
                 'last_archived_wal', last_archived_wal,
                 'last_archived_time', last_archived_time,
                 'last_failed_wal', last_failed_wal, 'last_failed_time', last_failed_time)
               FROM pg_catalog.pg_stat_archiver)
)
"""


@dataclass
class LeaderView:
    """What :data:`LEADER_SQL` returned on the leader."""

    in_recovery: bool = False
    streaming: list[str] = field(default_factory=list)
    slots: list[dict[str, Any]] = field(default_factory=list)
    archive_mode: str = "off"
    archiver: dict[str, Any] = field(default_factory=dict)


def parse_leader(text: str) -> LeaderView:
    """:data:`LEADER_SQL`'s one JSON row -> :class:`LeaderView`."""
    doc = json.loads(text)
    return LeaderView(
        in_recovery=bool(doc.get("in_recovery")),
        streaming=[str(x) for x in doc.get("streaming") or []],
        slots=list(doc.get("slots") or []),
        archive_mode=str(doc.get("archive_mode") or "off"),
        archiver=dict(doc.get("archiver") or {}),
    )


def leader_problems(cs: ClusterStatus, expected: Sequence[str]) -> list[str]:
    """Exactly one member is a running primary, and it is one of ``expected``."""
    if cs.error:
        return [cs.error]
    running = [m.name for m in cs.members if m.is_primary and m.state == "running"]
    if len(running) == 1:
        if running[0] not in expected:
            return [f"the leader {running[0]} is not a member of the inventory's cluster"]
        return []
    if not running:
        named = [f"{m.name} ({m.state})" for m in cs.members if m.is_primary]
        return [
            "no running leader"
            + (f": the leader key names {', '.join(named)}" if named else "")
            + (" and the cluster is paused (no failover)" if cs.paused else "")
        ]
    return [f"{len(running)} running primaries: {', '.join(running)} (split brain)"]


def replica_problems(
    cs: ClusterStatus, expected: Sequence[str], streaming: Sequence[str], max_lag: int
) -> list[str]:
    """Every ``expected`` member but the leader is a replica that replicates, shows in the
    leader's pg_stat_replication as streaming (``streaming``: its application names) and
    is at most ``max_lag`` bytes behind."""
    if cs.error:
        return [cs.error]
    problems = []
    for name in expected:
        m = cs.member(name)
        if m is None:
            problems.append(f"{name} is not in the cluster (Patroni is not running there)")
            continue
        if m.is_primary:
            continue
        if m.role != "replica" or m.state not in REPLICATING_STATES:
            problems.append(f"{name} is {m.role} in state {m.state}, not a replicating replica")
        elif name not in streaming:
            problems.append(f"{name} is not streaming from the leader (no WAL sender for it)")
        if m.lag_bytes is None:
            problems.append(f"{name}'s lag is unknown")
        elif m.lag_bytes > max_lag:
            problems.append(
                f"{name} is {format_bytes(m.lag_bytes)} behind (limit {format_bytes(max_lag)})"
            )
    return problems


def slot_problems(slots: Sequence[Mapping[str, Any]]) -> list[str]:
    """No replication slot without a consumer (it keeps WAL on the leader without limit)."""
    return [
        f"replication slot {s.get('name')} ({s.get('type')}) is inactive: it retains WAL "
        "on the leader until it is used or dropped"
        for s in slots
        if not s.get("active")
    ]


def _time(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) and value else None


def archiver_problems(view: LeaderView, expected: bool) -> list[str]:
    """The primary archives (when ``expected``) and its last attempt did not fail."""
    if view.in_recovery:
        return ["the leader's Postgres is in recovery: archiving is not running there"]
    if not expected:
        return []
    if view.archive_mode not in ("on", "always"):
        return [f"archive_mode is {view.archive_mode} on the primary"]
    a = view.archiver
    failed, archived = _time(a.get("last_failed_time")), _time(a.get("last_archived_time"))
    if failed and (archived is None or failed > archived):
        return [
            f"archiving fails on the primary: {a.get('failed_count')} failures, last "
            f"{a.get('last_failed_wal')} at {a.get('last_failed_time')} (last success: "
            f"{a.get('last_archived_wal') or 'none'})"
        ]
    return []


def haproxy_marker_problems(cfg: str | None, marker: str | None, cfg_path: str) -> list[str]:
    """HAProxy was last reloaded (or started) with the haproxy.cfg on disk: the deploy's
    marker (member_service.HAPROXY_LOADED) holds that file's hash. A reload that failed
    or never ran leaves it behind the file; the next deploy retries it."""
    if cfg is None:
        return [f"{cfg_path} is missing"]
    if marker is None:
        return [f"no deploy recorded a reload of {cfg_path} (no {HAPROXY_LOADED} beside it)"]
    if marker != haproxy_marker(cfg):
        return [
            f"{cfg_path} changed after the last reload the deploy recorded: the running "
            "HAProxy may route with an older file"
        ]
    return []
