"""Reach a cluster's REST APIs from the control machine, as the inventory describes them.

Patroni's REST API listens on each member's private address and admits state changes
only from the members (127.0.0.1 too on real hosts). :func:`forwarded` opens one
``ssh -N -L <socket>:<member address>:<rest port>`` per member with the inventory's ssh
options: sshd on the member dials its own address, which the allowlist admits. The
forward's local end is a Unix socket in a fresh 0700 directory, not a loopback TCP port
that any local user could use while it is open, and the client checks the member's
certificate against the member's address (its SAN), not whatever answers. A member
reached as ``@local`` is dialled directly. Every ssh process is started here and ended by
its PID when the block exits, and the directory is removed.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from pgsteady.cluster.operations import Endpoint, OperationError
from pgsteady.inventory import InventoryHost

DEFAULT_REST_PORT = 8008
FORWARD_WAIT_S = 15.0


@dataclass(frozen=True)
class ClusterMember:
    """One member's inventory host, the private address and the REST API's port."""

    host: InventoryHost
    address: str
    rest_port: int

    @property
    def name(self) -> str:
        return self.host.name


def cluster_members(hosts: Sequence[InventoryHost], cluster: str | None) -> list[ClusterMember]:
    """The members of ``cluster`` (the only one when None) in inventory order."""
    names = sorted(
        {str(h.data["postgres_cluster_name"]) for h in hosts if h.data.get("postgres_cluster_name")}
    )
    if not names:
        raise OperationError("the inventory has no host with postgres_cluster_name")
    if cluster is None and len(names) > 1:
        raise OperationError(f"the inventory has clusters {', '.join(names)}: name one (CLUSTER=)")
    wanted = cluster or names[0]
    if wanted not in names:
        raise OperationError(
            f"cluster {wanted!r} is not in the inventory (it has {', '.join(names)})"
        )
    return [
        ClusterMember(
            h,
            str(h.data.get("postgres_cluster_address") or h.ssh_hostname),
            int(h.data.get("patroni_rest_port") or DEFAULT_REST_PORT),
        )
        for h in hosts
        if h.data.get("postgres_cluster_name") == wanted
    ]


def default_access_dir(inventory: str | Path, hosts: Sequence[InventoryHost]) -> Path:
    """``<the inventory's CA directory>/cluster-access`` (beside the CA, as tasks/tls.py
    places it: postgres_tls_ca_dir, else ``.pgsteady/<inventory>`` next to the file)."""
    inv = Path(inventory).resolve()
    ca_dirs = {h.data.get("postgres_tls_ca_dir") for h in hosts} - {None}
    base = Path(str(ca_dirs.pop())) if len(ca_dirs) == 1 else inv.parent / ".pgsteady" / inv.stem
    return base / "cluster-access"


def member_url(member: ClusterMember) -> str:
    """``https://<member address>:<rest port>``: the host is the name its certificate names."""
    dest = f"[{member.address}]" if ":" in member.address else member.address
    return f"https://{dest}:{member.rest_port}"


def forward_argv(member: ClusterMember, local_socket: str) -> list[str]:
    """The ssh command that forwards the Unix socket ``local_socket`` to the member's REST
    API (the socket made 0600 by ssh's StreamLocalBindMask, in a 0700 directory)."""
    prefix = member.host.command_prefix()
    if prefix[-2:] == ["sudo", "-n"]:
        prefix = prefix[:-2]
    target = prefix[-1]
    dest = f"[{member.address}]" if ":" in member.address else member.address
    spec = f"{local_socket}:{dest}:{member.rest_port}"
    options = ["-o", "ExitOnForwardFailure=yes", "-o", "StreamLocalBindMask=0177"]
    return [*prefix[:-2], "-N", *options, "-L", spec, "--", target]


def _wait_listening(path: str, proc: subprocess.Popen[bytes], name: str) -> None:
    deadline = time.monotonic() + FORWARD_WAIT_S
    while True:
        if proc.poll() is not None:
            err = (proc.stderr.read() if proc.stderr else b"").decode(errors="replace").strip()
            raise OperationError(f"{name}: the ssh port forward ended: {err or proc.returncode}")
        with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(1)
            sock.connect(path)
            return
        if time.monotonic() > deadline:
            raise OperationError(
                f"{name}: the ssh port forward did not open in {FORWARD_WAIT_S:g} s"
            )
        time.sleep(0.2)


def end(proc: subprocess.Popen[bytes]) -> None:
    """End an ssh forward this process started: SIGTERM, SIGKILL after 10 s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@contextlib.contextmanager
def forwarded(members: Sequence[ClusterMember]) -> Iterator[dict[str, Endpoint]]:
    """Member name -> where its REST API answers from here, for the block's duration."""
    procs: list[subprocess.Popen[bytes]] = []
    urls: dict[str, Endpoint] = {}
    # mkdtemp: mode 0700, owned by this user; socket names short (sun_path is 108 bytes)
    sockets = tempfile.TemporaryDirectory(prefix="pgsteady-rest-")
    try:
        for i, m in enumerate(members):
            if m.host.is_local:
                urls[m.name] = Endpoint(member_url(m))
                continue
            path = f"{sockets.name}/{i}.sock"
            proc = subprocess.Popen(
                forward_argv(m, path),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            procs.append(proc)
            _wait_listening(path, proc, m.name)
            urls[m.name] = Endpoint(member_url(m), path)
        yield urls
    finally:
        for proc in procs:
            end(proc)
            if proc.stderr:
                proc.stderr.close()
        sockets.cleanup()
