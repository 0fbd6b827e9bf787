"""Tuning: pgbench TPS under three postgresql.conf files, same container, same data.

One deployed stack (the run's memory and CPU limits) carries the pgbench data. Between
runs its ``app_dir/config/postgresql.conf`` (mounted read-only into the container) is
swapped and the container restarted; the deployed file is put back, and the server
restarted on it, at the end. The configurations:

* ``A`` stock: only listen_addresses, port, hba_file, the TLS and WAL-archiving lines the
  deploy writes (every configuration has them; every other setting at the server's
  built-in default: shared_buffers 128MB, max_connections 100, ...).
* ``B`` PGTune core: :func:`pgsteady.postgres.tuning.pgtune` for the *container's* memory and CPUs,
  i.e. what an operator gets by entering the container size into PGTune. (PGTune for
  the host's RAM would size shared_buffers above the container limit.)
* ``D`` pgsteady without pg_stat_statements preloaded: C otherwise, to measure what the
  monitoring extension costs.
* ``C`` pgsteady: the postgresql.conf the deploy rendered (:func:`pgsteady.postgres.tuning.tune`,
  container-aware, plus logging, pg_stat_statements, timeouts, autovacuum).
* ``H`` PGTune for the *host's* RAM and CPUs, in the same container: only in the worst-case
  memory workload (:mod:`bench.memory`), which runs every configuration ``memory_rounds``
  times, alternated, and counts the OOM kills of each.

pgbench runs inside the container (its own PG17 pgbench, over the Unix socket, as
postgres), so client and server share the container's CPU limit in every configuration.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import psycopg2

from bench import memory, stats
from bench.config import BenchConfig
from bench.stacks import DOCKER, Stack, exec_postgres, pgbench, run, wait_docker, wait_ready
from pgsteady.backup import pgbackrest
from pgsteady.postgres.conf_files import tls_settings, tuning_input
from pgsteady.postgres.tuning import pgtune
from pgsteady.render import render
from pgsteady.settings import HostFacts, Settings, build_settings
from pgsteady.stack.layout import CONFIG_MOUNT, KEY_MOUNT, TLS_MOUNT

LABELS = ("A", "B", "C", "D")
NAMES = {
    "A": "stock defaults",
    "B": "PGTune core (pgtune)",
    "C": "pgsteady (tune)",
    "D": "pgsteady without pg_stat_statements",
}
MEMORY_LABELS = ("A", "B", "H", "C")
#: The headline keys of the memory workload's configurations.
MEMORY_KEYS = {"A": "stock", "B": "pgtune_container", "H": "pgtune_host_sized", "C": "pgsteady"}
MEMORY_NAMES = {**NAMES, "H": "PGTune for the host's RAM (pgtune)"}
MEMORY_TABLE = "bench_memory_rows"
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
    """The four postgresql.conf files, keyed A, B, C and H."""
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
            tls=tls_settings(TLS_MOUNT, KEY_MOUNT),
            archive=pgbackrest.server_settings(s),
        )

    deployed = (stack.app_dir / "config" / "postgresql.conf").read_text()
    return {
        "A": conf("pgsteady bench: stock defaults", ()),
        "B": conf("pgsteady bench: PGTune core for the container", pgtune(container).settings),
        "C": deployed,
        "D": without_statements(deployed),
        "H": conf(
            "pgsteady bench: PGTune core for the host",
            pgtune(replace(tuning_input(s), memory_limit=None, cpu_limit=None)).settings,
        ),
    }


def without_statements(conf: str) -> str:
    """``conf`` with pg_stat_statements no longer preloaded (what it costs, measured)."""
    line = "shared_preload_libraries = pg_stat_statements"
    if line not in conf.splitlines():
        raise ValueError("the deployed postgresql.conf does not preload pg_stat_statements")
    return conf.replace(line, "shared_preload_libraries = ''")


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
    mem = run_memory(stack, config, log) if config.memory_rounds else None
    return {
        **({"memory": mem, "oom_kills": mem["oom_kills"]} if mem else {}),
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
    """Per workload: median tps per config, and B/A, C/A, C/B (and D/B, C/D when D ran)
    paired by round."""
    out: dict[str, Any] = {}
    for workload in WORKLOADS:
        tps = {
            label: [r["tps"] for r in sorted(runs, key=lambda r: r["round"])
                    if r["workload"] == workload and r["config"] == label]
            for label in LABELS
        }  # fmt: skip
        if not all(tps[k] for k in "ABC"):
            continue
        out[workload] = {
            "tps": {label: stats.summary(v, 1) for label, v in tps.items()},
            "B/A": stats.ratio_summary(tps["B"], tps["A"]),
            "C/A": stats.ratio_summary(tps["C"], tps["A"]),
            "C/B": stats.ratio_summary(tps["C"], tps["B"]),
        }
        if tps["D"]:
            out[workload]["D/B"] = stats.ratio_summary(tps["D"], tps["B"])
            out[workload]["C/D"] = stats.ratio_summary(tps["C"], tps["D"])
        else:
            del out[workload]["tps"]["D"]
    return out


def prepare_memory(stack: Stack, rows: int) -> None:
    """The app role's integer-keyed table the workload reads (created once)."""
    with stack.connect() as conn, conn.cursor() as cur:
        cur.execute(
            f"CREATE TABLE IF NOT EXISTS {MEMORY_TABLE} AS "
            "SELECT g AS k FROM pg_catalog.generate_series(1, %s) AS g",
            (rows,),
        )
        cur.execute(
            f"ALTER TABLE {MEMORY_TABLE} ADD PRIMARY KEY (k)" if not _has_key(cur) else "SELECT 1"
        )
        cur.execute(f"ANALYZE {MEMORY_TABLE}")


def _has_key(cur: Any) -> bool:
    cur.execute(
        "SELECT count(*) FROM pg_catalog.pg_index WHERE indrelid = %s::regclass",
        (MEMORY_TABLE,),
    )
    return cur.fetchone()[0] > 0


def _maintenance(stack: Stack) -> None:
    """CREATE INDEX at maintenance_work_mem (the table's rows sorted), dropped again."""
    run(
        exec_postgres(
            stack, "psql", "-X", "-q", "-d", "app", "-c",
            f"CREATE INDEX bench_memory_idx ON {MEMORY_TABLE} ((k::int8 * 7919 % 1000003), k)",
            "-c", "DROP INDEX bench_memory_idx",
        ),
        timeout=900,
    )  # fmt: skip


class LogWatch:
    """Count the postmaster's "terminated by signal 9" lines while they are written (the
    log rotates under the workload's temp-file lines, so reading it afterwards misses
    some): ``docker logs --follow`` from now until :meth:`stop`."""

    def __init__(self, stack: Stack) -> None:
        self.count = 0
        self.proc = subprocess.Popen(
            [DOCKER, "logs", "--follow", "--since", "0s", stack.container],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        )
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.count += memory.signal9_lines(line)

    def stop(self) -> int:
        """Stop following (the follower is this object's own child) and return the count."""
        time.sleep(1)  # the last lines
        self.proc.terminate()
        self.proc.wait(timeout=30)
        self.thread.join(timeout=30)
        return self.count


def allowed(stack: Stack) -> int:
    """Connections the app role may open under the running configuration."""
    out = stack.psql(
        "SELECT current_setting('max_connections'), current_setting('superuser_reserved_"
        "connections'), coalesce((SELECT setting FROM pg_settings WHERE name = "
        "'reserved_connections'), '0'), (SELECT rolconnlimit FROM pg_roles WHERE rolname = 'app')"
    )
    mc, su, res, limit = (int(v) for v in out.split("|"))
    return memory.allowed_clients(mc, su + res, limit)


def run_memory(
    stack: Stack, config: BenchConfig, log: Any = print, labels: tuple[str, ...] = MEMORY_LABELS
) -> dict[str, Any]:
    """The worst-case memory workload against each configuration, alternated, counting
    OOM kills (see :mod:`bench.memory`)."""
    texts = conf_texts(stack)
    prepare_memory(stack, config.memory_table_rows)
    switch = ConfSwitch(stack)
    cgroup = memory.CgroupReader(lambda: stack.inspect()["Id"])
    limit = int(stack.inspect()["HostConfig"]["Memory"])
    runs: list[dict[str, Any]] = []
    effective: dict[str, dict[str, str]] = {}
    try:
        for rnd, label in stats.alternate(labels, config.memory_rounds):
            try:
                switch.apply(texts[label])
            except (RuntimeError, psycopg2.OperationalError) as exc:
                log(f"memory round {rnd + 1} {label}: the server did not start ({exc})")
                runs.append({"round": rnd, "config": label, "start_failed": str(exc)[:300]})
                continue
            if label not in effective:
                effective[label] = show(stack)
            watch = LogWatch(stack)
            try:
                restarts = stack.inspect()["RestartCount"]
                clients = allowed(stack) - 1  # the coordinator takes one slot
                result = memory.run_workload(
                    lambda: stack.connect(timeout=30), clients, MEMORY_TABLE, "k",
                    cgroup.oom_kills, cgroup.resident, lambda: stack.psql(memory.CHECKPOINTER),
                    maintenance=lambda: _maintenance(stack),
                    hold=config.memory_hold, timeout=config.memory_timeout,
                )  # fmt: skip
                wait_ready(stack, timeout=300)
            finally:
                signal9 = watch.stop()
            row = {"round": rnd, "config": label, **result.as_dict(), "signal9": signal9}
            state = stack.inspect()["State"]
            row["container_oom_killed"] = bool(state.get("OOMKilled"))
            row["container_restarts"] = stack.inspect()["RestartCount"] - restarts
            row["killed"] = row["killed"] or row["signal9"] > 0 or row["container_restarts"] > 0
            runs.append(row)
            log(
                f"memory round {rnd + 1} {label}: {clients} clients, work_mem "
                f"{result.work_mem_kb} kB, {row['oom_kills']} OOM kill(s), signal 9 x "
                f"{row['signal9']}, peak {result.peak_bytes / 2**20:.0f} MiB of "
                f"{limit / 2**20:.0f} MiB"
            )
    finally:
        switch.restore()
    summary = memory.summarize(runs, limit)
    return {
        "configs": {
            k: {"name": MEMORY_NAMES[k], "key": MEMORY_KEYS[k], "settings": effective.get(k, {})}
            for k in labels
        },
        "limit_bytes": limit,
        "runs": runs,
        "results": summary,
        "oom_kills": {MEMORY_KEYS[k]: v["oom_kills"] for k, v in summary.items()},
        "workload": {
            "query_units": "Sort + HashAggregate + Hash join, rows sized to overflow each",
            "rounds": config.memory_rounds,
            "hold_seconds": config.memory_hold,
            "maintenance": f"CREATE INDEX on {MEMORY_TABLE} (6 million rows) as postgres",
        },
        "deployed_conf_restored": switch.path.read_bytes() == switch.original,
    }
