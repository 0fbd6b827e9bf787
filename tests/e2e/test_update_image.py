"""`make update-image` end to end: newer packages reach a converged host on purpose.

The host runs an image whose recorded package versions are stale (the present image with
its package digest label replaced, so its contents still work). A deploy with
``--data pgsteady_refresh_image=1`` (what `make update-image` runs) rebuilds from the
signed suite + security suite, sees the packages changed, moves the tags and recreates
the container on the new image with the data kept. A normal deploy afterwards changes
nothing: converges never rebuild.
"""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import tarfile

import pytest

from pgsteady.stack.image import PACKAGES_LABEL, debian_recipe
from tests.support.stack import DOCKER, Stack, docker

pytestmark = pytest.mark.timeout(1200)


def _image_id(ref: str) -> str:
    return docker("image", "inspect", "--format", "{{.Id}}", ref).stdout.strip()


def _stale_copy(ref: str) -> str:
    """An image identical to ``ref`` but labelled with an outdated package digest."""
    dockerfile = f"FROM {ref}\nLABEL {PACKAGES_LABEL}={'0' * 64}\n".encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(dockerfile)
        tar.addfile(info, io.BytesIO(dockerfile))
    proc = subprocess.run(
        [DOCKER, "build", "-q", "--network", "none", "-"],
        input=buf.getvalue(),
        capture_output=True,
        check=True,
    )
    return proc.stdout.decode().strip()


def test_update_image_rolls_the_container_onto_newer_packages(shared_stack: Stack) -> None:
    """On the e2e conftest's shared stack: handed on updated and healthy, its table dropped."""
    recipe = debian_recipe(17)
    alias = f"pgsteady/{shared_stack.name}-postgres:17"
    shared_stack.psql("CREATE TABLE kept_across_update AS SELECT 42 AS x", db="app")

    stale = _stale_copy(recipe.tag)
    try:
        docker("tag", stale, recipe.tag)
        docker("tag", stale, alias)
        ctl = shared_stack.app_dir / "bin" / "pgsteady-ctl"
        up = subprocess.run([str(ctl), "up"], capture_output=True, text=True, check=False)
        assert up.returncode == 0, up.stdout + up.stderr
        before = shared_stack.inspect()
        assert before["Image"] == stale

        # A normal converge leaves the stale-but-current-recipe image alone.
        quiet = shared_stack.deploy()
        assert quiet.returncode == 0, quiet.output[-3000:]
        assert quiet.changed == 0, quiet.changed_operations()
        assert shared_stack.inspect()["Id"] == before["Id"]

        update = shared_stack.deploy("--data", "pgsteady_refresh_image=1")
        assert update.returncode == 0, update.output[-4000:]
        changed = update.changed_operations()
        assert any(f"Build {recipe.tag} " in name for name in changed), changed

        after = shared_stack.inspect()
        fresh = _image_id(recipe.tag)
        assert fresh != stale
        assert _image_id(alias) == fresh
        assert after["Image"] == fresh and after["Id"] != before["Id"]
        labels = json.loads(
            docker("image", "inspect", "--format", "{{json .Config.Labels}}", fresh).stdout
        )
        assert labels[PACKAGES_LABEL] != "0" * 64
        shared_stack.wait_healthy()
        assert shared_stack.psql("SELECT x FROM kept_across_update", db="app") == "42"

        again = shared_stack.deploy()
        assert again.returncode == 0, again.output[-3000:]
        assert again.changed == 0, again.changed_operations()
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):  # keep a failure's own error
            shared_stack.psql("DROP TABLE IF EXISTS kept_across_update", db="app")
        docker("rmi", stale, check=False)
