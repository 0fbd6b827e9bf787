"""Where a run dumps in a cluster: on a streaming standby, the primary only as a fallback.

Every member runs the tool on the same schedule; each decides from its own Postgres
(no other host is asked): a standby whose WAL receiver streams dumps, unless it has more
WAL received than replayed than ``max_replay_gap`` bytes (catching up after an outage:
its dump would hold hours-old data under tonight's date); a standby that does not stream
or lags so leaves it; the primary leaves it when a standby streams from it, and
dumps (and says so) when none does. Off a cluster the tool dumps where it runs.
Restore and drill write, so they need the primary: on a standby they stop at once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from .docker import Docker
from .errors import BackupError

#: The local server's role, its WAL receiver and the standbys streaming from it: physical
#: walsenders only (no database), so a logical subscriber or CDC tool is not taken for a
#: standby that dumps.
ROLE_SQL = """
SELECT pg_catalog.json_build_object(
  'in_recovery', pg_catalog.pg_is_in_recovery(),
  'receiver', (SELECT status FROM pg_catalog.pg_stat_wal_receiver LIMIT 1),
  'replay_gap', pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_last_wal_receive_lsn(),
                                           pg_catalog.pg_last_wal_replay_lsn()),
  'streaming', (SELECT coalesce(pg_catalog.json_agg(r.application_name
                                                   ORDER BY r.application_name),
                                '[]'::pg_catalog.json)
                FROM pg_catalog.pg_stat_replication r
                JOIN pg_catalog.pg_stat_activity a ON a.pid OPERATOR(pg_catalog.=) r.pid
                WHERE r.state OPERATOR(pg_catalog.=) 'streaming' AND a.datname IS NULL
                  AND NOT r.application_name OPERATOR(pg_catalog.=) ANY
                      ('{pg_basebackup,pg_receivewal}'::pg_catalog.text[])))
"""

#: Dump attempts on a standby: replay may cancel the dump's snapshot or locks ("conflict
#: with recovery"); a new attempt takes a new snapshot.
STANDBY_ATTEMPTS = 3


@dataclass(frozen=True)
class Plan:
    """What this run does: dump here (``source`` says from what) or leave it (``note``)."""

    dump: bool
    source: str  # "primary", "standby" or "primary (fallback: no standby streams)"
    note: str = ""


def plan(role: dict, cluster: bool, max_replay_gap: int | None = None) -> Plan:
    """The run's plan from :data:`ROLE_SQL`'s answer (pure); ``max_replay_gap`` in bytes
    (None: no limit)."""
    standby = bool(role.get("in_recovery"))
    if not cluster:
        return Plan(True, "standby" if standby else "primary")
    if standby:
        receiver = role.get("receiver")
        gap = role.get("replay_gap")
        limited = receiver == "streaming" and max_replay_gap is not None and gap is not None
        if limited and float(gap) > max_replay_gap:
            note = (
                f"this standby has {int(float(gap))} bytes of WAL received but not yet "
                f"replayed (limit {max_replay_gap}): its dump would hold old data; a "
                "standby within the limit dumps, or the primary"
            )
            return Plan(False, "standby", note)
        if receiver == "streaming":
            return Plan(True, "standby")
        why = f"WAL receiver {receiver}" if receiver else "no WAL receiver"
        note = f"this standby does not stream ({why}); a streaming standby dumps, or the primary"
        return Plan(False, "standby", note)
    streaming = [str(name) for name in role.get("streaming") or []]
    if streaming:
        note = f"the primary leaves the dump to its streaming standby(s): {', '.join(streaming)}"
        return Plan(False, "primary", note)
    return Plan(True, "primary (fallback: no standby streams)")


def read_role(docker: Docker) -> dict:
    """:data:`ROLE_SQL` in the container's ``postgres`` database."""
    out = docker.psql("postgres", ROLE_SQL, timeout=60)
    try:
        return json.loads(out)
    except ValueError:
        raise BackupError(f"unexpected answer to the role query: {out[:200]!r}") from None


def recovery_conflict(message: str) -> bool:
    """Whether a failed dump was cancelled by WAL replay on a standby (worth a new try)."""
    return "conflict with recovery" in message


def require_primary(docker: Docker, what: str) -> None:
    """Stop ``what`` (restore, drill) on a standby before it creates anything."""
    if read_role(docker).get("in_recovery"):
        raise BackupError(
            f"{what} needs a writable server and {docker.container} is a standby (read-only): "
            "run it on the cluster's primary host (make status names it), with the dump and "
            "its .manifest.json copied into that host's backup directory"
        )
