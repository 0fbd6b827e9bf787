"""Point-in-time recovery from pgBackRest: `make restore-pitr TARGET_TIME=... [HOST=..]`.

TARGET_TIME is 'YYYY-MM-DD HH:MM:SS+00' (explicit offset) or 'latest'. By default the
cluster is restored side by side (container <project>-postgres-pitr on a free port of the
postgres_bind address); IN_PLACE=1 replaces the live cluster, keeping the old data
directory aside. CLEAN=1 removes the side-by-side container (`make restore-pitr-clean`).
"""

import shlex

from pyinfra import host
from pyinfra.api.exceptions import DeployError
from pyinfra.operations import server

from tasks.settings import load_database_settings

settings = load_database_settings()
if settings is not None:
    if not settings.pgbackrest_enabled:
        raise DeployError("restore-pitr needs pgbackrest_enabled = True (WAL archiving)")
    tool = f"{settings.layout.bin}/pgsteady-pitr"
    if str(host.data.get("pgsteady_clean") or "") in ("1", "true", "yes"):
        argv = [tool, "clean", "--container", settings.container_name]
        name = f"Remove the point-in-time restore of {settings.container_name}"
    else:
        target = str(host.data.get("pgsteady_target_time") or "").strip()
        if not target:
            raise DeployError("TARGET_TIME is required: 'YYYY-MM-DD HH:MM:SS+00' or 'latest'")
        public = "127.0.0.1" if host.name.startswith("@") else host.name
        argv = [
            tool, "restore", "--container", settings.container_name,
            "--dbname", settings.postgres_db, "--target-time", target, "--public-host", public,
        ]  # fmt: skip
        if str(host.data.get("pgsteady_in_place") or "") in ("1", "true", "yes"):
            argv += ["--in-place", "--ctl", f"{settings.layout.bin}/pgsteady-ctl"]
        name = f"Restore {settings.container_name} as of {target}"
    server.shell(name=name, commands=[shlex.join(argv)])
