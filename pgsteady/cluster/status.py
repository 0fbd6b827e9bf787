"""A cluster's state as Patroni's REST API reports it, for ``make status`` and ``make verify``.

:func:`parse_cluster` turns ``GET /cluster`` (Patroni 3.0.2 or 4) into a
:class:`ClusterStatus`: each member's name, role, state, timeline, lag in bytes, host and
pending restart, plus the leader, a paused cluster and a scheduled switchover. Patroni 3
says ``master`` where Patroni 4 says ``primary``, and ``leader`` in ``/cluster``: all three
read as ``primary``; ``sync_standby`` reads as a ``replica`` with ``sync`` set.

:func:`fetch_cluster` reads the document over verified HTTPS (``GET /cluster`` needs no
password, but a client certificate: Patroni requires one on every endpoint).
:data:`FETCH_SCRIPT` is the same read as a stand-alone ``python3`` program the monitor runs
on a member.
Pure otherwise: document in, status, text lines and JSON out.
"""

from __future__ import annotations

import json
import ssl
import urllib.request
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from pgsteady.cluster import adopt, roll_lock
from pgsteady.settings import Settings
from pgsteady.units import format_bytes

PRIMARY_ROLES = frozenset({"master", "primary", "leader"})
REPLICA_ROLES = frozenset({"replica", "sync_standby", "quorum_standby"})
TIMEOUT_S = 5.0

#: The member's certificate and key in its Postgres container (patroni.container_paths).
CONTAINER_CLIENT = ("/etc/pgsteady-tls/server.crt", "/etc/pgsteady-tls-key/server.key")
#: ``python3 - URL CAFILE [CERT KEY]``: prints GET URL's body (verified with CAFILE) or
#: fails. Patroni's REST API requires a client certificate on every endpoint (review R8
#: L1): CERT and KEY, by default the member's own (:data:`CONTAINER_CLIENT`).
FETCH_SCRIPT = f"""
import ssl, sys, urllib.request
ctx = ssl.create_default_context(cafile=sys.argv[2])
ctx.load_cert_chain(*(sys.argv[3:5] or {list(CONTAINER_CLIENT)!r}))
with urllib.request.urlopen(sys.argv[1], context=ctx, timeout=5) as r:
    sys.stdout.write(r.read().decode())
"""


#: The monitor's collect script (pgsteady/monitor/collect.py): section ``cluster`` prints
#: ``single`` off clusters, else GET /cluster read inside the member's Postgres container,
#: as the ``postgres`` user Patroni runs as (never root: a network client has no need).
SCRIPT = r"""
cluster_view() {
    [ -n "$CLUSTER_URL" ] || { echo single; return 0; }
    d exec -u postgres "$C" python3 -c "$CLUSTER_FETCH" "$CLUSTER_URL" "$CLUSTER_CA"
}
section cluster cluster_view
roll_view() {
    [ -n "$CLUSTER_URL" ] || return 0
    d exec -u postgres "$C" python3 -c "$ROLL_LOCK" show
}
section cluster_roll roll_view
adopted_view() {
    [ -n "$CLUSTER_URL" ] || return 0
    if [ -f "$APP_DIR/state/$ADOPTED" ]; then echo yes; else echo no; fi
}
section cluster_adopted adopted_view
"""
#: Where the cluster container keeps the CA (pgsteady.cluster.patroni.container_paths).
CONTAINER_CA = "/etc/pgsteady-tls/ca.crt"


def script_values(s: Settings, address: str) -> dict[str, str]:
    """The collect script's variables: empty CLUSTER_URL on a single host. ``address``
    is the host's own (postgres_cluster_address, else its ssh_hostname)."""
    if s.postgres_cluster_name is None:
        return {
            "CLUSTER_URL": "",
            "CLUSTER_FETCH": "",
            "CLUSTER_CA": "",
            "ROLL_LOCK": "",
            "ADOPTED": "",
        }
    host = s.postgres_cluster_address or address
    host = f"[{host}]" if ":" in str(host) else str(host)
    port = s.patroni_rest_port
    return {
        "CLUSTER_URL": f"https://{host}:{port}/cluster",
        "CLUSTER_FETCH": FETCH_SCRIPT,
        "CLUSTER_CA": CONTAINER_CA,
        # the rolling-change lock in etcd, read with the member's own access (roll_lock.py)
        "ROLL_LOCK": roll_lock.script_argv("show")[2],
        "ADOPTED": adopt.ADOPTED,  # the seed's record of a completed adoption
    }


def parse_section(section: Mapping[str, Any]) -> ClusterStatus | None:
    """The ``cluster`` section -> None on a single host, else the status (or its error)."""
    out = str(section.get("out") or "").strip()
    if out == "single" or section.get("rc") is None:  # a single host, or no such section
        return None
    if section.get("rc") != 0 or not out:
        why = str(section.get("err") or "").strip().splitlines()
        reason = why[-1] if why else f"exit code {section.get('rc')}"
        return ClusterStatus(error=f"GET /cluster failed: {reason}")
    try:
        return parse_cluster(json.loads(out))
    except ValueError as exc:
        return ClusterStatus(error=f"GET /cluster returned no JSON: {exc}")


def normalise_role(role: str) -> str:
    """Patroni 3's ``master`` and /cluster's ``leader`` are ``primary``; standbys are
    ``replica``; anything else (``standby_leader``, ...) is kept as Patroni says it."""
    if role in PRIMARY_ROLES:
        return "primary"
    if role in REPLICA_ROLES:
        return "replica"
    return role


@dataclass(frozen=True)
class MemberStatus:
    """One member as ``GET /cluster`` lists it."""

    name: str
    role: str
    state: str
    host: str
    port: int | None
    timeline: int | None
    lag_bytes: int | None
    sync: bool = False
    pending_restart: bool = False
    scheduled_restart: bool = False
    #: Patroni 4's pending_restart_reason: (parameter, running value, DCS value)
    pending_changes: tuple[tuple[str, str, str], ...] = ()

    @property
    def is_primary(self) -> bool:
        return self.role == "primary"


@dataclass
class ClusterStatus:
    """The whole cluster: members, leader and any operation in progress."""

    members: list[MemberStatus] = field(default_factory=list)
    paused: bool = False
    scheduled_switchover: dict[str, Any] | None = None
    error: str | None = None
    #: A rolling change holding the lock (pgsteady.cluster.roll_lock), as one line.
    rolling: str | None = None
    #: An adoption in progress (:func:`parse_adoption`), as one line.
    adoption: str | None = None

    @property
    def leaders(self) -> list[str]:
        return [m.name for m in self.members if m.is_primary]

    @property
    def leader(self) -> str | None:
        """The one primary; None when there is none or more than one."""
        return self.leaders[0] if len(self.leaders) == 1 else None

    def member(self, name: str) -> MemberStatus | None:
        return next((m for m in self.members if m.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        """The ``cluster`` section of ``make status JSON=1``."""
        return {
            "leader": self.leader,
            "paused": self.paused,
            "scheduled_switchover": self.scheduled_switchover,
            "pending_restart": sorted(m.name for m in self.members if m.pending_restart),
            "members": [asdict(m) for m in self.members],
            "rolling": self.rolling,
            "adoption": self.adoption,
            "error": self.error,
        }


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def parse_member(raw: Mapping[str, Any]) -> MemberStatus:
    """One entry of ``/cluster``'s ``members`` (lag is "unknown" while Patroni cannot tell)."""
    role = str(raw.get("role", "unknown"))
    return MemberStatus(
        name=str(raw.get("name", "?")),
        role=normalise_role(role),
        state=str(raw.get("state", "unknown")),
        host=str(raw.get("host", "")),
        port=_int(raw.get("port")),
        timeline=_int(raw.get("timeline")),
        lag_bytes=0 if normalise_role(role) == "primary" else _int(raw.get("lag")),
        sync=role == "sync_standby",
        pending_restart=bool(raw.get("pending_restart")),
        scheduled_restart=bool(raw.get("scheduled_restart")),
        pending_changes=_pending_changes(raw.get("pending_restart_reason")),
    )


def _pending_changes(reason: Any) -> tuple[tuple[str, str, str], ...]:
    if not isinstance(reason, Mapping):
        return ()
    return tuple(
        (str(name), str(v.get("old_value")), str(v.get("new_value")))
        for name, v in sorted(reason.items())
        if isinstance(v, Mapping)
    )


def parse_cluster(doc: Mapping[str, Any]) -> ClusterStatus:
    """``GET /cluster``'s JSON document -> :class:`ClusterStatus`."""
    members = [parse_member(m) for m in doc.get("members") or [] if isinstance(m, Mapping)]
    switchover = doc.get("scheduled_switchover")
    return ClusterStatus(
        members=sorted(members, key=lambda m: m.name),
        paused=bool(doc.get("pause")),
        scheduled_switchover=dict(switchover) if isinstance(switchover, Mapping) else None,
    )


def fetch_cluster(
    api_urls: list[str], ca_file: str, client: tuple[str, str] | None = None
) -> ClusterStatus:
    """``GET /cluster`` from the first member that answers (verified with ``ca_file``),
    presenting ``client`` (certificate, key): the REST API requires one (review R8 L1)."""
    ctx = ssl.create_default_context(cafile=ca_file)
    if client:
        ctx.load_cert_chain(*client)
    errors = []
    for base in api_urls:
        try:
            with urllib.request.urlopen(f"{base}/cluster", context=ctx, timeout=TIMEOUT_S) as r:
                return parse_cluster(json.loads(r.read()))
        except (OSError, ValueError) as exc:
            errors.append(f"{base}: {exc}")
    return ClusterStatus(error="no member answered GET /cluster: " + "; ".join(errors))


def _lag(m: MemberStatus) -> str:
    if m.is_primary:
        return "-"
    if m.lag_bytes is None:
        return "unknown"
    return "0" if m.lag_bytes == 0 else format_bytes(m.lag_bytes)


def render_lines(cs: ClusterStatus) -> list[str]:
    """``make status``'s cluster block: one line per member, then the leader and any
    operation in progress."""
    adoption = [f"adoption in progress: {cs.adoption}"] if cs.adoption else []
    if cs.error:
        return [f"cluster: {cs.error}", *adoption]
    lines = [f"{'member':<12} {'role':<10} {'state':<12} {'TL':>3} {'lag':>9}  host"]
    for m in cs.members:
        flags = " ".join(
            f
            for f, on in (
                ("sync", m.sync),
                ("pending-restart", m.pending_restart),
                ("restart-scheduled", m.scheduled_restart),
            )
            if on
        )
        tl = "-" if m.timeline is None else str(m.timeline)
        lines.append(
            f"{m.name:<12} {m.role:<10} {m.state:<12} {tl:>3} {_lag(m):>9}  {m.host}"
            + (f"  [{flags}]" if flags else "")
        )
    leaders = cs.leaders
    lines.append(
        f"leader: {leaders[0]}"
        if len(leaders) == 1
        else f"leader: NONE ({len(leaders)} primaries: {', '.join(leaders) or '-'})"
    )
    if cs.paused:
        lines.append("maintenance mode: paused (Patroni does not fail over)")
    if cs.scheduled_switchover:
        lines.append(f"scheduled switchover: {json.dumps(cs.scheduled_switchover)}")
    if cs.rolling:
        lines.append(f"rolling change in progress: {cs.rolling}")
    return lines + adoption


def parse_rolling(section: Mapping[str, Any]) -> str | None:
    """The ``cluster_roll`` section -> who holds the rolling-change lock (None: free or
    unreadable; an unreadable lock is no verdict for status, verify reads it itself)."""
    if section.get("rc") != 0:
        return None
    holder = roll_lock.Holder.parse(str(section.get("out") or ""))
    return holder.describe() if holder else None


def parse_adoption(section: Mapping[str, Any], host: str, marked: str) -> str | None:
    """The ``cluster_adopted`` section of ``host`` -> one line while ``host`` is the seed
    make cluster-adopt marked (``marked``, read on the deploy machine) and its record of
    a completed adoption is missing; None otherwise, or when the section did not run."""
    if host != marked or section.get("rc") != 0:
        return None
    if str(section.get("out") or "").strip() != "no":
        return None
    return (
        f"make cluster-adopt marked {host} as the seed; its adoption is not recorded "
        f"(app_dir/state/{adopt.ADOPTED}): the next make deploy adopts its data or "
        "finishes the adoption"
    )
