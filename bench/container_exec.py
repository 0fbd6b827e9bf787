"""Commands in the bench's own containers: ``docker exec`` as the postgres user, psql."""

from __future__ import annotations

import subprocess

from bench.stacks import DOCKER


def sh(*args: str, timeout: float = 3600, stdin: str | None = None) -> str:
    """Run a command, return its stdout; raise with its output when it fails."""
    proc = subprocess.run(
        args, input=stdin, capture_output=True, text=True, timeout=timeout, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:6])}: {proc.stdout[-1500:]} {proc.stderr[-1500:]}")
    return proc.stdout


def pg(name: str, *args: str, timeout: float = 3600, stdin: str | None = None) -> str:
    """``args`` run in container ``name`` as the postgres user (stdin fed when given)."""
    flags = ["-i"] if stdin is not None else []
    return sh(DOCKER, "exec", *flags, "-u", "postgres", name, *args, timeout=timeout, stdin=stdin)


def psql(name: str, sql: str) -> str:
    """One statement through psql in container ``name``; its unaligned, trimmed output."""
    return pg(name, "psql", "-XAtq", "-v", "ON_ERROR_STOP=1", "-c", sql).strip()
