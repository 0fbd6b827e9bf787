"""The Postgres image for lab hosts, built once on this machine and shipped as a tarball.

The image is pgsteady's own Debian-built one (the shipped build script, the same recipe
tag and label the deploy would build on a host), saved with ``docker save``: the lab
copies the tarball onto each host, as an operator would with scp, and the inventory
names it with ``postgres_image_source = "archive"``.
"""

from __future__ import annotations

import os
from pathlib import Path

from pgsteady.lab.engine import DOCKER, LabError, docker, run
from pgsteady.lab.hostimage import image_ready, local_mirror, local_security_mirror
from pgsteady.stack.image import BUILD_DIR, RECIPE_LABEL, debian_recipe, shipped_files

#: Where the tarball lands on a lab host: root's home, readable by root only.
HOST_ARCHIVE_DIR = "/root"


def ensure_image(version: int, log=print) -> str:
    """The tag of pgsteady's Debian image for ``version`` on this machine, built if missing."""
    recipe = debian_recipe(version)
    if image_ready(recipe.tag, recipe.recipe_hash, RECIPE_LABEL):
        return recipe.tag
    log(f"building {recipe.tag} with files/image/build-debian-image.sh (about a minute)")
    script = shipped_files().build_script
    proc = run(
        ["sh", str(script), str(version), recipe.suite, local_mirror(), local_security_mirror(),
         recipe.tag, recipe.recipe_hash, BUILD_DIR],
        check=False, timeout=1200,
    )  # fmt: skip
    if proc.returncode != 0 or not image_ready(recipe.tag, recipe.recipe_hash, RECIPE_LABEL):
        raise LabError(f"building {recipe.tag} failed:\n{(proc.stdout + proc.stderr)[-3000:]}")
    return recipe.tag


def save_archive(version: int, state_dir: Path, log=print) -> tuple[str, Path]:
    """(tag, tarball) of the image for ``version``; the tarball is written once per image."""
    tag = ensure_image(version, log)
    image_id = docker("image", "inspect", "--format", "{{.Id}}", tag).stdout.strip()
    tarball = state_dir / f"postgres-{version}.tar"
    stamp = state_dir / f"postgres-{version}.id"
    if tarball.exists() and stamp.exists() and stamp.read_text().strip() == image_id:
        return tag, tarball
    log(f"docker save {tag} -> {tarball}")
    partial = tarball.with_suffix(".tar.partial")
    old = os.umask(0o077)
    try:
        docker("save", "-o", str(partial), tag, timeout=900)
    finally:
        os.umask(old)
    partial.rename(tarball)
    stamp.write_text(image_id + "\n")
    return tag, tarball


def host_archive_path(version: int) -> str:
    """The tarball's path on a lab host (the inventory's postgres_image_archive)."""
    return f"{HOST_ARCHIVE_DIR}/pgsteady-postgres-{version}.tar"


def copy_to_host(container: str, tarball: Path, version: int) -> None:
    """Put the tarball on the host (``docker cp``, the lab's scp), root-owned 0600."""
    dest = host_archive_path(version)
    size = str(tarball.stat().st_size)
    have = docker("exec", container, "stat", "-c", "%s", dest, check=False).stdout.strip()
    if have == size:
        return
    run([DOCKER, "cp", str(tarball), f"{container}:{dest}"], timeout=900)
    docker("exec", container, "sh", "-c", f"chown root:root {dest} && chmod 600 {dest}")
