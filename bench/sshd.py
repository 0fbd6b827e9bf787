"""A private sshd on 127.0.0.1 so one pyinfra inventory can hold several hosts.

Only for the converge benchmark: every "host" is this machine reached over SSH as root
with a key generated for the run. It is the e2e tests' own daemon (tests/support/sshd.py),
stopped by its PID when the benchmark ends.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from tests.support.sshd import Sshd


def available() -> bool:
    return Path("/usr/sbin/sshd").exists() and shutil.which("ssh-keygen") is not None


class LocalSshd:
    """``with LocalSshd() as sshd: sshd.host_data()`` → pyinfra SSH connection data."""

    def __init__(self, directory: Path | None = None) -> None:
        del directory  # the daemon keeps its files in a private temporary directory
        self._daemon = Sshd()

    @property
    def port(self) -> int:
        return self._daemon.port

    def __enter__(self) -> LocalSshd:
        self._daemon.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._daemon.stop()

    def host_data(self) -> dict[str, Any]:
        """pyinfra connection data for a host reached through this daemon."""
        return {"ssh_hostname": "127.0.0.1", **self._daemon.host_data()}
