"""``python -m pgsteady remove-member HOST [--gone]`` (``make remove-member HOST= [GONE=1]``):
:mod:`pgsteady.cluster.removal` from the control machine.

It needs ``--inventory`` (the host must still be listed): the cluster is validated from it,
the remaining members' REST APIs are reached through ssh forwards
(:mod:`pgsteady.cluster.tunnels`), the leaving host's stack is stopped over ssh, and each
remaining member's Postgres is asked over ssh (inside its container, as ``postgres``)
whether it still has the leaving member's replication slot. ``--gone`` contacts the host
not at all. ``--access`` as for ``make switchover`` (docs/operations.md).

The removal holds the cluster's roll lock (:mod:`pgsteady.cluster.roll_lock`, review R10
L2) from before its first change to its end: a rolling restart or upgrade cannot start
meanwhile, and a removal started during one is refused naming its holder. The lock is
taken through the first remaining member that answers (inside its Postgres container,
with the member's own etcd access, as a roll takes it), renewed while the removal waits,
and released at the end; a removal that dies leaves it for at most one lease.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime

from pgsteady.cluster import roll_driver, rolling
from pgsteady.cluster.cli import access_from_dir
from pgsteady.cluster.inventory import cluster_of
from pgsteady.cluster.operations import DEFAULT_TIMEOUT_S, OperationError, RestApi
from pgsteady.cluster.removal import Removal, plan, remove
from pgsteady.cluster.roll_lock import TTL_S, Holder
from pgsteady.cluster.topology import Cluster, ClusterError
from pgsteady.cluster.tunnels import (
    ClusterMember,
    cluster_members,
    default_access_dir,
    forwarded,
)
from pgsteady.inventory import InventoryError, load_inventory
from pgsteady.postgres.session import superuser_psql
from pgsteady.settings import Settings, defaults

#: one lock call over ssh (the script itself tries each etcd host with 5 s timeouts)
LOCK_CALL_TIMEOUT_S = 60.0
#: The stack's stop is one ssh call during which the roll lock is not renewed (R11 L4).
#: It may start up to roll_driver.KEEPALIVE_S after the last renewal, which reached etcd
#: up to one lock call before it returned, and the renewal after it needs one lock call
#: again: all of that stays inside the lease's TTL_S, with a minute to spare (660 s).
STOP_TIMEOUT_S = TTL_S - roll_driver.KEEPALIVE_S - 2 * LOCK_CALL_TIMEOUT_S - 60.0

#: ``run(member, shell command) -> (ok, stdout, stderr)`` on that member's host.
RunOn = Callable[[ClusterMember, str], tuple[bool, str, str]]


def add_remove_member_parser(subparsers: argparse._SubParsersAction) -> None:
    """Declare ``pgsteady remove-member``."""
    p = subparsers.add_parser(
        "remove-member",
        help="take a member out of its cluster for good (then delete it from the inventory)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.set_defaults(func=cmd_remove_member)
    p.add_argument("host", help="the member to remove (still listed in the inventory)")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--inventory", help="the inventory that still lists the host")
    where.add_argument("--member", action="append", help=argparse.SUPPRESS)
    p.add_argument("--cluster", help="which cluster (default: the only one)")
    p.add_argument("--access", help="directory with ca.crt, client.crt/.key, rest-password")
    p.add_argument("--max-lag", help=argparse.SUPPRESS)  # make's CLUSTER_OP passes it
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds to wait")
    p.add_argument("--source", help="bind to this (allowlisted) address; default: any")
    p.add_argument("--gone", action="store_true", help="the host is dead: do not contact it")


def _settings(m: ClusterMember) -> Settings:
    data = {k: v for k, v in m.host.data.items() if k in Settings.model_fields}
    try:
        return Settings(**data)
    except ValueError as exc:
        raise OperationError(f"{m.name}: its settings do not validate: {exc}") from None


def _ssh(m: ClusterMember, command: str, timeout: float) -> subprocess.CompletedProcess[str]:
    argv = m.host.shell_argv(command)
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise OperationError(f"{m.name}: no answer over ssh in {timeout:g} s") from None


def stop_for_good(m: ClusterMember) -> None:
    """``pgsteady-ctl down`` (the watchdog leaves a stack stopped on purpose alone), then
    restart policy ``no`` on the stack's containers, read back: a reboot or a Docker
    restart does not bring the member back with its stale data. Volumes are kept."""
    s = _settings(m)
    project = shlex.quote(f"label=com.docker.compose.project={s.compose_project}")
    command = "\n".join([
        f"{shlex.quote(s.layout.bin + '/pgsteady-ctl')} down || exit 1",
        f"ids=$(docker ps -aq --filter {project}) || exit 1",
        '[ -n "$ids" ] || exit 0',
        "docker update --restart=no $ids >/dev/null || exit 1",
        "out=$(docker inspect -f '{{.Name}}={{.HostConfig.RestartPolicy.Name}}' $ids) || exit 1",
        "set -- $out",
        'for c in "$@"; do case $c in *=no) ;; *) echo "restart policy is not no: $c" >&2; '
        "exit 1 ;; esac; done",
    ])  # fmt: skip
    out = _ssh(m, command, STOP_TIMEOUT_S)
    if out.returncode != 0:
        raise OperationError(
            f"{m.name}: stopping its stack failed ({out.stderr.strip()[-300:]}); if the host "
            "is dead, run again with GONE=1"
        )


def _run_on(m: ClusterMember, command: str) -> tuple[bool, str, str]:
    try:
        out = _ssh(m, command, LOCK_CALL_TIMEOUT_S)
    except OperationError as exc:
        return False, "", str(exc)
    return out.returncode == 0, out.stdout, out.stderr


@contextlib.contextmanager
def roll_lock_held(
    members: Sequence[ClusterMember], cluster: Cluster, operation: str, run: RunOn = _run_on
) -> Iterator[Callable[[], None]]:
    """Hold the roll lock for ``operation``, taken through the first of ``members`` that
    answers; yields the keepalive (renews the lease every roll_driver.KEEPALIVE_S, and
    stops the operation when the lock is no longer ours). OperationError naming the
    holder when another operation holds it, or when no member can take it."""
    since = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    holder = Holder(f"{socket.gethostname()} pid {os.getpid()}", operation, since)
    errors = []
    for m in members:
        seed = roll_driver.Seed(
            lambda command, m=m: run(m, command), _settings(m).container_name, cluster, m.name
        )
        try:
            lease = roll_driver.acquire(seed, holder)
        except rolling.RollRefused as exc:
            raise OperationError(f"{exc}; nothing was changed (make status shows it)") from None
        except OperationError as exc:
            errors.append(f"{m.name}: {exc}")
            continue
        try:
            yield seed.keepalive
        finally:
            roll_driver.release(seed, lease)
        return
    raise OperationError(
        f"the roll lock could not be taken on any member ({'; '.join(errors)}); nothing was changed"
    )


def holders(members: list[ClusterMember], r: Removal) -> list[str]:
    """The members whose Postgres still has ``r``'s replication slot (or cannot say)."""
    sql = (
        "SELECT pg_catalog.count(*) FROM pg_catalog.pg_replication_slots "
        f"WHERE slot_name = '{r.slot}'"
    )
    out: list[str] = []
    for m in members:
        command = superuser_psql(_settings(m).container_name, sql, tuples_only=True)
        proc = _ssh(m, command, 60)
        if proc.returncode != 0 or proc.stdout.strip() != "0":
            out.append(m.name if proc.returncode == 0 else f"{m.name} (unreadable)")
    return out


def run(args: argparse.Namespace) -> str:
    if args.member:
        raise OperationError("remove-member needs --inventory (INVENTORY=), not --member")
    try:
        hosts = load_inventory(args.inventory)
    except InventoryError as exc:
        raise OperationError(str(exc)) from None
    members = cluster_members(hosts, args.cluster)
    name = str(members[0].host.data["postgres_cluster_name"])
    try:
        cluster = cluster_of(name, [(h.name, h.data) for h in hosts], defaults())
    except ClusterError as exc:
        raise OperationError(str(exc)) from None
    removal = plan(cluster, args.host)
    leaving = next(m for m in members if m.name == removal.host)
    staying = [m for m in members if m.name != removal.host]
    access = access_from_dir(args.access or default_access_dir(args.inventory, hosts), args.source)
    stop = None if args.gone else (lambda: stop_for_good(leaving))
    # a removal inside a roll would break the roll's order, and a roll inside a removal
    # would restart members its slot clean-up and checks rely on
    with (
        roll_lock_held(staying, cluster, f"remove-member {removal.host}") as keepalive,
        forwarded(staying) as urls,
    ):
        api = RestApi(urls, access)

        def slots() -> list[str]:
            return holders(staying, removal)

        def say(text: str) -> None:
            print(f"pgsteady remove-member: {text}", file=sys.stderr, flush=True)

        return remove(api, removal, stop, slots, args.timeout, keepalive, say)


def cmd_remove_member(args: argparse.Namespace) -> int:
    """Run ``pgsteady remove-member``."""
    try:
        result = run(args)
    except OperationError as exc:
        print(f"pgsteady remove-member: {exc}", file=sys.stderr)
        return 1
    print(result)
    return 0
