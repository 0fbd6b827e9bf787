"""The memory minimum pgsteady enforces holds a real server serving every connection.

A Postgres 15 container (the Debian-built image) runs under a memory limit equal to
``pgsteady.postgres.safety.memory_minimum`` for its settings, with the shared_buffers the tuner
gives at that limit; every allowed connection is opened and reads the catalog (each
backend builds its caches). The server must neither be OOM-killed nor restart, and the
cgroup's peak usage must stay inside the limit it was given.
"""

from __future__ import annotations

import socket
import subprocess
import time
import uuid
from collections.abc import Iterator

import docker
import docker.errors
import psycopg2
import pytest
from debian_images import DOCKER_CLI, docker_client, ensure_debian_image

from pgsteady.postgres import safety
from pgsteady.settings import HostFacts, build_settings
from pgsteady.units import MIB

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]

PASSWORD = "memory-minimum-test"
CONNECTIONS = 100
CATALOG_QUERY = (
    "SELECT count(*) FROM pg_catalog.pg_class c "
    "JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid"
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ram_mb() -> int:
    with open("/proc/meminfo") as f:
        return int(f.readline().split()[1]) // 1024


@pytest.fixture(scope="module")
def image() -> str:
    try:
        return ensure_debian_image(docker_client(), 15)
    except (RuntimeError, docker.errors.DockerException) as exc:
        pytest.skip(str(exc))


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
    name, port = f"pgsteady-memmin-{uuid.uuid4().hex[:8]}", _free_port()
    subprocess.run(
        [DOCKER_CLI, "run", "-d", "--name", name, f"--memory={limit}",
         f"--memory-swap={limit}", "-e", f"POSTGRES_PASSWORD={PASSWORD}",
         "-p", f"127.0.0.1:{port}:5432", image, "postgres",
         "-c", f"max_connections={CONNECTIONS}",
         "-c", f"shared_buffers={shared_buffers // 1024}kB",
         "-c", "shared_preload_libraries=pg_stat_statements"],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    try:
        yield name, port, limit, shared_buffers
    finally:
        subprocess.run([DOCKER_CLI, "rm", "-f", "-v", name], capture_output=True, check=False)


def _connect(port: int, timeout: float = 120) -> psycopg2.extensions.connection:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return psycopg2.connect(
                host="127.0.0.1", port=port, user="postgres", password=PASSWORD,
                dbname="postgres", connect_timeout=3,
            )  # fmt: skip
        except psycopg2.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def _inspect(name: str, template: str) -> str:
    return subprocess.run(
        [DOCKER_CLI, "inspect", "-f", template, name], capture_output=True, text=True, check=True
    ).stdout.strip()


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
    first = _connect(port)
    with first.cursor() as cur:
        cur.execute("SELECT pg_catalog.pg_postmaster_start_time()")
        started = cur.fetchone()[0]
    conns = [first]
    try:
        for _ in range(CONNECTIONS - 1):  # the superuser may use the reserved slots too
            conns.append(_connect(port, timeout=10))
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
    assert _inspect(name, "{{.State.OOMKilled}} {{.RestartCount}} {{.State.Running}}") == (
        "false 0 true"
    )
    print(
        f"\nlimit {limit // MIB} MB (shared_buffers {shared_buffers // MIB} MB, "
        f"{CONNECTIONS} connections): peak {peak / MIB:.0f} MB"
    )
    assert peak <= limit
