"""image: the running server is the newest minor release its image source offers.

Minor releases and security updates arrive on purpose (``make update-image``); this
check says when one is waiting and how far the running server is behind it. That the
container runs the image behind the alias is container/image.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from pgsteady.stack.apt_candidate import collect
from pgsteady.stack.image import PACKAGE_LABEL, minor_releases_behind, upstream_version
from pgsteady.verify import Fixes, VerifyContext, check

if TYPE_CHECKING:
    from conftest import Host


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


def test_minor_version_current(
    on: Host, pg: Host, container: dict[str, Any], ctx: VerifyContext, fixes: Fixes
) -> None:
    """The running server is the newest minor release its image source offers (read with
    apt in a throwaway container of the running image, started by the driver before the
    suite: :mod:`pgsteady.stack.apt_candidate`)."""
    running = pg.value("SHOW server_version")
    image = on.inspect("image", container["Image"]) or {}
    packaged = _package_version(image)
    found = collect(ctx.apt_candidate_file)
    available, error = found["candidate"], found["error"]
    s = ctx.settings
    if found["image"] and found["image"] != container["Image"]:
        pytest.skip(f"{s.container_name} changed its image while verify ran; run it again")
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
