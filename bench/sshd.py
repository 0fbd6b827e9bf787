"""A private sshd on 127.0.0.1 so one pyinfra inventory can hold several hosts.

Only for the converge benchmark: every "host" is this machine reached over SSH as
root with a key generated for the run. The daemon runs in the foreground as a child
of the bench and is stopped by its PID; its files live in the bench's own directory.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

SSHD = "/usr/sbin/sshd"
SFTP = "/usr/lib/openssh/sftp-server"
PRIVSEP = Path("/run/sshd")


def available() -> bool:
    return Path(SSHD).exists() and Path(SFTP).exists() and shutil.which("ssh-keygen") is not None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalSshd:
    """``with LocalSshd(dir) as sshd: sshd.host_data()`` → pyinfra SSH connection data."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.port = _free_port()
        self.key = directory / "client_key"
        self.proc: subprocess.Popen | None = None
        self._made_privsep = False
        self._log: Any = None

    def _config(self) -> Path:
        d = self.dir
        lines = [
            f"Port {self.port}",
            "ListenAddress 127.0.0.1",
            f"HostKey {d / 'host_key'}",
            f"PidFile {d / 'sshd.pid'}",
            f"AuthorizedKeysFile {d / 'authorized_keys'}",
            "PermitRootLogin prohibit-password",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "StrictModes no",
            "MaxStartups 100",
            "MaxSessions 100",
            f"Subsystem sftp {SFTP}",
        ]
        path = d / "sshd_config"
        path.write_text("\n".join(lines) + "\n")
        return path

    def __enter__(self) -> LocalSshd:
        self.dir.mkdir(parents=True, exist_ok=True)
        for name in ("host_key", "client_key"):
            subprocess.run(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.dir / name)],
                check=True,
                capture_output=True,
            )
        (self.dir / "authorized_keys").write_text((self.dir / "client_key.pub").read_text())
        if not PRIVSEP.exists():
            PRIVSEP.mkdir(mode=0o755)
            self._made_privsep = True
        config = self._config()
        subprocess.run([SSHD, "-t", "-f", str(config)], check=True, capture_output=True)
        self._log = (self.dir / "sshd.log").open("w")
        self.proc = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(config)], stdout=subprocess.DEVNULL, stderr=self._log
        )
        self._wait_listening()
        return self

    def _wait_listening(self, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"sshd did not listen on 127.0.0.1:{self.port}")

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._log is not None:
            self._log.close()
        if self._made_privsep:
            with contextlib.suppress(OSError):
                PRIVSEP.rmdir()

    def host_data(self) -> dict[str, Any]:
        """pyinfra connection data for a host reached through this daemon."""
        return {
            "ssh_hostname": "127.0.0.1",
            "ssh_port": self.port,
            "ssh_user": "root",
            "ssh_key": str(self.key),
            "ssh_known_hosts_file": "/dev/null",
            "ssh_strict_host_key_checking": "no",
        }
