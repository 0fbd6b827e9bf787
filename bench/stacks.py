"""Bench stacks: isolated pgsteady deployments (the e2e harness) and commands against them.

Stacks live under ``/var/tmp/pgsteady-bench`` (on disk, not tmpfs) unless
``PGSTEADY_E2E_ROOT`` says otherwise; every stack created here is destroyed by
:func:`destroy_all`, which ``python -m bench`` calls on the way out.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Sequence
from typing import Any

from bench.config import BenchConfig
from bench.parsing import parse_pgbench

os.environ.setdefault("PGSTEADY_E2E_ROOT", "/var/tmp/pgsteady-bench")  # before the import

from tests.support.stack import (  # noqa: E402
    DOCKER,
    PYINFRA,
    ROOT,
    DeployResult,
    Stack,
    parse_grand_total,
)

__all__ = ["DOCKER", "PYINFRA", "ROOT", "DeployResult", "Stack", "parse_grand_total"]

#: Operator defaults the e2e harness shortens for speed; the bench keeps them.
OPERATOR_DEFAULTS: dict[str, Any] = {
    "postgres_image_source": "auto",
    "healthcheck_interval": "10s",
    "healthcheck_start_period": "60s",
}

_created: list[Stack] = []


def new_stack(role: str, **data: Any) -> Stack:
    """A not yet deployed stack named ``pgsb-<role>-<pid>``, registered for cleanup."""
    stack = Stack(name=f"pgsb-{role}-{os.getpid()}", data={**OPERATOR_DEFAULTS, **data})
    _created.append(stack)
    return stack


def data_stack(config: BenchConfig) -> Stack:
    """The stack that carries the pgbench data, with the run's container limits."""
    return new_stack("data", postgres_memory_limit=config.memory_limit, postgres_cpus=config.cpus)


def deploy_or_fail(stack: Stack, *args: str) -> DeployResult:
    result = stack.deploy(*args)
    if result.returncode != 0:
        raise RuntimeError(f"deploy of {stack.name} failed:\n{result.output[-4000:]}")
    return result


def docker_up() -> bool:
    proc = subprocess.run(
        [DOCKER, "version", "--format", "{{.Server.Version}}"], capture_output=True, timeout=30
    )
    return proc.returncode == 0


def wait_docker(timeout: float = 300) -> bool:
    """Wait until the engine answers (other work on this machine may restart dockerd)."""
    deadline = time.monotonic() + timeout
    while not docker_up():
        if time.monotonic() > deadline:
            return False
        time.sleep(2)
    return True


def destroy(stack: Stack) -> None:
    """Destroy one stack now (once the engine answers)."""
    if wait_docker():
        stack.destroy()
        _created.remove(stack)


def destroy_all() -> list[str]:
    """Destroy every stack this process created; the names of any left behind."""
    left = []
    while _created:
        stack = _created.pop()
        if wait_docker():
            stack.destroy()
        else:  # keep its files: removing them under a container that comes back breaks it
            left.append(stack.name)
    return left


def run(argv: Sequence[str], timeout: float = 3600, **kwargs: Any) -> subprocess.CompletedProcess:
    """Run a command (output captured unless ``stdout`` is given); raise with it on failure."""
    if "stdout" in kwargs:
        kwargs.setdefault("stderr", subprocess.PIPE)
    else:
        kwargs["capture_output"] = True
    proc = subprocess.run(list(argv), text=True, timeout=timeout, **kwargs)
    if proc.returncode != 0:
        output = (proc.stdout or "")[-2000:] + (proc.stderr or "")[-2000:]
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}:\n{output}")
    return proc


def timed(argv: Sequence[str], timeout: float = 3600) -> tuple[float, str]:
    """Seconds a command took (it must succeed) and its stdout."""
    started = time.monotonic()
    proc = run(argv, timeout=timeout)
    return time.monotonic() - started, proc.stdout


def exec_postgres(stack: Stack, *command: str) -> list[str]:
    """argv running ``command`` as postgres inside the stack's container."""
    return [DOCKER, "exec", "-u", "postgres", stack.container, *command]


def pgbench_init(stack: Stack, scale: int, db: str = "app") -> float:
    """``pgbench -i -s SCALE`` inside the container; seconds taken."""
    seconds, _ = timed(exec_postgres(stack, "pgbench", "-i", "-q", "-s", str(scale), db))
    return seconds


def pgbench(stack: Stack, args: Sequence[str], db: str = "app") -> dict[str, float]:
    """One pgbench run inside the container; its tps and latency."""
    proc = run(exec_postgres(stack, "pgbench", *args, db))
    return parse_pgbench(proc.stdout)


def database_size(stack: Stack, db: str = "app") -> int:
    return int(stack.psql(f"SELECT pg_database_size('{db}')"))


def wait_ready(stack: Stack, timeout: float = 180) -> float:
    """Seconds until a query over TCP succeeds."""
    return stack.wait_until_accepting(timeout=timeout)
