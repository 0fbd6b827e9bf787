"""Major version upgrade of a single host, when the inventory asks for it.

``postgres_upgrade_from_volume`` names the older major's volume and
``postgres_data_volume`` a new one: while the new volume holds no verified cluster, the
converge runs ``pgsteady-ctl upgrade-major`` (files/bin/pgsteady-upgrade-major) before
it starts the stack, then checks pgBackRest and takes the new major's first full
backups. A host whose data volume is verified gets no operation from here.
"""

from __future__ import annotations

from pyinfra import host
from pyinfra.facts.files import File
from pyinfra.operations import server

from pgsteady.backup import pgbackrest
from pgsteady.settings import Settings
from pgsteady.stack.compose import INIT_SQL
from pgsteady.stack.layout import INIT_MOUNT
from pgsteady.stack.upgrade import PGBACKREST_PENDING, VolumeState, upgrade_needed
from tasks.facts import VolumePgVersion, VolumeUpgradeIncomplete


def volume_state(s: Settings) -> VolumeState:
    """The data volume's and the upgrade source's state, from host facts."""
    src = s.postgres_upgrade_from_volume
    return VolumeState(
        data_version=host.get_fact(VolumePgVersion, volume=s.data_volume),
        data_incomplete=host.get_fact(
            VolumeUpgradeIncomplete, volume=s.data_volume, state_dir=s.layout.state
        ),
        from_version=None if src is None else host.get_fact(VolumePgVersion, volume=src),
    )


def run(s: Settings) -> bool:
    """Upgrade into the new data volume when it is due; True when this run does."""
    upgrading = upgrade_needed(s, volume_state(s))
    ctl = f"{s.layout.bin}/pgsteady-ctl"
    if upgrading:
        server.shell(
            name=f"Upgrade the major version: {s.postgres_upgrade_from_volume} -> {s.data_volume} "
            f"(Postgres {s.postgres_version}), verified, then served",
            commands=[
                f"{ctl} upgrade-major {s.postgres_upgrade_from_volume}",
                # The entrypoint ran it after the restore; the converge's own copy, once more.
                f"{ctl} apply-sql {INIT_MOUNT}/{INIT_SQL}",
            ],
        )
    pending = f"{s.layout.state}/{PGBACKREST_PENDING}"
    if s.pgbackrest_enabled and (upgrading or host.get_fact(File, path=pending)):
        repos = pgbackrest.local_repos(s)
        server.shell(
            # upgrade-major ran stanza-upgrade before the new server archived anything.
            name="Check pgBackRest after a major upgrade, back up the new major in full",
            commands=[
                f"{ctl} pgbackrest check",
                *(f"{ctl} pgbackrest --repo={n} backup --type=full" for n in repos),
                *(f"{ctl} pgbackrest-verify {n}" for n in repos),
                f"rm -f {pending}",
            ],
        )
    return upgrading
