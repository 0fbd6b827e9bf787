"""image: the running server is the newest minor release its image source offers.

Minor releases and security updates arrive on purpose (``make update-image``); this
check says when one is waiting and how far the running server is behind it. That the
container runs the image behind the alias is container/image.
"""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING, Any

import pytest

from pgsteady.settings import Settings
from pgsteady.stack.image import PACKAGE_LABEL, minor_releases_behind, upstream_version
from pgsteady.verify import Fixes, check

if TYPE_CHECKING:
    from conftest import Host

#: The candidate is read with apt in a throwaway container of the running image.
APT_TIMEOUT_S = 180


def _update_image(fixes: Fixes) -> str:
    return f"make update-image INVENTORY={fixes.inventory}"


def _package_version(image: dict[str, Any]) -> str:
    """The postgresql-N package version an image was built with (label or PG_VERSION)."""
    config = image.get("Config") or {}
    label = (config.get("Labels") or {}).get(PACKAGE_LABEL)
    if label:
        return label
    env = dict(e.split("=", 1) for e in config.get("Env") or [] if "=" in e)
    return env.get("PG_VERSION", "")


def _available(on: Host, image_id: str, version: int) -> tuple[str, str]:
    """(candidate version of postgresql-N from the image's own apt sources, error)."""
    script = (
        "apt-get -qq update >/dev/null 2>&1 || { echo 'apt-get update failed' >&2; exit 3; }; "
        f"apt-cache policy postgresql-{version} | sed -n 's/^ *Candidate: //p'"
    )
    res = on.run(
        f"timeout {APT_TIMEOUT_S} {on.docker} run --rm --user 0 --entrypoint /bin/sh "
        f"{shlex.quote(image_id)} -c {shlex.quote(script)}"
    )
    candidate = res.stdout.strip()
    if res.rc != 0 or not candidate or candidate == "(none)":
        return "", (res.stderr.strip() or f"no candidate for postgresql-{version}")[:160]
    return candidate, ""


def test_minor_version_current(
    on: Host, pg: Host, container: dict[str, Any], s: Settings, fixes: Fixes
) -> None:
    """The running server is the newest minor release its image source offers."""
    running = pg.value("SHOW server_version")
    image = on.inspect("image", container["Image"]) or {}
    packaged = _package_version(image)
    available, error = _available(on, container["Image"], s.postgres_version)
    if not available:
        pytest.skip(f"cannot read the available postgresql-{s.postgres_version}: {error}")
    behind = minor_releases_behind(running, available)
    if behind is None:
        pytest.skip(f"cannot compare running {running!r} with available {available!r}")
    minor = ".".join(str(n) for n in upstream_version(running) or ())
    check(
        behind == 0,
        f"Postgres {minor} runs (package {packaged or 'unknown'}); {available} is available: "
        f"{behind} minor release(s) behind",
        _update_image(fixes),
    )
