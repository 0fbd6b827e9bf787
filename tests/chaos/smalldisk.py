"""A stack whose data volume lives on a small filesystem (for disk-full faults)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.support.stack import Stack, docker


class SmallDiskStack(Stack):
    """A stack whose data volume sits on a tmpfs of ``size_mb``.

    The product has no knob for where the data volume lives, and compose v1 refuses a
    pre-created volume whose driver options differ from its own (none). So the test
    creates the volume exactly as compose would (same name and labels, no options) and
    mounts a size-limited tmpfs on its host directory before the deploy: the container
    sees a small filesystem that survives container restarts.
    """

    size_mb: int = 256

    @property
    def volume(self) -> str:
        return f"{self.name}_pgdata"

    @property
    def mountpoint(self) -> Path:
        out = docker("volume", "inspect", "-f", "{{.Mountpoint}}", self.volume).stdout
        return Path(out.strip())

    def prepare(self) -> None:
        docker(
            "volume", "create",
            "--label", f"com.docker.compose.project={self.name}",
            "--label", "com.docker.compose.volume=pgdata",
            "--label", "com.docker.compose.version=1.29.2",
            self.volume,
        )  # fmt: skip
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={self.size_mb}m,mode=0755", "tmpfs",
             str(self.mountpoint)],
            check=True,
        )  # fmt: skip

    def destroy(self) -> None:
        self.stop_watchdog()
        docker("rm", "-f", "-v", self.container, check=False)
        mountpoint = self.mountpoint if docker(
            "volume", "inspect", self.volume, check=False
        ).returncode == 0 else None  # fmt: skip
        if mountpoint is not None and os.path.ismount(mountpoint):
            subprocess.run(["umount", str(mountpoint)], check=False)
        super().destroy()
