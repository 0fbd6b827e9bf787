"""Issue 19: pgsteady's tuning survives the worst-case memory workload in a small container.

A Postgres 15 container (the Debian-built image) runs under a 512MB memory limit with every
setting pgsteady's tuner gives for that limit and 40 connections. Then bench.memory's
workload runs: every connection the application may open executes a query that sorts,
hash-aggregates and hash-joins, each node filled to its work_mem / hash_mem limit, and all
of them hold that peak at the same moment (an advisory-lock barrier), while a CREATE INDEX
sorts at maintenance_work_mem. The kernel must not OOM-kill anything: the cgroup's
oom_kill counter stays 0, no server process is "terminated by signal 9", and the server
does not go through crash recovery. On the old tuner (PGTune's 4MB work_mem floor) the
same workload needs about 800MB in this container and is killed.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import psycopg2
import pytest
from debian_images import DOCKER_CLI
from limited_server import connect, image_or_skip, inspect, limited_server

from bench import memory
from pgsteady.postgres.conf_files import tuning_input
from pgsteady.postgres.tuning import tune
from pgsteady.settings import HostFacts, build_settings
from pgsteady.units import MIB

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]

LIMIT = "512MB"
CONNECTIONS = 40


@pytest.fixture(scope="module")
def image() -> str:
    return image_or_skip(15)


@pytest.fixture
def server(image: str) -> Iterator[tuple[str, int, dict[str, str], int]]:
    """(name, port, tuned settings, limit bytes) of a server run with pgsteady's tuning."""
    facts = HostFacts(ram_mb=16 * 1024, cpus=2)
    s = build_settings(
        {"postgres_version": 15, "postgres_max_connections": CONNECTIONS,
         "postgres_memory_limit": LIMIT, "postgres_cpus": 2},
        facts,
    )  # fmt: skip
    tuned = tune(tuning_input(s)).as_dict()
    limit = s.memory_limit_bytes
    flags = [f"-c{k}={v}" for k, v in tuned.items()]
    with limited_server(image, "pgsteady-memworst", limit, flags) as (name, port):
        yield name, port, tuned, limit


def _connect(port: int, timeout: float = 120) -> psycopg2.extensions.connection:
    conn = connect(port, timeout)
    conn.autocommit = True
    return conn


def _sql(port: int, sql: str) -> object:
    conn = _connect(port, timeout=30)
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetchone()[0] if cur.description else None
    finally:
        conn.close()


def test_worst_case_workload_is_not_oom_killed(server) -> None:
    name, port, tuned, limit = server
    _connect(port).close()
    assert _sql(port, "SHOW work_mem") == tuned["work_mem"]
    work_mem = memory.parse_kb(tuned["work_mem"])
    assert work_mem < 4096  # the budget, not PGTune's 4MB floor
    # enough rows for every node to overflow, and for the CREATE INDEX to fill
    # maintenance_work_mem (23MB here)
    rows = max(memory.rows_needed(work_mem, 2.0) * 2, 1_500_000)
    _sql(port, f"CREATE TABLE w AS SELECT g AS k FROM generate_series(1, {rows}) AS g")
    _sql(port, "ALTER TABLE w ADD PRIMARY KEY (k)")
    _sql(port, "ANALYZE w")
    reserved = int(_sql(port, "SHOW superuser_reserved_connections"))
    # the coordinator and the maintenance session take a slot each
    clients = memory.allowed_clients(CONNECTIONS, reserved, -1) - 2
    cgroup = memory.CgroupReader(lambda: inspect(name, "{{.Id}}"))
    assert cgroup.oom_kills() == 0
    before = cgroup.resident()  # shared buffers already full of the table

    result = memory.run_workload(
        lambda: _connect(port, timeout=60), clients, "w", "k",
        cgroup.oom_kills, cgroup.resident,
        lambda: _sql(port, memory.CHECKPOINTER),
        maintenance=lambda: _sql(port, "CREATE INDEX w_o ON w ((k::int8 * 7919 % 1000003), k)"),
        hold=2.0, timeout=600,
    )  # fmt: skip

    logs = subprocess.run([DOCKER_CLI, "logs", name], capture_output=True, text=True)
    print(f"\n{LIMIT}, {CONNECTIONS} connections, work_mem {tuned['work_mem']}, shared_buffers "
          f"{tuned['shared_buffers']}: {result.as_dict()}")  # fmt: skip
    assert result.errors == [] and result.maintenance_error is None
    assert result.arrived == clients, "not every backend held its peak at once"
    assert result.finished == clients
    # the workload really held memory: more than one work_mem per client at once on top
    # of what the server held before it
    assert result.peak_bytes - before > clients * work_mem * 1024
    assert result.oom_kills == 0
    assert memory.signal9_lines(logs.stdout + logs.stderr) == 0
    assert not result.server_restarted
    assert inspect(name, "{{.State.OOMKilled}} {{.RestartCount}} {{.State.Running}}") == (
        "false 0 true"
    )
    assert result.peak_bytes <= limit
    print(f"resident {before / MIB:.0f} MB before, peak {result.peak_bytes / MIB:.0f} MB of "
          f"{limit / MIB:.0f} MB")  # fmt: skip
