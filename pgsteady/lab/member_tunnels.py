"""SSH forwards to each lab member's own Postgres port, for the split-brain probe.

A cluster member's pg_hba admits the application role only from the members' addresses
(HAProxy on each host dials from there), so a probe on the machine running the lab
reaches member X through ``ssh -N -L 127.0.0.1:<port>:<X>:<member port> root@X``: sshd
on X dials X's own address, which the rules admit. The session inside is still TLS,
verified against X's address (``host`` = X, ``hostaddr`` = 127.0.0.1), with the role's
password. A forward whose host went away (powered off, cut off) ends after a few missed
keep-alives; :meth:`MemberTunnels.port` starts it again on the same local port. Every
ssh process is started here and ended by its PID in :meth:`MemberTunnels.close`.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from dataclasses import dataclass, field

from pgsteady.cluster.tunnels import end


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class MemberTunnels:
    """One forward per member address, on a local port of its own."""

    key: str
    known_hosts: str
    member_port: int
    ports: dict[str, int] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def argv(self, address: str, port: int) -> list[str]:
        return [
            "ssh", "-i", self.key, "-o", "BatchMode=yes", "-o", "ConnectTimeout=5",
            "-o", f"UserKnownHostsFile={self.known_hosts}", "-o", "StrictHostKeyChecking=yes",
            "-o", "ExitOnForwardFailure=yes", "-o", "ServerAliveInterval=2",
            "-o", "ServerAliveCountMax=3", "-N",
            "-L", f"127.0.0.1:{port}:{address}:{self.member_port}", f"root@{address}",
        ]  # fmt: skip

    def port(self, address: str, wait: float = 15.0) -> int:
        """The local port forwarded to ``address``'s member port, started when none runs
        (waits up to ``wait`` seconds for it to listen; a host that is down keeps the
        port unanswered, which the probe counts as a failed commit)."""
        port = self.ports.setdefault(address, _free_port())
        proc = self.procs.get(address)
        if proc is not None and proc.poll() is None:
            return port
        self.procs[address] = proc = subprocess.Popen(
            self.argv(address, port),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + wait
        while proc.poll() is None and time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                return port
            time.sleep(0.2)
        return port

    def restart(self, address: str) -> None:
        """End ``address``'s forward (a repaired host's old session may hang) and start it."""
        self._end(address)
        self.port(address)

    def close(self) -> None:
        for address in list(self.procs):
            self._end(address)

    def _end(self, address: str) -> None:
        proc = self.procs.pop(address, None)
        if proc is not None:
            end(proc)
