"""A throwaway OpenSSH server on 127.0.0.1 for tests that reach this machine over SSH.

Everything lives in one temp directory: host key, client key, authorized_keys, config and
known_hosts. ``stop()`` ends the server by its PID and removes the directory.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.ports import free_port as _free_port

SSHD = "/usr/sbin/sshd"


def _keygen(path: Path) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)],
        check=True,
        capture_output=True,
    )


@dataclass
class Sshd:
    """``Sshd().start()`` → a root-login-by-key server on ``port``; ``stop()`` ends it."""

    port: int = field(default_factory=_free_port)
    #: Extra environment of every session (``SetEnv``; e.g. a PATH with stand-ins first).
    env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="pgsteady-sshd-"))
        self.host_key = self.dir / "host_ed25519"
        self.client_key = self.dir / "client_ed25519"
        self.known_hosts = self.dir / "known_hosts"
        self.config = self.dir / "sshd_config"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10) -> Sshd:
        os.chmod(self.dir, 0o700)
        _keygen(self.host_key)
        _keygen(self.client_key)
        (self.dir / "authorized_keys").write_text(self.client_key.with_suffix(".pub").read_text())
        host_pub = self.host_key.with_suffix(".pub").read_text().split()
        self.known_hosts.write_text(f"[127.0.0.1]:{self.port} {host_pub[0]} {host_pub[1]}\n")
        self.config.write_text(
            "\n".join(
                [
                    "ListenAddress 127.0.0.1",
                    f"Port {self.port}",
                    f"HostKey {self.host_key}",
                    f"AuthorizedKeysFile {self.dir}/authorized_keys",
                    "PermitRootLogin prohibit-password",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "UsePAM no",
                    "StrictModes no",
                    f"PidFile {self.dir}/sshd.pid",
                    "Subsystem sftp internal-sftp",
                    "LogLevel ERROR",
                    # Debian's bash sources ~/.bashrc for every command sshd runs unless
                    # SHLVL says it is nested; this machine's root .bashrc runs `pyenv
                    # init` (0.2-0.4 s), which would be measured as pgsteady's round trip.
                    # one SetEnv line: sshd takes the first of each keyword
                    " ".join(["SetEnv SHLVL=1", *(f"{k}={v}" for k, v in self.env.items())]),
                    "",
                ]
            )
        )
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # privilege separation dir
        self.proc = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=open(self.dir / "sshd.log", "wb"),  # noqa: SIM115 - closed with the process
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd exited: {(self.dir / 'sshd.log').read_text()}")
            if self.run("true").returncode == 0:
                return self
            time.sleep(0.2)
        raise RuntimeError(f"sshd did not accept a login: {(self.dir / 'sshd.log').read_text()}")

    def ssh_args(self) -> list[str]:
        return [
            "ssh",
            "-p",
            str(self.port),
            "-i",
            str(self.client_key),
            "-o",
            "BatchMode=yes",
            "-o",
            f"UserKnownHostsFile={self.known_hosts}",
            "-o",
            "StrictHostKeyChecking=yes",
            "root@127.0.0.1",
        ]

    def run(self, command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.ssh_args(), command], capture_output=True, text=True, timeout=30
        )

    def host_data(self) -> dict[str, object]:
        """pyinfra connection data for an inventory host ``127.0.0.1``."""
        return {
            "ssh_port": self.port,
            "ssh_user": "root",
            "ssh_key": str(self.client_key),
            "ssh_known_hosts_file": str(self.known_hosts),
            "ssh_strict_host_key_checking": "yes",
        }

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)
