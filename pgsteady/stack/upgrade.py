"""Major version upgrade of a single host: when it is asked for, when it may run.

The upgrade dumps the older major's volume (``postgres_upgrade_from_volume``, served by
the older image with no network while it is dumped) and restores the dump into a new
volume (``postgres_data_volume``) with the new image's restore-on-empty. The older volume
is never the target of a write of the upgrade: the way back is to point the inventory
at it again (docs/operations.md, "Major version upgrade").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pgsteady.settings import Settings

#: app_dir/state/<this>.<volume> exists while the upgrade into <volume> is not verified:
#: a deploy refuses to serve such a volume and an upgrade run starts it again from empty.
#: It lives in root's state dir, not in the volume: the server's uid can write the volume.
INCOMPLETE_MARKER = "upgrade-major-incomplete"


def incomplete_marker(volume: str) -> str:
    """The name, in app_dir/state, of the marker of an unverified upgrade into ``volume``."""
    return f"{INCOMPLETE_MARKER}.{volume}"


#: A file of app_dir/state from the stanza-upgrade until the new major's first full
#: pgBackRest backups are taken: a deploy that failed before them takes them on its rerun.
PGBACKREST_PENDING = "upgrade-major-pgbackrest-pending"


@dataclass(frozen=True)
class VolumeState:
    """What the host reports about the data volume and the volume upgraded from."""

    data_version: int | None
    data_incomplete: bool
    from_version: int | None


def upgrade_checks(s: Settings) -> list[str]:
    """Settings-only rules of the upgrade keys; empty when all hold."""
    src = s.postgres_upgrade_from_volume
    if src is None:
        return []
    errors = []
    if src == s.data_volume:
        errors.append(
            f"postgres_upgrade_from_volume = {src!r}: is the data volume itself; the upgrade "
            "restores into a NEW volume: set postgres_data_volume to a new name "
            f"(e.g. {s.compose_project}_pgdata{s.postgres_version})"
        )
    if s.postgres_image_source != "debian":
        errors.append(
            f"postgres_upgrade_from_volume = {src!r}: needs postgres_image_source = 'debian' "
            f"(got {s.postgres_image_source!r}); the new volume is filled by the Debian-built "
            "image's restore-on-empty"
        )
    return errors


def upgrade_needed(s: Settings, v: VolumeState) -> bool:
    """True when this deploy must run the upgrade (the checks of :func:`refusals` passed)."""
    return (
        s.postgres_upgrade_from_volume is not None
        and v.from_version is not None
        and (v.data_version is None or v.data_incomplete)
    )


def refusals(s: Settings, v: VolumeState) -> list[str]:
    """Why the stack may not start on these volumes; empty when it may."""
    vol, src = s.data_volume, s.postgres_upgrade_from_volume
    if v.data_incomplete and src is None:
        return [
            f"the data volume {vol} holds an unfinished major upgrade (marker "
            f"{s.layout.state}/{incomplete_marker(vol)}); set postgres_upgrade_from_volume "
            "to run it again, or point "
            "postgres_data_volume and postgres_version back at the old volume (rollback, "
            "docs/operations.md, 'Major version upgrade')"
        ]
    upgrading = upgrade_needed(s, v)
    if v.data_version is not None and v.data_version != s.postgres_version and not upgrading:
        return [
            f"the data volume {vol} holds a Postgres {v.data_version} cluster; "
            f"postgres_version={s.postgres_version} cannot run on it: set "
            f"postgres_version={v.data_version}, or upgrade it (docs/operations.md, "
            "'Major version upgrade')"
        ]
    if src is None or (v.data_version == s.postgres_version and not v.data_incomplete):
        return []  # no upgrade asked for, or it is done (the old volume may be gone)
    if v.from_version is None:
        return [
            f"postgres_upgrade_from_volume = {src!r}: holds no Postgres cluster (a volume "
            "name of `docker volume ls`, the one the old stack ran on)"
        ]
    if v.from_version >= s.postgres_version:
        return [
            f"postgres_upgrade_from_volume = {src!r}: holds Postgres {v.from_version}, not "
            f"older than postgres_version={s.postgres_version}; an upgrade goes to a newer major"
        ]
    return []
