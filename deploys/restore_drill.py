"""Prove the newest backup restores: `make restore-drill`.

Restores it into a scratch database, compares every table's row count with the counts
recorded at backup time, drops the scratch database and reports the duration.
"""

import shlex

from pyinfra.operations import server

from pgsteady.backup.tool_config import tool_argv
from tasks.settings import load_database_settings

settings = load_database_settings()
if settings is not None:
    server.shell(
        name=f"Restore drill on {settings.container_name}",
        commands=[shlex.join(tool_argv(settings, "drill"))],
    )
