"""The session-end volume check (tests/conftest.py) names a real leaked volume: a
container created with an anonymous volume and removed without ``-v`` leaves it dangling,
and the check reports exactly that one (volumes that existed before are not counted);
removed with ``-v`` it leaves nothing."""

from __future__ import annotations

import secrets

import pytest
from backup_env import docker
from debian_images import debian_image_or_skip, engine_or_skip

from tests.support import volume_leaks

pytestmark = pytest.mark.docker


def _create(image: str) -> tuple[str, set[str]]:
    """(container, its anonymous volumes) of a created, never started container: the
    ``-v /probe`` one only, since pgsteady's image declares no VOLUME (an exporter or
    pooler container of it would otherwise carry an empty one at the data directory)."""
    name = f"pgsteady-volleak-{secrets.token_hex(4)}"
    docker("create", "--name", name, "-v", "/probe", "--entrypoint", "true", image)
    names = docker("inspect", "-f", "{{range .Mounts}}{{.Name}} {{end}}", name).stdout.split()
    if len(names) != 1 or not volume_leaks.ANONYMOUS.match(names[0]):
        docker("rm", "-f", "-v", name, check=False)
        pytest.fail(f"expected the one anonymous volume of -v /probe, found {names}")
    return name, set(names)


def test_a_container_removed_without_v_is_named_and_with_v_is_not() -> None:
    image = debian_image_or_skip(engine_or_skip(), 15)
    before = volume_leaks.snapshot()
    assert before is not None
    name, volumes = _create(image)
    try:
        docker("rm", name)  # no -v: the anonymous volumes stay, dangling
        assert volumes <= set(volume_leaks.leaked(before, settle_s=1))
    finally:
        docker("rm", "-f", "-v", name, check=False)
        docker("volume", "rm", "-f", *volumes, check=False)
    assert not volumes & set(volume_leaks.leaked(before))
    name, volumes = _create(image)
    docker("rm", "-v", name)
    assert not volumes & set(volume_leaks.leaked(before))
    assert not volumes & (volume_leaks.snapshot() or set())
