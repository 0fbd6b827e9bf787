"""The memory minimum pgsteady enforces holds a real server serving every connection.

A Postgres 15 container (the Debian-built image) runs under a memory limit equal to
``pgsteady.postgres.safety.memory_minimum`` for its settings, with the shared_buffers the tuner
gives at that limit; every allowed connection is opened and reads the catalog (each
backend builds its caches). The server must neither be OOM-killed nor restart, and the
cgroup's peak usage must stay inside the limit it was given.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest
from debian_images import DOCKER_CLI
from limited_server import connect, image_or_skip, inspect, limited_server

from pgsteady.postgres import safety
from pgsteady.settings import HostFacts, build_settings
from pgsteady.units import MIB

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]

CONNECTIONS = 100
CATALOG_QUERY = (
    "SELECT count(*) FROM pg_catalog.pg_class c "
    "JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid"
)


def _ram_mb() -> int:
    with open("/proc/meminfo") as f:
        return int(f.readline().split()[1]) // 1024


@pytest.fixture(scope="module")
def image() -> str:
    return image_or_skip(15)


@pytest.fixture
def container(image: str) -> Iterator[tuple[str, int, int, int]]:
    """(name, port, limit, shared_buffers) of a server started at the minimum limit."""
    facts = HostFacts(ram_mb=_ram_mb(), cpus=2)
    data = {"postgres_version": 15, "postgres_max_connections": CONNECTIONS}
    probe = build_settings({**data, "postgres_memory_limit": "8GB"}, facts)
    limit = safety.memory_minimum(probe)
    s = build_settings({**data, "postgres_memory_limit": f"{limit // MIB}MB"}, facts)
    assert safety.memory_errors(s) == []  # exactly the minimum is accepted
    shared_buffers = safety.shared_buffers_bytes(s, limit)
    flags = [f"-cmax_connections={CONNECTIONS}", f"-cshared_buffers={shared_buffers // 1024}kB",
             "-cshared_preload_libraries=pg_stat_statements"]  # fmt: skip
    with limited_server(image, "pgsteady-memmin", limit, flags) as (name, port):
        yield name, port, limit, shared_buffers


def _peak_bytes(name: str) -> int:
    """The container cgroup's peak memory usage (cgroup v1 or v2)."""
    for path in ("/sys/fs/cgroup/memory.peak", "/sys/fs/cgroup/memory/memory.max_usage_in_bytes"):
        proc = subprocess.run(
            [DOCKER_CLI, "exec", name, "cat", path], capture_output=True, text=True, check=False
        )
        if proc.returncode == 0 and proc.stdout.strip().isdigit():
            return int(proc.stdout)
    pytest.skip("the container's cgroup reports no peak memory")


def test_every_connection_fits_in_the_minimum(container: tuple[str, int, int, int]) -> None:
    name, port, limit, shared_buffers = container
    first = connect(port)
    with first.cursor() as cur:
        cur.execute("SELECT pg_catalog.pg_postmaster_start_time()")
        started = cur.fetchone()[0]
    conns = [first]
    try:
        for _ in range(CONNECTIONS - 1):  # the superuser may use the reserved slots too
            conns.append(connect(port, timeout=10))
        for conn in conns:
            with conn.cursor() as cur:
                cur.execute(CATALOG_QUERY)
                assert cur.fetchone()[0] > 1000
        with conns[0].cursor() as cur:
            cur.execute("SELECT count(*) FROM pg_catalog.pg_stat_activity WHERE backend_type = "
                        "'client backend'")  # fmt: skip
            assert cur.fetchone()[0] == CONNECTIONS
            cur.execute("SELECT pg_catalog.pg_postmaster_start_time()")
            assert cur.fetchone()[0] == started, "the server restarted (crash recovery)"
        peak = _peak_bytes(name)
    finally:
        for conn in conns:
            conn.close()
    assert inspect(name, "{{.State.OOMKilled}} {{.RestartCount}} {{.State.Running}}") == (
        "false 0 true"
    )
    print(
        f"\nlimit {limit // MIB} MB (shared_buffers {shared_buffers // MIB} MB, "
        f"{CONNECTIONS} connections): peak {peak / MIB:.0f} MB"
    )
    assert peak <= limit
