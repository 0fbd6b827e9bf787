"""The cluster's inputs: members, etcd hosts, Patroni timings, durability and ports.

:func:`cluster_from_mapping` validates a plain mapping (keys named as the future settings
will be) into a frozen :class:`Cluster`; every error names the key, the bad value and what
is accepted, and all errors are reported at once in a :class:`ClusterError`.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pgsteady.units import ACCEPTED as SIZE_ACCEPTED
from pgsteady.units import parse_size

NAME_RE = re.compile(r"[a-z][a-z0-9-]{0,30}")
MEMBER_RE = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
#: Patroni's own floors (enforced by Patroni >= 3.2 only; 3.0.2 accepts anything).
MIN_TTL, MIN_LOOP_WAIT, MIN_RETRY_TIMEOUT = 20, 1, 3
#: etcd's users. etcd's gRPC API takes a client certificate's Common Name as the user
#: name, and a member's certificate has the member's name as CN: a member named like a
#: user would be that user without its password.
ETCD_USERS = ("root", "patroni")
#: The most WAL an asynchronous failover may drop (``postgres_maximum_lag_on_failover``):
#: one WAL segment. Beyond it a failover may silently discard more than the archive's own
#: loss window (a segment not yet archived), and Patroni compares lag only once per
#: loop_wait, so the bound must stay small next to a loop_wait of writes.
MAX_FAILOVER_LAG = 16 * 1024**2

DEFAULTS: dict[str, Any] = {
    "patroni_ttl": 24,
    "patroni_loop_wait": 4,
    "patroni_retry_timeout": 10,
    "postgres_maximum_lag_on_failover": "1MB",
    "postgres_replica_max_lag": "16MB",
    "postgres_synchronous_mode": True,
    "postgres_synchronous_mode_strict": False,
    "postgres_accept_failover_commit_loss": False,
    "postgres_port": 5432,
    "postgres_replica_port": 5433,
    "postgres_member_port": 15432,
    "patroni_rest_port": 8008,
    "etcd_client_port": 2379,
    "etcd_peer_port": 2380,
    "etcd_heartbeat_interval_ms": 100,
    "etcd_election_timeout_ms": 1000,
    "haproxy_check_interval_ms": 1000,
}
PORT_KEYS = (
    "postgres_port",
    "postgres_replica_port",
    "postgres_member_port",
    "patroni_rest_port",
    "etcd_client_port",
    "etcd_peer_port",
)


class ClusterError(ValueError):
    """Invalid cluster inputs; ``errors`` holds one message per problem."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("invalid cluster:\n  " + "\n  ".join(errors))
        self.errors = errors


@dataclass(frozen=True)
class Member:
    """One cluster host: its inventory name and the private address peers dial."""

    name: str
    address: str


@dataclass(frozen=True)
class Cluster:
    """A validated cluster (see :func:`cluster_from_mapping`)."""

    name: str
    members: tuple[Member, ...]
    ttl: int
    loop_wait: int
    retry_timeout: int
    maximum_lag_on_failover: int
    replica_max_lag: int
    synchronous_mode: bool
    synchronous_mode_strict: bool
    postgres_port: int
    replica_port: int
    member_port: int
    rest_port: int
    etcd_client_port: int
    etcd_peer_port: int
    etcd_heartbeat_ms: int
    etcd_election_ms: int
    check_interval_ms: int

    @property
    def etcd_members(self) -> tuple[Member, ...]:
        """The first 3 members in inventory order, the first 5 from 7 members up."""
        return self.members[: etcd_count(len(self.members))]

    @property
    def namespace(self) -> str:
        """Patroni's namespace; its keys live under ``/service/<name>/``."""
        return "/service/"

    @property
    def prefix(self) -> str:
        """The etcd key prefix of this cluster (what Patroni's etcd role may touch)."""
        return f"{self.namespace}{self.name}/"

    def member(self, name: str) -> Member:
        for m in self.members:
            if m.name == name:
                return m
        raise KeyError(f"{name!r} is not a member of cluster {self.name!r}")


def etcd_count(members: int) -> int:
    """How many members run etcd: 3, or 5 from 7 hosts up."""
    return 5 if members >= 7 else 3


def _int(data: Mapping[str, Any], key: str, low: int, high: int, errors: list[str]) -> int:
    value = data.get(key, DEFAULTS[key])
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        errors.append(f"{key} = {value!r}: expected a whole number from {low} to {high}")
        return low
    return value


def _size(data: Mapping[str, Any], key: str, errors: list[str]) -> int:
    value = data.get(key, DEFAULTS[key])
    try:
        return parse_size(value)
    except ValueError:
        errors.append(f"{key} = {value!r}: expected {SIZE_ACCEPTED}")
        return 0


def _failover_lag(data: Mapping[str, Any], errors: list[str]) -> int:
    key = "postgres_maximum_lag_on_failover"
    lag = _size(data, key, errors)
    if lag > MAX_FAILOVER_LAG:
        errors.append(
            f"{key} = {data[key]!r}: a failover may drop this much acknowledged WAL; "
            "expected at most 16MB (one WAL segment)"
        )
    return lag


def _commit_loss_errors(data: Mapping[str, Any], errors: list[str]) -> None:
    """Asynchronous replication loses acknowledged commits on failover: only by opt-in."""
    raw = data.get("postgres_synchronous_mode", DEFAULTS["postgres_synchronous_mode"])
    accept = _bool(data, "postgres_accept_failover_commit_loss", errors)
    if raw is False and not accept:
        errors.append(
            "postgres_synchronous_mode = False: a failover then loses the commits the old "
            "leader acknowledged but no replica received (up to "
            "postgres_maximum_lag_on_failover plus one loop_wait of writes). Accepted: True, "
            "or False with postgres_accept_failover_commit_loss = True to accept that loss"
        )


def _bool(data: Mapping[str, Any], key: str, errors: list[str]) -> bool:
    value = data.get(key, DEFAULTS[key])
    if not isinstance(value, bool):
        errors.append(f"{key} = {value!r}: expected true or false")
        return False
    return value


def _members(raw: Any, errors: list[str]) -> tuple[Member, ...]:
    if not isinstance(raw, (list, tuple)) or len(raw) < 3:
        errors.append(
            f"members = {raw!r}: expected a list of at least 3 hosts "
            "(each {'name': ..., 'address': ...}); 3 is the smallest etcd quorum"
        )
        return ()
    members: list[Member] = []
    for i, item in enumerate(raw):
        name = item.get("name") if isinstance(item, Mapping) else None
        address = item.get("address") if isinstance(item, Mapping) else None
        if not isinstance(name, str) or not MEMBER_RE.fullmatch(name):
            errors.append(
                f"members[{i}].name = {name!r}: expected a host name of lower-case letters, "
                "digits and '-' (at most 63), not starting or ending with '-'"
            )
        elif name in ETCD_USERS:
            errors.append(
                f"members[{i}].name = {name!r}: the name of an etcd user, which a certificate "
                f"with this Common Name would act as; use any name but {' or '.join(ETCD_USERS)}"
            )
        try:
            ip = ipaddress.ip_address(address)  # type: ignore[arg-type]
        except ValueError:
            errors.append(
                f"members[{i}].address = {address!r}: expected the host's private IP address"
            )
            continue
        if ip.is_unspecified or ip.is_multicast:
            errors.append(
                f"members[{i}].address = {address!r}: a wildcard or multicast address; "
                "expected the host's private IP address"
            )
        members.append(Member(str(name), str(ip)))
    for field in ("name", "address"):
        seen: set[str] = set()
        for i, m in enumerate(members):
            value = getattr(m, field)
            if value in seen:
                errors.append(
                    f"members[{i}].{field} = {value!r}: used by another member; "
                    f"each member needs its own {field}"
                )
            seen.add(value)
    return tuple(members)


#: The keys every member must set alike (the cluster-wide ones).
CLUSTER_KEYS = ("postgres_cluster_name", *DEFAULTS)


def key_errors(data: Mapping[str, Any]) -> list[str]:
    """The problems of one host's cluster keys alone (members are the inventory's)."""
    try:
        cluster_from_mapping(data, with_members=False)
    except ClusterError as exc:
        return exc.errors
    return []


def cluster_from_mapping(data: Mapping[str, Any], with_members: bool = True) -> Cluster:
    """Validate ``data`` into a :class:`Cluster`; raises :class:`ClusterError`.
    ``with_members=False`` checks every other key and leaves ``members`` empty."""
    errors: list[str] = []
    known = {"postgres_cluster_name", "members", *DEFAULTS}
    for key in sorted(set(data) - known):
        errors.append(f"{key}: unknown cluster key; accepted: {', '.join(sorted(known))}")
    name = data.get("postgres_cluster_name")
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        errors.append(
            f"postgres_cluster_name = {name!r}: expected a lower-case letter then up to 30 "
            "lower-case letters, digits or '-'"
        )
    members = _members(data.get("members"), errors) if with_members else ()
    ttl = _int(data, "patroni_ttl", MIN_TTL, 3600, errors)
    loop_wait = _int(data, "patroni_loop_wait", MIN_LOOP_WAIT, 3600, errors)
    retry = _int(data, "patroni_retry_timeout", MIN_RETRY_TIMEOUT, 3600, errors)
    if loop_wait + 2 * retry > ttl:
        errors.append(
            f"patroni_loop_wait = {loop_wait}, patroni_retry_timeout = {retry}: "
            f"loop_wait + 2 * retry_timeout = {loop_wait + 2 * retry} exceeds patroni_ttl = "
            f"{ttl}; a leader could lose its lease while still retrying. Accepted: "
            "loop_wait + 2 * retry_timeout <= ttl"
        )
    ports = {key: _int(data, key, 1, 65535, errors) for key in PORT_KEYS}
    by_port: dict[int, str] = {}
    for key, port in ports.items():
        if port in by_port:
            errors.append(f"{key} = {port}: also {by_port[port]}; every cluster port must differ")
        by_port.setdefault(port, key)
    sync = _bool(data, "postgres_synchronous_mode", errors)
    strict = _bool(data, "postgres_synchronous_mode_strict", errors)
    if strict and not sync:
        errors.append(
            "postgres_synchronous_mode_strict = True: needs postgres_synchronous_mode = True"
        )
    _commit_loss_errors(data, errors)
    heartbeat = _int(data, "etcd_heartbeat_interval_ms", 10, 10000, errors)
    election = _int(data, "etcd_election_timeout_ms", 50, 50000, errors)
    if election < 5 * heartbeat:
        errors.append(
            f"etcd_election_timeout_ms = {election}: below 5 x etcd_heartbeat_interval_ms "
            f"({heartbeat}); etcd advises an election timeout of at least 5 heartbeats"
        )
    cluster = Cluster(
        name=str(name),
        members=members,
        ttl=ttl,
        loop_wait=loop_wait,
        retry_timeout=retry,
        maximum_lag_on_failover=_failover_lag(data, errors),
        replica_max_lag=_size(data, "postgres_replica_max_lag", errors),
        synchronous_mode=sync,
        synchronous_mode_strict=strict,
        postgres_port=ports["postgres_port"],
        replica_port=ports["postgres_replica_port"],
        member_port=ports["postgres_member_port"],
        rest_port=ports["patroni_rest_port"],
        etcd_client_port=ports["etcd_client_port"],
        etcd_peer_port=ports["etcd_peer_port"],
        etcd_heartbeat_ms=heartbeat,
        etcd_election_ms=election,
        check_interval_ms=_int(data, "haproxy_check_interval_ms", 100, 60000, errors),
    )
    if errors:
        raise ClusterError(errors)
    return cluster
