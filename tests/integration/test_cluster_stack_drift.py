"""pgsteady/cluster/stack_drift.py against the host's real compose CLI and Docker (R9 M2):
right after ``up`` no service drifts (or every deploy would roll the cluster); a compose
file rewritten without an ``up`` (a run that stopped before its roll) shows exactly the
changed service; the next ``up`` clears it."""

from __future__ import annotations

import secrets
import shutil
import subprocess
from pathlib import Path

import pytest

from pgsteady.cluster import stack_drift
from tests.integration.debian_images import debian_image_or_skip, engine_or_skip

COMPOSE = """services:
  db:
    image: {image}
    container_name: {project}-db
    command: ["sleep", "infinity"]
    env_file: {env}
    environment: {{PGSTEADY_X: "{x}"}}
    volumes: ["{project}-data:/srv/data"]
    healthcheck: {{test: ["CMD", "true"], interval: 5s}}
  side:
    image: {image}
    container_name: {project}-side
    command: ["sleep", "infinity"]
volumes:
  {project}-data: {{}}
"""


def _cli() -> list[str]:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    pytest.skip("no compose CLI on this host")


def test_drift_is_what_up_would_recreate(tmp_path: Path) -> None:
    image = debian_image_or_skip(engine_or_skip(), 17)
    cli = _cli()
    project = f"pgsdrift{secrets.token_hex(3)}"
    compose_file, env = tmp_path / "docker-compose.yml", tmp_path / "initial.env"
    env.write_text("PGSTEADY_ONCE=1\n")
    flags = [*cli, "-p", project, "-f", str(compose_file)]
    command = stack_drift.drift_command(" ".join(flags), project)

    def write(x: str) -> None:
        compose_file.write_text(COMPOSE.format(image=image, project=project, env=env, x=x))

    def drift() -> list[str]:
        out = subprocess.run(["sh", "-c", command], capture_output=True, text=True, check=True)
        wanted, running = stack_drift.parse(out.stdout)
        assert set(wanted) == set(running) == {"db", "side"}, out  # both sides were read
        return stack_drift.drifted(out.stdout)

    try:
        write("1")
        subprocess.run([*flags, "up", "-d"], capture_output=True, check=True, timeout=300)
        assert drift() == []
        write("2")  # written by a run that stopped before the roll
        assert drift() == ["db"]
        subprocess.run([*flags, "up", "-d"], capture_output=True, check=True, timeout=300)
        assert drift() == []
    finally:
        subprocess.run([*flags, "down", "-v", "-t", "1"], capture_output=True, timeout=300)
