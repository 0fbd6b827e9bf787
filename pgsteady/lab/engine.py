"""Running commands on this machine: the Docker engine's own client, and plain argv."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

#: The engine's own client; another ``docker`` earlier on PATH may be a different one.
DOCKER = "/usr/bin/docker" if Path("/usr/bin/docker").exists() else "docker"


class LabError(RuntimeError):
    """A lab step failed; the message says which command and what it printed."""


def run(
    argv: list[str],
    *,
    input: str | bytes | None = None,  # noqa: A002 - subprocess's own name
    check: bool = True,
    timeout: float = 600,
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` (never through a shell); raise LabError with its output on failure."""
    text_input = input.decode() if isinstance(input, bytes) else input
    proc = subprocess.run(
        argv, input=text_input, capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip()[-2000:]
        raise LabError(f"{' '.join(argv[:6])} ... failed ({proc.returncode}): {detail}")
    return proc


def docker(*args: str, check: bool = True, timeout: float = 600, input: str | None = None):  # noqa: A002
    """``docker ARGS``; see :func:`run`."""
    return run([DOCKER, *args], check=check, timeout=timeout, input=input)


def exists(kind: str, name: str) -> bool:
    """True when the docker object ``kind`` (container, volume, network, image) exists."""
    return docker(kind, "inspect", name, check=False).returncode == 0


def networks(attempts: int = 5) -> list[dict[str, Any]]:
    """Every Docker network's inspect record. The engine is shared: a network another lab
    or test removes between the listing and the inspect fails the inspect, so list again."""
    for _ in range(attempts):
        ids = docker("network", "ls", "-q").stdout.split()
        if not ids:
            return []
        proc = docker("network", "inspect", *ids, check=False)
        if proc.returncode == 0:
            return list(json.loads(proc.stdout))
        time.sleep(0.5)
    raise LabError(f"docker network inspect kept failing: {proc.stderr.strip()[-500:]}")
