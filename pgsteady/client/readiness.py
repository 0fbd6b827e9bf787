"""Readiness by role: "a primary is reachable" vs "a replica is within lag".

``/ready`` without parameters asks "can this pool serve a query now?".  With a multi-host
DSN the pool may land on any server, so the caller can say what it needs:

* ``?role=primary`` -- ready only on a server that is not in recovery (writable).
* ``?role=replica&max_lag_s=N`` -- ready only on a server in recovery whose replay lag is at
  most ``N`` seconds.  ``max_lag_s`` alone (any role) bounds the lag when the server is a
  replica and accepts a primary.

Replay lag: 0 when a WAL receiver runs and everything received has been replayed (an idle
primary sends nothing, so the last replayed commit may be old without any lag); otherwise
the age of the last replayed transaction, ``now() - pg_last_xact_replay_timestamp()``, or
unknown (never ready) when nothing was replayed yet.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

ROLES = ("primary", "replica")

#: Every function and operator schema-qualified: the application may own objects in its
#: search_path that would otherwise shadow them.
ROLE_SQL = """
SELECT pg_catalog.pg_is_in_recovery(),
       EXISTS (SELECT 1 FROM pg_catalog.pg_stat_wal_receiver),
       COALESCE(pg_catalog.pg_last_wal_receive_lsn()
                OPERATOR(pg_catalog.=) pg_catalog.pg_last_wal_replay_lsn(), false),
       pg_catalog.date_part('epoch', pg_catalog.now()
                OPERATOR(pg_catalog.-) pg_catalog.pg_last_xact_replay_timestamp())
"""


class BadRequest(ValueError):
    """A readiness parameter is invalid (HTTP 400); the message names it."""


@dataclass(frozen=True)
class Want:
    """What the caller requires: a role (``None`` = any) and a lag bound (``None`` = any)."""

    role: str | None = None
    max_lag_s: float | None = None

    @property
    def needs_role_query(self) -> bool:
        return self.role is not None or self.max_lag_s is not None


def parse_want(query: Mapping[str, str]) -> Want:
    """Validate ``role`` and ``max_lag_s`` from a query string; raise :class:`BadRequest`."""
    role = query.get("role") or None
    if role is not None and role not in ROLES:
        raise BadRequest(f"role={role!r}: expected one of {', '.join(ROLES)}")
    raw = query.get("max_lag_s")
    max_lag: float | None = None
    if raw not in (None, ""):
        try:
            max_lag = float(raw)
        except ValueError:
            max_lag = math.nan
        if not math.isfinite(max_lag) or max_lag < 0:
            raise BadRequest(f"max_lag_s={raw!r}: expected a number of seconds >= 0")
    if role == "primary" and max_lag is not None:
        raise BadRequest("max_lag_s applies to role=replica (or no role), not role=primary")
    return Want(role, max_lag)


def replay_lag_s(receiving: bool, caught_up: bool, replay_age_s: float | None) -> float | None:
    """A replica's lag in seconds, or ``None`` when it cannot be known (see module doc)."""
    if receiving and caught_up:
        return 0.0
    if replay_age_s is None:
        return None
    return max(0.0, replay_age_s)


def decide(want: Want, in_recovery: bool, lag_s: float | None) -> str | None:
    """``None`` if the server meets ``want``, else the reason it does not."""
    if want.role == "primary" and in_recovery:
        return "server is in recovery (a replica), not a primary"
    if want.role == "replica" and not in_recovery:
        return "server is a primary, not a replica"
    if in_recovery and want.max_lag_s is not None:
        if lag_s is None:
            return "replica lag unknown (nothing replayed yet)"
        if lag_s > want.max_lag_s:
            return f"replica lag {lag_s:.1f}s exceeds max_lag_s={want.max_lag_s:g}"
    return None
