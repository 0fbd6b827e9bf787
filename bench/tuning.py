"""Tuning: pgbench TPS under three postgresql.conf files, same container, same data.

One deployed stack (the run's memory and CPU limits) carries the pgbench data. Between
runs its ``app_dir/config/postgresql.conf`` (mounted read-only into the container) is
swapped and the container restarted; the deployed file is put back, and the server
restarted on it, at the end. The configurations:

* ``A`` stock: only listen_addresses, port and hba_file (every other setting at the
  server's built-in default: shared_buffers 128MB, max_connections 100, ...).
* ``B`` PGTune core: :func:`pgsteady.postgres.tuning.pgtune` for the *container's* memory and CPUs,
  i.e. what an operator gets by entering the container size into PGTune. (PGTune for
  the host's RAM would size shared_buffers above the container limit.)
* ``C`` pgsteady: the postgresql.conf the deploy rendered (:func:`pgsteady.postgres.tuning.tune`,
  container-aware, plus logging, pg_stat_statements, timeouts, autovacuum).

pgbench runs inside the container (its own PG17 pgbench, over the Unix socket, as
postgres), so client and server share the container's CPU limit in every configuration.
"""

from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench import stats
from bench.config import BenchConfig
from bench.stacks import DOCKER, Stack, pgbench, run, wait_docker, wait_ready
from pgsteady.postgres.conf_files import tuning_input
from pgsteady.postgres.tuning import pgtune
from pgsteady.render import render
from pgsteady.settings import HostFacts, Settings, build_settings
from pgsteady.stack.layout import CONFIG_MOUNT

LABELS = ("A", "B", "C")
NAMES = {"A": "stock defaults", "B": "PGTune core (pgtune)", "C": "pgsteady (tune)"}
SHOWN = (
    "shared_buffers",
    "effective_cache_size",
    "work_mem",
    "maintenance_work_mem",
    "max_connections",
    "max_wal_size",
    "random_page_cost",
    "effective_io_concurrency",
    "max_worker_processes",
    "shared_preload_libraries",
)
WORKLOADS = {"read_only": ["-S"], "tpcb_like": []}


def local_host_facts() -> HostFacts:
    """RAM (MB) and CPUs the way the deploy's facts see this machine."""
    with open("/proc/meminfo") as f:
        kb = next(int(line.split()[1]) for line in f if line.startswith("MemTotal:"))
    return HostFacts(ram_mb=kb // 1024, cpus=os.cpu_count() or 1)


def stack_settings(stack: Stack) -> Settings:
    return build_settings(stack.host_data(), local_host_facts(), host=stack.name)


def conf_texts(stack: Stack) -> dict[str, str]:
    """The three postgresql.conf files, keyed A, B and C."""
    s = stack_settings(stack)
    container = replace(
        tuning_input(s), ram=s.memory_limit_bytes, cpus=s.cpu_count, memory_limit=None,
        cpu_limit=None,
    )  # fmt: skip

    def conf(header: str, settings: tuple) -> str:
        return render(
            "postgresql.conf.j2",
            header=header,
            settings=settings,
            overrides={},
            listen_addresses="*",
            port=5432,
            hba_file=f"{CONFIG_MOUNT}/pg_hba.conf",
        )

    deployed = (stack.app_dir / "config" / "postgresql.conf").read_text()
    return {
        "A": conf("pgsteady bench: stock defaults", ()),
        "B": conf("pgsteady bench: PGTune core for the container", pgtune(container).settings),
        "C": deployed,
    }


class ConfSwitch:
    """Swap the stack's postgresql.conf and restart; ``restore()`` puts the deployed one back."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.path: Path = stack.app_dir / "config" / "postgresql.conf"
        self.original = self.path.read_bytes()
        st = self.path.stat()
        self.owner = (st.st_uid, st.st_gid, st.st_mode & 0o777)

    def _write(self, data: bytes) -> None:
        tmp = self.path.with_name(".bench-postgresql.conf")
        tmp.write_bytes(data)
        os.chown(tmp, self.owner[0], self.owner[1])
        os.chmod(tmp, self.owner[2])
        tmp.replace(self.path)

    def apply(self, text: str) -> float:
        """Write ``text`` and restart the container; seconds until it answers again."""
        self._write(text.encode())
        return self._restart()

    def _restart(self) -> float:
        started = time.monotonic()
        run([DOCKER, "restart", "-t", "60", self.stack.container], timeout=180)
        wait_ready(self.stack)
        return time.monotonic() - started

    def restore(self) -> None:
        self._write(self.original)
        wait_docker()
        self._restart()


def show(stack: Stack) -> dict[str, str]:
    values = stack.psql(
        "SELECT name, current_setting(name) FROM pg_settings WHERE name IN ("
        + ", ".join(f"'{n}'" for n in SHOWN)
        + ") ORDER BY name"
    )
    return dict(line.split("|", 1) for line in values.splitlines())


def run_tuning(stack: Stack, config: BenchConfig, log: Any = print) -> dict[str, Any]:
    """Alternate A B C for ``tuning_rounds`` rounds; tps per run and paired ratios."""
    texts = conf_texts(stack)
    common = ["-c", str(config.clients), "-j", str(config.threads)]
    switch = ConfSwitch(stack)
    runs: list[dict[str, Any]] = []
    effective: dict[str, dict[str, str]] = {}
    try:
        for rnd, label in stats.alternate(LABELS, config.tuning_rounds):
            restart = switch.apply(texts[label])
            if label not in effective:
                effective[label] = show(stack)
            pgbench(stack, ["-S", *common, "-T", str(config.tuning_warmup)])
            for workload, extra in WORKLOADS.items():
                result = pgbench(stack, [*extra, *common, "-T", str(config.tuning_seconds)])
                runs.append({"round": rnd, "config": label, "workload": workload, **result})
                log(f"tuning round {rnd + 1} {label} {workload}: {result['tps']:.0f} tps")
            runs[-1]["restart_seconds"] = round(restart, 2)
    finally:
        switch.restore()
    restored = switch.path.read_bytes() == switch.original
    return {
        "configs": {k: {"name": NAMES[k], "settings": effective.get(k, {})} for k in LABELS},
        "runs": runs,
        "results": summarize(runs),
        "deployed_conf_restored": restored,
        "pgbench": {
            "where": "inside the container (PG17 pgbench, Unix socket, user postgres)",
            "clients": config.clients,
            "threads": config.threads,
            "seconds": config.tuning_seconds,
            "warmup_seconds": config.tuning_warmup,
            "rounds": config.tuning_rounds,
        },
    }


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per workload: median tps per config, and B/A, C/A, C/B paired by round."""
    out: dict[str, Any] = {}
    for workload in WORKLOADS:
        tps = {
            label: [r["tps"] for r in sorted(runs, key=lambda r: r["round"])
                    if r["workload"] == workload and r["config"] == label]
            for label in LABELS
        }  # fmt: skip
        if not all(tps.values()):
            continue
        out[workload] = {
            "tps": {label: stats.summary(v, 1) for label, v in tps.items()},
            "B/A": stats.ratio_summary(tps["B"], tps["A"]),
            "C/A": stats.ratio_summary(tps["C"], tps["A"]),
            "C/B": stats.ratio_summary(tps["C"], tps["B"]),
        }
    return out
