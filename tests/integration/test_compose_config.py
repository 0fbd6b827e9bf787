"""docker-compose itself accepts every compose file pgsteady renders."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml

from pgsteady.settings import HostFacts, build_settings
from pgsteady.stack.compose import render_compose

FACTS = HostFacts(ram_mb=8192, cpus=4)


def compose_commands() -> list[list[str]]:
    found = []
    if shutil.which("docker-compose"):
        found.append(["docker-compose"])
    docker = "/usr/bin/docker" if shutil.which("/usr/bin/docker") else shutil.which("docker")
    if (
        docker
        and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0
    ):
        found.append([docker, "compose"])
    return found


VARIANTS = [
    {},
    {  # 512 MB holds 100 connections, not the web profile's 200 (pgsteady.postgres.safety)
        "postgres_memory_limit": "512MB",
        "postgres_max_connections": 100,
        "postgres_cpus": 0.5,
        "postgres_restart_policy": "no",
    },
    {
        "postgres_bind": "0.0.0.0",
        "postgres_allowed_networks": ["10.0.0.0/8"],  # not samenet
        "postgres_port": 6543,
        "postgres_readonly_user": "app_ro",
    },
    {"postgres_bind": "::1", "healthcheck_interval": "500ms", "postgres_stop_grace_period": "2m"},
    {"app_dir": "/srv/pg.data-1", "backup_dir": "/mnt/backups", "compose_project": "shop_db-2"},
    {
        "postgres_image_source": "debian",  # restore-on-empty needs pgsteady's image
        "postgres_restore_on_empty": True,
        "docker_log_max_size": "50m",
        "docker_log_max_file": 2,
    },
]


@pytest.mark.parametrize("command", compose_commands(), ids=lambda c: " ".join(c[-2:]))
@pytest.mark.parametrize("data", VARIANTS, ids=lambda d: ",".join(d) or "defaults")
def test_compose_accepts_rendered_file(tmp_path, command, data):
    rendered = render_compose(build_settings(data, FACTS))
    path = tmp_path / "docker-compose.yml"
    path.write_text(rendered)
    proc = subprocess.run(
        [*command, "-p", "pgsteadycheck", "-f", str(path), "config"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    normalised = yaml.safe_load(proc.stdout)
    svc = normalised["services"]["postgres"]
    assert svc["restart"] == (data.get("postgres_restart_policy") or "always")
    assert "healthcheck" in svc


def test_a_compose_cli_is_available():
    assert compose_commands(), "neither docker-compose nor docker compose is installed"
