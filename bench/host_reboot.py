"""The ``host_reboot`` part of ``python -m bench``: a whole host restarts, how long until
Postgres answers again (issue 19's ``host_reboot_to_query_s``).

One lab host (docs/lab.md: a container with systemd, sshd and its own dockerd; the
Postgres 17 image seeded from this machine's Debian build) is converged with the real
``make deploy`` over SSH, a probe row written, then rebooted (``docker restart``: systemd
shuts down cleanly and boots again) and power-cycled (``docker kill`` + ``docker start``:
no shutdown, Postgres runs crash recovery), ``host_reboot_trials`` of each, alternated.
Each figure runs from the command to the first successful query through the product's
``pgsteady-ctl psql`` on the host; nothing but the host's own boot brings Postgres back.
After the last fault the probe row must still be there. The lab is removed afterwards.
"""

from __future__ import annotations

import secrets
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import env, stats
from bench.config import BenchConfig

Results = dict[str, Any]
REPO = Path(__file__).resolve().parents[1]
KINDS = ("reboot", "power_cycle")
DATA = {"compose_project": "benchreboot"}
PROBE = "SELECT note FROM public.bench_reboot_probe WHERE id = 1"


def order(trials: int) -> list[str]:
    """reboot, power_cycle, power_cycle, reboot, ...: neither kind always goes first."""
    pair = list(KINDS)
    return [k for r in range(trials) for k in (pair if r % 2 == 0 else pair[::-1])]


def wait_for_query(
    query: Callable[[], bool], since: float, timeout: float, pause: float = 0.25
) -> float:
    """Seconds from ``since`` (monotonic) to the first ``query()`` that succeeds."""
    deadline = since + timeout
    while not query():
        if time.monotonic() > deadline:
            raise RuntimeError(f"no successful query within {timeout:.0f} s of the fault")
        time.sleep(pause)
    return time.monotonic() - since


def summarise(seconds: dict[str, list[float]]) -> Results:
    """Each kind's trials and summary."""
    return {kind: {"each": [round(s, 2) for s in v], **stats.summary(v, 2)}
            for kind, v in seconds.items() if v}  # fmt: skip


def run(cfg: BenchConfig, log: Callable[[str], None] = print) -> Results:
    """Build, deploy, fault and measure one lab host; the part's results."""
    from pgsteady.lab import faults
    from pgsteady.lab.engine import docker
    from pgsteady.lab.hosts import Lab
    from pgsteady.settings import Settings

    settings = Settings(**DATA)
    ctl = f"{settings.layout.bin}/pgsteady-ctl"
    lab = Lab(f"pgsbr{secrets.token_hex(3)}", log=log)
    inventory = lab.dir / "inventory.py"
    load_start, started = env.load_average(), time.monotonic()
    try:
        (host,) = lab.up(1, "bookworm", inventory=inventory, image_source="seed",
                         extra_data=DATA)  # fmt: skip
        deploy = subprocess.run(["make", "-s", "deploy", f"INVENTORY={inventory}"], cwd=REPO,
                                capture_output=True, text=True, timeout=3600)  # fmt: skip
        if deploy.returncode != 0:
            raise RuntimeError(f"deploy failed: {(deploy.stdout + deploy.stderr)[-3000:]}")
        build_s = time.monotonic() - started
        log(f"host_reboot: lab host built and deployed in {build_s:.0f} s")

        def sql(query: str) -> subprocess.CompletedProcess[str]:
            argv = ["exec", host.name, ctl, "psql", "-XAtq", "-v", "ON_ERROR_STOP=1",
                    "-d", settings.postgres_db, "-c", query]  # fmt: skip
            try:
                return docker(*argv, check=False, timeout=15)
            except subprocess.TimeoutExpired:  # a host still booting can hold the exec
                return subprocess.CompletedProcess(argv, 124, "", "timed out after 15 s")

        made = sql(
            "CREATE TABLE public.bench_reboot_probe (id int PRIMARY KEY, note text); "
            "INSERT INTO public.bench_reboot_probe VALUES (1, 'before the faults')"
        )
        if made.returncode != 0:
            raise RuntimeError(f"probe table: {made.stderr}")
        before = sql("SELECT pg_postmaster_start_time()").stdout
        seconds: dict[str, list[float]] = {k: [] for k in KINDS}
        for kind in order(cfg.host_reboot_trials):
            fault = faults.reboot if kind == "reboot" else faults.power_cycle
            issued = fault(host.name)
            took = wait_for_query(lambda: sql(PROBE).returncode == 0, issued,
                                  cfg.host_reboot_timeout)  # fmt: skip
            seconds[kind].append(took)
            log(f"host_reboot: {kind} -> first query in {took:.1f} s")
        kept = sql(PROBE).stdout.strip()
        if kept != "before the faults":
            raise RuntimeError(f"the probe row did not survive the faults: {kept!r}")
        if sql("SELECT pg_postmaster_start_time()").stdout == before:
            raise RuntimeError("the postmaster never restarted: the faults missed Postgres")
    finally:
        left = lab.down(inventory)
        if left:
            log(f"host_reboot: left behind {', '.join(left)}")
    return {
        "where": "one lab host (systemd, its own dockerd), converged by make deploy over SSH; "
        "Postgres 17 from the Debian-built image",
        "trials_per_kind": cfg.host_reboot_trials,
        "build_seconds": round(build_s, 1),
        "kinds": summarise(seconds),
        "load": {"start": load_start, "end": env.load_average()},
    }


def section(hr: Results) -> list[str]:
    """The page's section."""
    lines = [
        "## Host reboot",
        "",
        f"{hr['where']}, built and deployed in {hr['build_seconds']:.0f} s. Reboot: "
        "`docker restart` of the host (systemd shuts down cleanly and boots); power cycle: "
        "`docker kill` + `docker start` (no shutdown, crash recovery). From the command to "
        "the first query through `pgsteady-ctl psql` on the host; the probe row written "
        "before the first fault read back after the last, the postmaster restarted. Load "
        f"{' / '.join(map(str, hr['load']['start']))} at the start.",
        "",
        "| fault | trials | median | p95 | max | each (s) |",
        "|---|---|---|---|---|---|",
    ]
    for kind, k in hr["kinds"].items():
        each = ", ".join(f"{s:.1f}" for s in k["each"])
        lines.append(f"| {kind.replace('_', ' ')} | {k['n']} | {k['p50']:.1f} s | "
                     f"{k['p95']:.1f} s | {k['max']:.1f} s | {each} |")  # fmt: skip
    return lines + [""]
