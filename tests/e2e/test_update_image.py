"""`make update-image` end to end: newer packages reach a converged host on purpose.

The host runs an image whose recorded package versions are stale (the present image with
its package digest label replaced, so its contents still work). A deploy with
``--data pgsteady_refresh_image=1`` (what `make update-image` runs) rebuilds from the
signed suite + security suite, sees the packages changed, moves the tags and recreates
the container on the new image with the data kept. A normal deploy afterwards changes
nothing: converges never rebuild.
"""

from __future__ import annotations

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


def test_update_image_rolls_the_container_onto_newer_packages(deployed: Stack) -> None:
    recipe = debian_recipe(17)
    alias = f"pgsteady/{deployed.name}-postgres:17"
    deployed.psql("CREATE TABLE kept_across_update AS SELECT 42 AS x", db="app")

    stale = _stale_copy(recipe.tag)
    try:
        docker("tag", stale, recipe.tag)
        docker("tag", stale, alias)
        ctl = deployed.app_dir / "bin" / "pgsteady-ctl"
        up = subprocess.run([str(ctl), "up"], capture_output=True, text=True, check=False)
        assert up.returncode == 0, up.stdout + up.stderr
        before = deployed.inspect()
        assert before["Image"] == stale

        # A normal converge leaves the stale-but-current-recipe image alone.
        quiet = deployed.deploy()
        assert quiet.returncode == 0, quiet.output[-3000:]
        assert quiet.changed == 0, quiet.changed_operations()
        assert deployed.inspect()["Id"] == before["Id"]

        update = deployed.deploy("--data", "pgsteady_refresh_image=1")
        assert update.returncode == 0, update.output[-4000:]
        changed = update.changed_operations()
        assert any(f"Build {recipe.tag} " in name for name in changed), changed

        after = deployed.inspect()
        fresh = _image_id(recipe.tag)
        assert fresh != stale
        assert _image_id(alias) == fresh
        assert after["Image"] == fresh and after["Id"] != before["Id"]
        labels = json.loads(
            docker("image", "inspect", "--format", "{{json .Config.Labels}}", fresh).stdout
        )
        assert labels[PACKAGES_LABEL] != "0" * 64
        deployed.wait_healthy()
        assert deployed.psql("SELECT x FROM kept_across_update", db="app") == "42"

        again = deployed.deploy()
        assert again.returncode == 0, again.output[-3000:]
        assert again.changed == 0, again.changed_operations()
    finally:
        docker("rmi", stale, check=False)
