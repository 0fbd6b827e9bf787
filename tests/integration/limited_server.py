"""A Debian-built Postgres in a memory-limited container, for the memory tests.

Plain helpers (not a conftest): the container runs ``postgres`` with the given ``-c``
flags under ``--memory`` = ``--memory-swap`` = the limit, published on a free local port,
and is removed with its volume on the way out.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import docker.errors
import psycopg2
import pytest
from debian_images import DOCKER_CLI, docker_client, ensure_debian_image

from tests.support.ports import free_port

PASSWORD = "memory-test-superuser"


def image_or_skip(version: int = 15) -> str:
    """The Debian-built image of ``version`` (built once), or skip the test."""
    try:
        return ensure_debian_image(docker_client(), version)
    except (RuntimeError, docker.errors.DockerException) as exc:
        pytest.skip(str(exc))


@contextmanager
def limited_server(image: str, prefix: str, limit: int, flags: Sequence[str]) -> Iterator[
    tuple[str, int]
]:  # fmt: skip
    """(container name, port) of ``image`` running ``postgres *flags`` under ``limit`` bytes."""
    name, port = f"{prefix}-{uuid.uuid4().hex[:8]}", free_port()
    subprocess.run(
        [DOCKER_CLI, "run", "-d", "--name", name, f"--memory={limit}",
         f"--memory-swap={limit}", "-e", f"POSTGRES_PASSWORD={PASSWORD}",
         "-p", f"127.0.0.1:{port}:5432", image, "postgres", *flags],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    try:
        yield name, port
    finally:
        subprocess.run([DOCKER_CLI, "rm", "-f", "-v", name], capture_output=True, check=False)


def connect(port: int, timeout: float = 120) -> psycopg2.extensions.connection:
    """The superuser, retrying until the server accepts or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return psycopg2.connect(
                host="127.0.0.1", port=port, user="postgres", password=PASSWORD,
                dbname="postgres", connect_timeout=5,
            )  # fmt: skip
        except psycopg2.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def inspect(name: str, template: str) -> str:
    """``docker inspect -f template name``."""
    return subprocess.run(
        [DOCKER_CLI, "inspect", "-f", template, name], capture_output=True, text=True, check=True
    ).stdout.strip()
