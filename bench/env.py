"""The machine and software a run measured: hardware, versions and load."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from bench.stacks import DOCKER


def _out(*argv: str) -> str:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unavailable ({exc})"
    return (proc.stdout or proc.stderr).strip().splitlines()[0] if proc.returncode == 0 else ""


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _mem_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return round(int(line.split()[1]) / 1024 / 1024, 1)
    return 0.0


def _os_release() -> str:
    for line in Path("/etc/os-release").read_text().splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip('"')
    return platform.platform()


def machine(path: Path) -> dict[str, object]:
    disk = shutil.disk_usage(path)
    return {
        "os": _os_release(),
        "kernel": platform.release(),
        "cpu_model": _cpu_model(),
        "cpus": os.cpu_count(),
        "memory_gib": _mem_gib(),
        "disk_free_gib": round(disk.free / 1024**3, 1),
        "virtualization": _out("systemd-detect-virt") or "unknown",
    }


def versions() -> dict[str, str]:
    return {
        "python": sys.version.split()[0],
        "pyinfra": metadata.version("pyinfra"),
        "docker": _out(DOCKER, "version", "--format", "{{.Server.Version}}"),
        "docker_compose": _out("docker-compose", "version", "--short"),
    }
