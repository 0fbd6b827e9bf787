"""Where pgsteady puts things: on the host (under app_dir) and inside the containers.

Host paths come from :class:`HostLayout` (``Settings.layout``); container paths are
the constants below, so a mount is spelled in one place.
"""

from __future__ import annotations

from dataclasses import dataclass

# --- inside the Postgres container ---------------------------------------------------
#: postgresql.conf and pg_hba.conf (app_dir/config, read-only).
CONFIG_MOUNT = "/etc/pgsteady"
#: The data volume; the cluster is one level down so that the volume root stays clean.
DATA_MOUNT = "/var/lib/postgresql/data"
PGDATA = f"{DATA_MOUNT}/pgdata"
#: app_dir/backups, read-only, only with postgres_restore_on_empty.
BACKUP_MOUNT = "/backups"
#: app_dir/init: the image's entrypoint runs it on an empty data directory.
INIT_MOUNT = "/docker-entrypoint-initdb.d"
#: Compose secrets: app_dir/secrets/NAME is mounted at SECRETS_MOUNT/NAME.
SECRETS_MOUNT = "/run/secrets"
#: app_dir/tls (certificates, read-only) and its private key, mounted apart.
TLS_MOUNT = "/etc/pgsteady-tls"
KEY_MOUNT = "/etc/pgsteady-tls-key/server.key"


def secret_mount(name: str) -> str:
    """Where the container reads the secret ``name`` (a file of app_dir/secrets)."""
    return f"{SECRETS_MOUNT}/{name}"


@dataclass(frozen=True)
class HostLayout:
    """The host layout under app_dir, with who may read what."""

    app_dir: str
    #: The pg_dump backup directory (backup_path: app_dir/backups unless set).
    backups: str

    @property
    def compose(self) -> str:
        return f"{self.app_dir}/docker-compose.yml"

    @property
    def config(self) -> str:
        """Read by the server (root:postgres_uid 0750)."""
        return f"{self.app_dir}/config"

    @property
    def etc(self) -> str:
        """Read by root's tools only (root 0700)."""
        return f"{self.app_dir}/etc"

    @property
    def ctl_env(self) -> str:
        return f"{self.etc}/ctl.env"

    @property
    def backup_config(self) -> str:
        return f"{self.etc}/backup.json"

    @property
    def state(self) -> str:
        """Root 0700: the ctl lock, watchdog.json, verdicts."""
        return f"{self.app_dir}/state"

    @property
    def secrets(self) -> str:
        return f"{self.app_dir}/secrets"

    @property
    def init(self) -> str:
        return f"{self.app_dir}/init"

    @property
    def bin(self) -> str:
        return f"{self.app_dir}/bin"

    @property
    def image(self) -> str:
        return f"{self.app_dir}/image"

    @property
    def tls(self) -> str:
        return f"{self.app_dir}/tls"
