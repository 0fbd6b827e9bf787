"""Converge: first converge (image present), no-op re-converge, and no-op time for
1, 5 and 10 hosts.

Several isolated stacks share this machine. They are converged (a) one after another,
each as its own ``@local`` inventory, and (b) when an sshd is available, as ONE
inventory whose hosts are all this machine reached over a private sshd on 127.0.0.1 —
pyinfra then works on the hosts in parallel, as it would on a fleet.
"""

from __future__ import annotations

import importlib.util
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import sshd, stats
from bench.config import REPO, BenchConfig
from bench.stacks import (
    DOCKER,
    PYINFRA,
    ROOT,
    DeployResult,
    Stack,
    deploy_or_fail,
    new_stack,
    parse_grand_total,
)


def _children_cpu() -> float:
    """User + system CPU seconds of this process's finished children so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def pyinfra(inventory: Path) -> DeployResult:
    """``pyinfra -y INVENTORY deploy.py`` from the repository; timed and parsed.

    ``result.cpu_seconds`` is the CPU the pyinfra process (and anything it ran locally)
    used on this control machine; commands it runs over ssh count on the host side.
    """
    started, cpu_before = time.monotonic(), _children_cpu()
    proc = subprocess.run(
        [str(PYINFRA), "-y", str(inventory), "deploy.py"],
        cwd=REPO, capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    output = proc.stdout + proc.stderr
    result = DeployResult(proc.returncode, output, seconds=time.monotonic() - started)
    result.cpu_seconds = _children_cpu() - cpu_before  # type: ignore[attr-defined]
    if proc.returncode != 0:
        raise RuntimeError(f"pyinfra {inventory} failed:\n{output[-4000:]}")
    result.success, result.errors, result.no_change = parse_grand_total(output)
    return result


def ssh_inventory(stacks: list[Stack], connection: dict[str, Any], path: Path) -> Path:
    hosts = [(s.name, {**s.host_data(), **connection}) for s in stacks]
    path.write_text(f"hosts = {hosts!r}\n")
    return path


def image_present(version: int = 17) -> bool:
    """Whether a Postgres image the deploy would use is already on this machine."""
    from pgsteady.stack.image import debian_recipe

    for ref in (debian_recipe(version).tag, f"postgres:{version}"):
        if subprocess.run([DOCKER, "image", "inspect", ref], capture_output=True).returncode == 0:
            return True
    return False


def verify_available() -> bool:
    return importlib.util.find_spec("pgsteady.verify") is not None


def time_verify(inventory: Path) -> dict[str, Any]:
    """Seconds of ``python -m pgsteady.verify --inventory INVENTORY`` (what make verify runs)."""
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "pgsteady.verify", "--inventory", str(inventory)],
        cwd=REPO, capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    return {
        "seconds": round(time.monotonic() - started, 2),
        "returncode": proc.returncode,
        "tail": (proc.stdout + proc.stderr)[-600:] if proc.returncode else "",
    }


def _entry(result: DeployResult) -> dict[str, Any]:
    return {
        "seconds": round(result.seconds, 2),
        "changed": result.changed,
        "changed_operations": result.changed_operations(),
        **({"cpu_seconds": round(cpu, 2)} if (cpu := getattr(result, "cpu_seconds", None)) else {}),
    }


def no_op(result: DeployResult, what: str) -> DeployResult:
    """``result``, which must have changed nothing: a run that changed something is not
    a no-op converge, and its time must not be published as one."""
    if result.changed:
        raise RuntimeError(f"{what} was not a no-op: {result.changed_operations()[:12]}")
    return result


def run_converge(config: BenchConfig, log: Any = print) -> dict[str, Any]:
    """The converge part. Each stack is converged both as ``@local`` and over ssh as
    ``<its name>`` at 127.0.0.1, so it uses one CA of the run's (a CA lives beside its
    inventory by default: pgsteady.ca_store) and lists both names as extra certificate
    names (:func:`_stack`): otherwise every switch of inventory re-issues its certificates."""
    ca_dir = ROOT / f"bench-ca-{os.getpid()}"
    try:
        return _run_converge(config, log, {"postgres_tls_ca_dir": str(ca_dir)})
    finally:
        shutil.rmtree(ca_dir, ignore_errors=True)


def _stack(role: str, data: dict[str, Any]) -> Stack:
    """A bench stack whose certificate names are the same whichever inventory reaches it:
    its ssh inventory name and address (server_names adds them over ssh only)."""
    stack = new_stack(role, **data)
    stack.data["postgres_tls_extra_names"] = [stack.name, "127.0.0.1"]
    return stack


def _run_converge(config: BenchConfig, log: Any, data: dict[str, Any]) -> dict[str, Any]:
    total = max(config.converge_hosts)
    first, noop = [], []
    stacks: list[Stack] = []
    present = image_present()
    for i in range(min(config.converge_first, total)):
        stack = _stack(f"c{i + 1:02d}", data)
        stacks.append(stack)
        first.append(_entry(deploy_or_fail(stack)))
        noop.append(_entry(no_op(deploy_or_fail(stack), f"no-op converge of {stack.name}")))
        log(f"stack {i + 1}: first {first[-1]['seconds']} s, no-op {noop[-1]['seconds']} s")
    out: dict[str, Any] = {
        "first_converge": {
            "runs": first,
            "seconds": stats.summary([r["seconds"] for r in first]),
            "image_present": present,
        },
        "noop_converge": {"runs": noop, "seconds": stats.summary([r["seconds"] for r in noop])},
    }
    rest = [_stack(f"c{i + 1:02d}", data) for i in range(len(stacks), total)]
    use_ssh = config.use_sshd and sshd.available()
    with _maybe_sshd(use_ssh) as daemon:
        if rest and daemon:
            inv = ssh_inventory(rest, daemon.host_data(), ROOT / f"bench-first-{len(rest)}.py")
            result = pyinfra(inv)
            out["parallel_first_converge"] = {"hosts": len(rest), **_entry(result)}
            log(f"first converge of {len(rest)} hosts over ssh: {result.seconds:.1f} s")
        else:
            for stack in rest:
                deploy_or_fail(stack)
        stacks += rest
        out["serial_local_noop"] = _serial(stacks, config, log)
        if daemon:
            out["parallel_noop"] = _parallel(stacks, daemon.host_data(), config, log)
        out["verify"] = _verify(stacks)
    out["method"] = "ssh" if use_ssh else "local-only"
    return out


class _maybe_sshd:
    """``LocalSshd`` when wanted, else a context yielding None."""

    def __init__(self, wanted: bool) -> None:
        self.daemon = sshd.LocalSshd(ROOT / "bench-sshd") if wanted else None

    def __enter__(self) -> sshd.LocalSshd | None:
        return self.daemon.__enter__() if self.daemon else None

    def __exit__(self, *exc: object) -> None:
        if self.daemon:
            self.daemon.__exit__(*exc)


def _serial(stacks: list[Stack], config: BenchConfig, log: Any) -> dict[str, Any]:
    """N separate ``@local`` runs one after another; cumulative seconds for each N."""
    rounds = []
    for rnd in range(config.converge_rounds):
        seconds = [no_op(deploy_or_fail(s), f"@local no-op of {s.name}").seconds for s in stacks]
        rounds.append(seconds)
        log(f"serial @local no-op round {rnd + 1}: {sum(seconds):.1f} s for {len(stacks)}")
    return {str(n): stats.summary([sum(r[:n]) for r in rounds], 2) for n in config.converge_hosts}


def _parallel(
    stacks: list[Stack], connection: dict[str, Any], config: BenchConfig, log: Any
) -> dict[str, Any]:
    """One inventory of N hosts over ssh, no-op; alternated N = 1, 5, 10, 1, 5, 10."""
    inventories = {
        n: ssh_inventory(stacks[:n], connection, ROOT / f"bench-noop-{n}.py")
        for n in config.converge_hosts
    }
    runs: dict[int, list[dict[str, Any]]] = {n: [] for n in config.converge_hosts}
    for _, n in stats.alternate([str(n) for n in config.converge_hosts], config.converge_rounds):
        result = no_op(pyinfra(inventories[int(n)]), f"no-op over ssh of {n} host(s)")
        runs[int(n)].append(_entry(result))
        log(f"no-op over ssh, {n} host(s): {result.seconds:.1f} s, {result.changed} changed")
    return {
        str(n): {
            "seconds": stats.summary([r["seconds"] for r in v], 2),
            "changed": [r["changed"] for r in v],
            "per_host_seconds": round(stats.median([r["seconds"] for r in v]) / n, 2),
            # CPU of the control machine per host: what a fleet's converge scales with.
            "per_host_cpu_seconds": round(stats.median([r["cpu_seconds"] for r in v]) / n, 2),
        }
        for n, v in runs.items()
    }


def _verify(stacks: list[Stack]) -> dict[str, Any]:
    """``make verify`` against one converged @local stack (per-host cost)."""
    if not verify_available():
        return {"available": False, "note": "pgsteady.verify does not exist in this checkout"}
    return {"available": True, "local_1": time_verify(stacks[0].write_inventory())}
