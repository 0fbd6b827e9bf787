"""Restore a backup: `make restore [HOST=..] [BACKUP=latest|FILE] [TARGET_DB=..] [FORCE=1]`.

By default the backup is restored into a new database; restoring over an existing
database needs FORCE=1 and the tool takes a safety backup of it first.
"""

import shlex

from pyinfra import host
from pyinfra.operations import server

from pgsteady.backup.tool_config import tool_argv
from tasks.settings import load_database_settings

settings = load_database_settings()
if settings is not None:
    args = ["--backup", str(host.data.get("pgsteady_backup") or "latest")]
    if host.data.get("pgsteady_target_db"):
        args += ["--target-db", str(host.data.get("pgsteady_target_db"))]
    if str(host.data.get("pgsteady_force") or "") in ("1", "true", "yes"):
        args.append("--force")
    if host.data.get("pgsteady_jobs"):
        args += ["--jobs", str(host.data.get("pgsteady_jobs"))]
    server.shell(
        name=f"Restore into {settings.container_name}",
        commands=[shlex.join(tool_argv(settings, "restore", *args))],
    )
