"""``python -m pgsteady switchover`` and ``python -m pgsteady reinit`` (``make switchover
[TO=host]``, ``make reinit HOST=...``): the operations of :mod:`pgsteady.cluster.operations`
from the control machine.

Each member's REST API is named ``--member NAME=URL``. The API listens on the members'
private addresses and admits state changes only from them, so from the control machine
it is reached through an ssh port forward to a member (``ssh -N -L
127.0.0.1:18008:<member address>:8008 <member>``: sshd dials from the member's own address,
which the allowlist admits; the member certificate names 127.0.0.1, so verification holds).

``--access DIR`` holds the files for the REST API's gates: ``ca.crt`` (the inventory's CA),
``client.crt`` + ``client.key`` (a client certificate that CA issued) and ``rest-password``
(Patroni's REST password). The key and the password must be 0600 (or stricter) and owned
by the user running the command; they are read, never printed.
"""

from __future__ import annotations

import argparse
import os
import stat
import sys
from pathlib import Path

from pgsteady.cluster.operations import (
    DEFAULT_TIMEOUT_S,
    OperationError,
    RestAccess,
    RestApi,
    reinit,
    switchover,
)
from pgsteady.units import parse_size

ACCESS_FILES = ("ca.crt", "client.crt", "client.key", "rest-password")
SECRET_FILES = ("client.key", "rest-password")
DEFAULT_MAX_LAG = "16MB"  # postgres_replica_max_lag's default


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


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--member", type=_member, action="append", required=True, metavar="NAME=URL",
        help="a member's REST API base URL (repeat for each member)",
    )  # fmt: skip
    p.add_argument(
        "--access", required=True, help="directory with ca.crt, client.crt/.key, rest-password"
    )
    p.add_argument("--max-lag", type=_lag, default=DEFAULT_MAX_LAG, help="postgres_replica_max_lag")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds to wait")
    p.add_argument("--source", help="bind to this (allowlisted) address; default: any")


def add_switchover_parser(subparsers: argparse._SubParsersAction) -> None:
    """Declare ``pgsteady switchover``."""
    p = subparsers.add_parser(
        "switchover",
        help="move the cluster's leadership to a healthy replica and wait until done",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common(p)
    p.add_argument("--to", help="the member to lead (default: a fit replica Patroni picks)")
    p.set_defaults(func=cmd_switchover)


def add_reinit_parser(subparsers: argparse._SubParsersAction) -> None:
    """Declare ``pgsteady reinit``."""
    p = subparsers.add_parser(
        "reinit",
        help="wipe one replica and clone it again from the leader, and wait until done",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common(p)
    p.add_argument("host", help="the replica to rebuild (never the leader)")
    p.set_defaults(func=cmd_reinit)


def _run(args: argparse.Namespace, action: str) -> int:
    try:
        api = RestApi(dict(args.member), access_from_dir(args.access, args.source))
        if action == "switchover":
            result = switchover(api, args.max_lag, args.to, args.timeout)
        else:
            result = reinit(api, args.host, args.max_lag, args.timeout)
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
