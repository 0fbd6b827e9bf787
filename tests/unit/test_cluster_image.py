"""The cluster flavour of pgsteady's Debian image (issue 15, M2): Patroni, etcd and HAProxy
join debootstrap's --include and the recipe hash; a single host's recipe is computed as
it always was."""

from __future__ import annotations

import hashlib
import subprocess
from typing import Any

import pytest

from pgsteady.settings import HostFacts, Settings, build_settings
from pgsteady.stack.image import CLUSTER_PACKAGES, debian_recipe, shipped_files
from tasks import image
from tests.support.pyinfra_plan import plan

MIRROR = "http://mirror.invalid/debian"
SOURCES = {"list": [f"deb {MIRROR} trixie main\ndeb {MIRROR}-security trixie-security main\n"]}
SOURCES["deb822"] = []


def four_part_hash(version: int, suite: str, script: bytes, entrypoint: bytes) -> str:
    """The recipe hash as main computed it before clusters (version, suite, both files)."""
    digest = hashlib.sha256(b"pgsteady-debian-image/1\0")
    for part in (str(version).encode(), suite.encode(), script, entrypoint):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


@pytest.mark.parametrize("version", [15, 17])
def test_a_single_host_keeps_the_recipe_formula_and_the_cluster_flavour_differs(
    version: int,
) -> None:
    files = shipped_files()
    single = debian_recipe(version)
    expected = four_part_hash(
        version, single.suite, files.build_script.read_bytes(), files.entrypoint.read_bytes()
    )
    assert single.recipe_hash == expected
    cluster = debian_recipe(version, CLUSTER_PACKAGES)
    assert cluster.recipe_hash != single.recipe_hash and cluster.tag != single.tag
    assert debian_recipe(version, CLUSTER_PACKAGES[:-1]).recipe_hash != cluster.recipe_hash


def settings(**data: Any) -> Settings:
    data = {"postgres_image_source": "auto", **data}
    return build_settings(data, HostFacts(ram_mb=4096, cpus=2, has_systemd=True), host="pg1")


def build_command(s: Settings) -> tuple[str, str]:
    def docker_inspect(kind: str, object_id: str) -> None:
        return None

    returned, p = plan(
        image.ensure, s, facts={"DockerInspect": docker_inspect, "AptSources": SOURCES}
    )
    [op] = [op for op in p.ops for meta in returned if op.meta is meta]
    return op.name, " ".join(op.commands)


def test_a_cluster_member_builds_the_cluster_flavour_from_debian() -> None:
    # even with everything that needs the Debian image off, "auto" cannot pull the
    # official image for a member: it has no Patroni
    s = settings(
        postgres_cluster_name="main",
        pgbackrest_enabled=False,
        metrics_enabled=False,
        pgbouncer_enabled=False,
        postgres_allowed_networks=["10.0.0.0/24"],
    )
    name, command = build_command(s)
    recipe = debian_recipe(s.postgres_version, CLUSTER_PACKAGES)
    assert name == f"Build {recipe.tag} from Debian {recipe.suite} packages"
    assert "PGSTEADY_EXTRA_PACKAGES='patroni python3-etcd etcd-server etcd-client haproxy' " in (
        command
    )
    assert recipe.recipe_hash in command and "docker pull" not in command


def test_a_single_host_passes_no_extra_packages() -> None:
    s = settings()
    name, command = build_command(s)
    recipe = debian_recipe(s.postgres_version)
    assert name == f"Build {recipe.tag} from Debian {recipe.suite} packages"
    assert "PGSTEADY_EXTRA_PACKAGES" not in command and recipe.recipe_hash in command


GOOD_ARGS = ["17", "trixie", MIRROR, MIRROR, "pgsteady/postgres:17-debian-0123456789ab", "a" * 64]


@pytest.mark.parametrize("extra", ["patroni *", "-patroni", "patroni;id", "Patroni", "a$(id)"])
def test_the_build_script_refuses_what_is_not_a_package_name(extra: str) -> None:
    proc = subprocess.run(
        ["sh", str(shipped_files().build_script), *GOOD_ARGS],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "PGSTEADY_EXTRA_PACKAGES": extra},
    )
    assert proc.returncode == 2, proc.stderr
    assert "PGSTEADY_EXTRA_PACKAGES" in proc.stderr
