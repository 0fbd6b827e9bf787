"""tasks/image.py with ``postgres_image_source = "auto"``, facts in and operations out.

The task runs without a host (tests.support.pyinfra_plan). Its facts are the images
present (``docker image inspect``) and the host's apt sources; the output is which
source it chose: the registry, a Debian build, the registry with the build as fallback,
or nothing because the image behind the alias is current. The operations it returns are
the ones the stack task waits on to recreate the container.
"""

from __future__ import annotations

from typing import Any

import pytest

from pgsteady.settings import HostFacts, Settings, build_settings
from pgsteady.stack.image import RECIPE_LABEL, SUITES, debian_recipe
from tasks import image
from tests.support.pyinfra_plan import Plan, plan

#: Settings that need pgsteady's Debian-built image (its pgBackRest, its exporters).
NEEDS_DEBIAN = [k for k in ("pgbackrest_enabled", "metrics_enabled") if k in Settings.model_fields]
MIRROR = "http://mirror.invalid/debian"
SECURITY = "http://mirror.invalid/debian-security"
DEBIAN_SOURCES = {
    "list": [f"deb {MIRROR} trixie main\ndeb {SECURITY} trixie-security main\n"],
    "deb822": [],
}
NO_DEBIAN_SOURCES = {"list": ["deb http://mirror.invalid/ubuntu noble main\n"], "deb822": []}
PREREQUISITES = "Install debootstrap and the Debian archive keyring"


def settings(**data: Any) -> Settings:
    """Source auto; nothing that needs the Debian image unless ``data`` says so."""
    data = {"postgres_image_source": "auto", **{k: False for k in NEEDS_DEBIAN}, **data}
    return build_settings(data, HostFacts(ram_mb=4096, cpus=2, has_systemd=True), host="db1")


def debian_labelled(s: Settings) -> dict:
    labels = {RECIPE_LABEL: debian_recipe(s.postgres_version).recipe_hash}
    return {"Id": "sha256:built", "Config": {"Labels": labels}}


def image_plan(
    s: Settings,
    images: dict[str, dict] | None = None,
    sources: dict = DEBIAN_SOURCES,
    data: dict | None = None,
) -> tuple[list[str], Plan]:
    """(names of the returned operations, the plan) for ``images`` present by tag."""
    present = images or {}

    def docker_inspect(kind: str, object_id: str) -> dict | None:
        assert kind == "image"
        return present.get(object_id)

    returned, p = plan(
        image.ensure, s, facts={"DockerInspect": docker_inspect, "AptSources": sources}, data=data
    )
    names = [op.name for op in p.ops for meta in returned if op.meta is meta]
    return names, p


def shell_commands(p: Plan, name: str) -> str:
    """The command text of a planned server.shell (from its pyinfra arguments)."""
    op = p.op(name)
    assert op.operation == "server.shell"
    return " ".join(op.commands)


def test_nothing_present_pulls_and_falls_back_to_a_debian_build() -> None:
    s = settings()
    returned, p = image_plan(s)
    assert returned == [f"Pull {s.registry_image}, else build it from Debian packages"]
    command = shell_commands(p, returned[0])
    assert command.index(f"docker pull {s.registry_image}") < command.index("build-debian-image.sh")
    assert f"'{MIRROR}' '{SECURITY}'" in command  # the mirrors come from the host's sources
    assert PREREQUISITES in p.names


@pytest.mark.parametrize("needs", NEEDS_DEBIAN)
def test_a_setting_that_needs_the_debian_image_builds_it(needs: str) -> None:
    s = settings(**{needs: True})
    returned, p = image_plan(s)
    recipe = debian_recipe(s.postgres_version)
    assert returned == [f"Build {recipe.tag} from Debian {recipe.suite} packages"]
    assert "docker pull" not in shell_commands(p, returned[0])


@pytest.mark.parametrize("needs", NEEDS_DEBIAN)
def test_a_registry_image_does_not_satisfy_a_setting_that_needs_debian(needs: str) -> None:
    s = settings(**{needs: True})
    same = {"Id": "sha256:registry"}
    returned, _ = image_plan(s, {s.image_alias: same, s.registry_image: same})
    assert len(returned) == 1 and returned[0].startswith("Build ")


def test_no_debian_mirror_in_the_sources_means_registry_only() -> None:
    s = settings()
    returned, p = image_plan(s, sources=NO_DEBIAN_SOURCES)
    assert returned == [f"Pull {s.registry_image}"]
    assert "build-debian-image.sh" not in shell_commands(p, returned[0])
    assert PREREQUISITES not in p.names


def test_a_version_debian_does_not_package_means_registry_only() -> None:
    version = next(v for v in (16, 18, 14, 13) if v not in SUITES)
    s = settings(postgres_version=version)
    returned, _ = image_plan(s)
    assert returned == [f"Pull {s.registry_image}"]


@pytest.mark.parametrize("source", ["registry", "debian"])
def test_a_current_image_stays_whichever_source_made_it(source: str) -> None:
    s = settings()
    if source == "registry":
        images = {s.image_alias: {"Id": "sha256:r"}, s.registry_image: {"Id": "sha256:r"}}
    else:  # the registry image is absent (offline), the alias is the Debian build
        images = {s.image_alias: debian_labelled(s)}
    returned, p = image_plan(s, images)
    assert returned == []
    assert PREREQUISITES not in p.names


def test_an_alias_that_matches_neither_source_is_replaced() -> None:
    s = settings()
    images = {s.image_alias: {"Id": "sha256:old"}, s.registry_image: {"Id": "sha256:new"}}
    returned, _ = image_plan(s, images)
    assert returned == [f"Pull {s.registry_image}, else build it from Debian packages"]


def test_update_image_refreshes_a_current_image() -> None:
    s = settings()
    images = {s.image_alias: {"Id": "sha256:r"}, s.registry_image: {"Id": "sha256:r"}}
    returned, p = image_plan(s, images, data={"pgsteady_refresh_image": "1"})
    assert len(returned) == 1
    assert f"docker pull {s.registry_image} && docker tag" in shell_commands(p, returned[0])
    assert "PGSTEADY_REFRESH=1" in shell_commands(p, returned[0])
