"""What pgsteady runs inside the Postgres container runs as ``postgres``, never root.

The monitor's collect script (with a cluster member's GET /cluster section) runs in a real
``sh`` with a ``docker`` on PATH that records its arguments; verify's cluster fixture
builds its command with ``fetch_argv``. Review R7 L5: both ran ``python3`` as root.
"""

from __future__ import annotations

import os
import subprocess
import types
from pathlib import Path

from pgsteady.cluster import status
from pgsteady.monitor.collect import collect_script
from tests.support.verify_module import load_verify_module


def _member(tmp_path: Path) -> types.SimpleNamespace:
    return types.SimpleNamespace(
        container_name="pgs-main-postgres", app_dir=str(tmp_path), backup_path=str(tmp_path),
        pgbackrest_enabled=False, postgres_db="app", pgbouncer_enabled=False,
        compose_project="pgs-main", postgres_cluster_name="main",
        postgres_cluster_address="10.0.0.5", patroni_rest_port=8008,
    )  # fmt: skip


def test_every_collector_exec_into_the_container_is_as_postgres(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "docker.log"
    fake = bin_dir / "docker"
    fake.write_text('#!/bin/sh\nprintf "%s\\n" "$*" | head -n 1 >> "$DOCKER_LOG"\nexit 0\n')
    fake.chmod(0o755)
    s = _member(tmp_path)
    subprocess.run(
        ["sh", "-s"], input=collect_script(s, "10.0.0.5"), capture_output=True, text=True,
        timeout=60, env=dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}",
                             DOCKER_LOG=str(log)),
    )  # fmt: skip
    execs = [line for line in log.read_text().splitlines() if line.startswith("exec ")]
    assert any(" python3 -c " in line for line in execs), execs  # the cluster section ran
    assert any(" df -Pk " in line for line in execs), execs
    root = [line for line in execs if f"-u postgres {s.container_name} " not in line]
    assert root == []


def test_verify_cluster_fetch_runs_as_postgres() -> None:
    module = load_verify_module("test_cluster")
    argv = module.fetch_argv("docker", "pgs-main-postgres", "https://10.0.0.5:8008/cluster", "/ca")
    assert argv[:6] == ["docker", "exec", "-u", "postgres", "pgs-main-postgres", "python3"]
    assert argv[7] == status.FETCH_SCRIPT
