"""Build (once) and find pgsteady's Debian-built Postgres images for tests.

Plain helpers, not a conftest: import them from any integration or e2e test.
The image is built with the real shipped build script; an image whose recipe
label matches is reused, so only the first run on a machine pays ~1 min per version.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
from pathlib import Path

import docker
import docker.errors
import pytest

from pgsteady.stack.image import (
    BUILD_DIR,
    RECIPE_LABEL,
    debian_mirror,
    debian_recipe,
    debian_security_mirror,
    shipped_files,
)

DOCKER_CLI = "/usr/bin/docker"
WORKDIR = BUILD_DIR
BUILD_TIMEOUT_S = 900


def docker_client() -> docker.DockerClient:
    """A client for the local engine, negotiating the API version (engine 20.10 is old)."""
    return docker.DockerClient(base_url="unix:///var/run/docker.sock", version="auto")


def engine_or_skip() -> docker.DockerClient:
    """A client for the local engine that answered a ping; skips the calling test if none."""
    try:
        client = docker_client()
        client.ping()
    except Exception as exc:
        pytest.skip(f"no Docker engine: {exc}")
    return client


def _host_sources() -> tuple[str, list[str]]:
    sources_list = Path("/etc/apt/sources.list")
    text = sources_list.read_text() if sources_list.exists() else ""
    deb822 = [Path(p).read_text() for p in sorted(glob.glob("/etc/apt/sources.list.d/*.sources"))]
    return text, deb822


def host_debian_mirror() -> str:
    """The main archive URI from this host's apt sources."""
    return debian_mirror(*_host_sources())


def host_security_mirror() -> str:
    """The archive serving <suite>-security in this host's apt sources."""
    return debian_security_mirror(*_host_sources())


def image_ready(client: docker.DockerClient, tag: str, recipe_hash: str) -> bool:
    """True when ``tag`` exists and carries the expected recipe label."""
    try:
        img = client.images.get(tag)
    except docker.errors.ImageNotFound:
        return False
    return (img.labels or {}).get(RECIPE_LABEL) == recipe_hash


def build_prerequisites_missing() -> str | None:
    """A reason the build script cannot run here, or None."""
    if os.geteuid() != 0:
        return "building the Debian image needs root"
    if shutil.which("debootstrap") is None:
        return "debootstrap is not installed"
    return None


def ensure_debian_image(client: docker.DockerClient, version: int) -> str:
    """Return the tag of the Debian image for ``version``, building it if needed."""
    recipe = debian_recipe(version)
    if image_ready(client, recipe.tag, recipe.recipe_hash):
        return recipe.tag
    reason = build_prerequisites_missing()
    if reason:
        raise RuntimeError(f"image {recipe.tag} is missing and cannot be built: {reason}")
    files = shipped_files()
    cmd = [
        "sh",
        str(files.build_script),
        str(version),
        recipe.suite,
        host_debian_mirror(),
        host_security_mirror(),
        recipe.tag,
        recipe.recipe_hash,
        WORKDIR,
    ]
    env = {**os.environ, "DOCKER": DOCKER_CLI}
    proc = subprocess.run(
        cmd, env=env, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"build of {recipe.tag} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        )
    if not image_ready(client, recipe.tag, recipe.recipe_hash):
        raise RuntimeError(f"build script succeeded but {recipe.tag} is not labelled")
    return recipe.tag


def debian_image_or_skip(client: docker.DockerClient, version: int) -> str:
    """:func:`ensure_debian_image`, skipping the calling test when this machine cannot build."""
    try:
        return ensure_debian_image(client, version)
    except RuntimeError as exc:
        if build_prerequisites_missing():
            pytest.skip(str(exc))
        raise
