"""The verify check image/minor_version_current against real containers: behind, current.

The checks of tests/verify/test_image.py are called with the verify suite's own Host
helper on a local testinfra host. "Behind" is made real without a network: an image
derived from the Debian-built one whose only apt source is a local flat repository
offering postgresql-15 15.99; the server inside still runs the real 15.x.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import secrets
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import docker
import docker.errors
import pytest
import testinfra
from debian_images import debian_image_or_skip, engine_or_skip

from pgsteady.settings import HostFacts, Settings, build_settings
from pgsteady.stack import apt_candidate
from pgsteady.verify import CheckFailed, Fixes, VerifyContext

pytestmark = pytest.mark.docker

VERIFY = Path(__file__).resolve().parent.parent / "verify"
VERSION = 15
FAKE_MINOR = "15.99-0+deb12u1"
FACTS = HostFacts(ram_mb=4096, cpus=2)


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


verify_conftest = _load("pgsteady_verify_conftest", VERIFY / "conftest.py")
verify_image = _load("pgsteady_verify_test_image", VERIFY / "test_image.py")


@pytest.fixture(scope="module")
def client() -> Iterator[docker.DockerClient]:
    c = engine_or_skip()
    yield c
    c.close()


@pytest.fixture(scope="module")
def real_image(client: docker.DockerClient) -> str:
    return debian_image_or_skip(client, VERSION)


def _context_tar(base: str) -> io.BytesIO:
    """A build context whose Dockerfile adds a local repository with a newer postgresql."""
    packages = (
        f"Package: postgresql-{VERSION}\nVersion: {FAKE_MINOR}\nArchitecture: all\n"
        "Maintainer: pgsteady tests <tests@localhost>\nFilename: ./absent.deb\nSize: 1\n"
        "Description: a newer minor release, offered by the test repository only\n"
    )
    dockerfile = (
        f"FROM {base}\n"
        "COPY Packages /srv/repo/Packages\n"
        # A test-only flat repository: the check reads the candidate, nothing installs.
        "RUN echo 'deb [trusted=yes] file:/srv/repo ./' > /etc/apt/sources.list\n"
    )
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, text in (("Dockerfile", dockerfile), ("Packages", packages)):
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    return buf


@pytest.fixture(scope="module")
def behind_image(client: docker.DockerClient, real_image: str) -> Iterator[str]:
    tag = f"pgsteady-test/verify-behind:{secrets.token_hex(4)}"
    client.images.build(
        fileobj=_context_tar(real_image), custom_context=True, tag=tag, network_mode="none",
        rm=True, forcerm=True,  # docker-py keeps the build's intermediate containers otherwise
    )  # fmt: skip
    yield tag
    with contextlib.suppress(docker.errors.ImageNotFound, docker.errors.APIError):
        client.images.remove(tag, force=True)


@pytest.fixture
def stack(client: docker.DockerClient) -> Iterator[dict[str, Any]]:
    """Settings for a throwaway project; removes its container and alias tag."""
    data = {"compose_project": f"h3vimg{secrets.token_hex(3)}", "postgres_version": VERSION}
    s = build_settings(data, FACTS)
    state: dict[str, Any] = {"s": s, "data": data}
    yield state
    with contextlib.suppress(docker.errors.NotFound):
        client.containers.get(s.container_name).remove(force=True, v=True)
    with contextlib.suppress(docker.errors.ImageNotFound, docker.errors.APIError):
        client.images.remove(s.image_alias)


def _start(client: docker.DockerClient, s: Settings, image: str) -> dict[str, Any]:
    client.images.get(image).tag(s.image_alias)
    c = client.containers.run(
        s.image_alias,
        name=s.container_name,
        detach=True,
        environment={"POSTGRES_PASSWORD": secrets.token_urlsafe(12)},
    )
    host = testinfra.get_host("local://")
    on = verify_conftest.Host(host, s)
    for _ in range(300):
        if on.run(f"docker exec -u postgres {s.container_name} pg_isready -q -h 127.0.0.1").rc == 0:
            break
        c.reload()
        assert c.status == "running", c.logs().decode()
        time.sleep(0.2)
    return {"on": on, "container": on.inspect("container", s.container_name)}


FIXES = Fixes(inventory="inventory/h3.py")


@pytest.fixture
def lookups() -> Iterator[list[apt_candidate.Lookup]]:
    """The lookups a test starts, each joined at teardown (its throwaway container gone)."""
    started: list[apt_candidate.Lookup] = []
    yield started
    for lookup in started:
        lookup.join()


def _ctx(stack: dict[str, Any], answer: Path, lookups: list[apt_candidate.Lookup]) -> VerifyContext:
    """The suite's context, with the answer of the apt lookup the driver starts (run here
    as the driver runs it: its command through a shell on the host, in a thread)."""
    s = stack["s"]
    argv = ["sh", "-c", apt_candidate.command(s.container_name, VERSION)]
    lookups.append(apt_candidate.Lookup(argv, VERSION, answer).start())
    return VerifyContext(
        "local", FIXES.inventory, stack["data"], FACTS, apt_candidate_file=str(answer)
    )


def test_behind_is_reported_with_the_update_command(
    client: docker.DockerClient,
    behind_image: str,
    stack: dict[str, Any],
    tmp_path: Path,
    lookups: list[apt_candidate.Lookup],
) -> None:
    s = stack["s"]
    run = _start(client, s, behind_image)
    ctx = _ctx(stack, tmp_path / "apt.json", lookups)
    with pytest.raises(CheckFailed) as failed:
        verify_image.test_minor_version_current(run["on"], run["on"], run["container"], ctx, FIXES)
    running = run["on"].value("SHOW server_version").split()[0]
    behind = 99 - int(running.split(".")[1])
    assert failed.value.what.startswith(f"Postgres {running} runs (package 15.")
    assert f"{FAKE_MINOR} is available: {behind} minor release(s) behind" in failed.value.what
    assert failed.value.fix == "make update-image INVENTORY=inventory/h3.py"


def test_current_server_passes(
    client: docker.DockerClient,
    real_image: str,
    stack: dict[str, Any],
    tmp_path: Path,
    lookups: list[apt_candidate.Lookup],
) -> None:
    s = stack["s"]
    run = _start(client, s, real_image)
    ctx = _ctx(stack, tmp_path / "apt.json", lookups)
    try:
        verify_image.test_minor_version_current(run["on"], run["on"], run["container"], ctx, FIXES)
    except pytest.skip.Exception as exc:
        pytest.skip(f"the Debian mirror is not reachable from a container here: {exc}")
