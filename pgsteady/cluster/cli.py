"""``python -m pgsteady switchover`` and ``python -m pgsteady reinit`` (``make switchover
[TO=host]``, ``make reinit HOST=...``): the operations of :mod:`pgsteady.cluster.operations`
from the control machine.

``--inventory FILE`` finds the cluster's members (``postgres_cluster_name``; address
``postgres_cluster_address`` else ``ssh_hostname``; ``patroni_rest_port``) and reaches each
REST API through an ssh port forward opened for the command and closed after it
(:mod:`pgsteady.cluster.tunnels`: the API listens on the private address and admits state
changes only from the members; sshd on the member dials from the member's own address).
``--member NAME=URL`` (repeated) names the APIs yourself instead.

With ``--inventory``, both refuse to start while a rolling change holds the cluster's
roll lock (:mod:`pgsteady.cluster.roll_lock`, read over ssh in a member's container),
naming the holder and changing nothing; ``--member`` has no ssh to read it with.

``--access DIR`` holds the files for the REST API's gates: ``ca.crt`` (the inventory's CA),
``client.crt`` + ``client.key`` (a client certificate that CA issued) and ``rest-password``
(Patroni's REST password). The key and the password must be 0600 (or stricter) and owned
by the user running the command; they are read, never printed.
"""

from __future__ import annotations

import argparse
import os
import stat
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from pgsteady.cluster.operations import (
    DEFAULT_TIMEOUT_S,
    Endpoint,
    OperationError,
    RestAccess,
    RestApi,
    reinit,
    switchover,
)
from pgsteady.cluster.roll_lock import Holder, show_command
from pgsteady.cluster.tunnels import (
    ClusterMember,
    cluster_members,
    default_access_dir,
    forwarded,
)
from pgsteady.inventory import InventoryError, load_inventory
from pgsteady.settings import defaults
from pgsteady.units import parse_size

ACCESS_FILES = ("ca.crt", "client.crt", "client.key", "rest-password")
SECRET_FILES = ("client.key", "rest-password")
DEFAULT_MAX_LAG = "16MB"  # postgres_replica_max_lag's default
#: ``run(argv) -> (exit status, stdout, stderr)``: a command on a member's host.
RunArgv = Callable[[list[str]], tuple[int, str, str]]
LOCK_READ_TIMEOUT_S = 60.0


def access_from_dir(directory: str | Path, source: str | None = None) -> RestAccess:
    """The access files in ``directory``, checked; raises OperationError naming the file."""
    d = Path(directory)
    for name in ACCESS_FILES:
        path = d / name
        if not path.is_file():
            raise OperationError(f"--access {d}: {name} is missing (see docs/operations.md)")
        st = path.stat()
        if name in SECRET_FILES and (st.st_mode & 0o077 or st.st_uid != os.geteuid()):
            raise OperationError(
                f"--access {d}: {name} is mode {stat.S_IMODE(st.st_mode):04o} owned by uid "
                f"{st.st_uid}; accepted: 0600 (or stricter), owned by you (chmod 600 {path})"
            )
    return RestAccess(
        ca_file=str(d / "ca.crt"),
        cert_file=str(d / "client.crt"),
        key_file=str(d / "client.key"),
        password_file=str(d / "rest-password"),
        source_address=source,
    )


def _member(text: str) -> tuple[str, str]:
    name, sep, url = text.partition("=")
    if not sep or not name or not url.startswith("https://"):
        raise argparse.ArgumentTypeError(
            f"invalid member {text!r}: expected NAME=https://ADDRESS:PORT (the REST API)"
        )
    return name, url.rstrip("/")


def _lag(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _parser(
    subparsers: argparse._SubParsersAction, name: str, summary: str, func: object
) -> argparse.ArgumentParser:
    """A subcommand with the options both operations take."""
    p = subparsers.add_parser(
        name,
        help=summary,
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.set_defaults(func=func)
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument(
        "--inventory", help="reach the inventory's cluster members through ssh port forwards"
    )
    where.add_argument(
        "--member", type=_member, action="append", metavar="NAME=URL",
        help="a member's REST API base URL (repeat for each member)",
    )  # fmt: skip
    p.add_argument("--cluster", help="with --inventory: which cluster (default: the only one)")
    p.add_argument(
        "--access",
        help="directory with ca.crt, client.crt/.key, rest-password "
        "(default with --inventory: <the inventory's CA directory>/cluster-access)",
    )
    p.add_argument("--max-lag", type=_lag, default=DEFAULT_MAX_LAG, help="postgres_replica_max_lag")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds to wait")
    p.add_argument("--source", help="bind to this (allowlisted) address; default: any")
    return p


def add_switchover_parser(subparsers: argparse._SubParsersAction) -> None:
    """Declare ``pgsteady switchover``."""
    summary = "move the cluster's leadership to a healthy replica and wait until done"
    p = _parser(subparsers, "switchover", summary, cmd_switchover)
    p.add_argument("--to", help="the member to lead (default: a fit replica Patroni picks)")


def add_reinit_parser(subparsers: argparse._SubParsersAction) -> None:
    """Declare ``pgsteady reinit``."""
    summary = "wipe one replica and clone it again from the leader, and wait until done"
    p = _parser(subparsers, "reinit", summary, cmd_reinit)
    p.add_argument("host", help="the replica to rebuild (never the leader)")


def _run_argv(argv: list[str]) -> tuple[int, str, str]:
    try:
        proc = subprocess.run(
            argv, capture_output=True, text=True, timeout=LOCK_READ_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:
        return 124, "", f"no answer in {LOCK_READ_TIMEOUT_S:g} s"
    return proc.returncode, proc.stdout, proc.stderr


def roll_holder(members: Sequence[ClusterMember], run: RunArgv = _run_argv) -> Holder | None:
    """Who holds the rolling-change lock (:mod:`pgsteady.cluster.roll_lock`), None when
    free: read on the first member that answers, inside its Postgres container with the
    member's own etcd access (as ``make status`` reads it). OperationError when no member
    answers: the operation cannot know that no roll runs."""
    errors = []
    for m in members:
        project = str(m.host.data.get("compose_project") or defaults()["compose_project"])
        command = show_command("docker", f"{project}-postgres")
        argv = m.host.shell_argv(command)
        code, out, err = run(argv)
        if code == 0:
            return Holder.parse(out)
        last = (err.strip().splitlines() or [f"exit status {code}"])[-1]
        errors.append(f"{m.name}: {last[-200:]}")
    raise OperationError(
        f"the rolling-change lock could not be read on any member ({'; '.join(errors)}); "
        "nothing was changed"
    )


def refuse_while_rolling(members: Sequence[ClusterMember], run: RunArgv = _run_argv) -> None:
    """OperationError naming the holder while a rolling change holds the lock: a
    switchover or a reinit in the middle of a roll would break the roll's order."""
    holder = roll_holder(members, run)
    if holder is not None:
        cluster = members[0].host.data.get("postgres_cluster_name")
        raise OperationError(
            f"a rolling operation is in progress in cluster {cluster} ({holder.describe()}); "
            "nothing was changed. Try again after it ends (make status shows it)"
        )


def _operate(
    args: argparse.Namespace, action: str, urls: Mapping[str, str | Endpoint], access: str
) -> str:
    api = RestApi(urls, access_from_dir(access, args.source))
    if action == "switchover":
        return switchover(api, args.max_lag, args.to, args.timeout)
    return reinit(api, args.host, args.max_lag, args.timeout)


def _run(args: argparse.Namespace, action: str) -> int:
    try:
        if args.member:
            if not args.access:
                raise OperationError("--access DIR is needed with --member")
            result = _operate(args, action, dict(args.member), args.access)
        else:
            try:
                hosts = load_inventory(args.inventory)
            except InventoryError as exc:
                raise OperationError(str(exc)) from None
            members = cluster_members(hosts, args.cluster)
            refuse_while_rolling(members)
            access = args.access or str(default_access_dir(args.inventory, hosts))
            with forwarded(members) as urls:
                result = _operate(args, action, urls, access)
    except OperationError as exc:
        print(f"pgsteady {action}: {exc}", file=sys.stderr)
        return 1
    print(result)
    return 0


def cmd_switchover(args: argparse.Namespace) -> int:
    """Run ``pgsteady switchover``."""
    return _run(args, "switchover")


def cmd_reinit(args: argparse.Namespace) -> int:
    """Run ``pgsteady reinit``."""
    return _run(args, "reinit")
