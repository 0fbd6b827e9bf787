"""Back up every inventory host now: `make backup`."""

import shlex

from pyinfra.operations import server

from pgsteady.backup.tool_config import tool_argv
from tasks.settings import load_database_settings

settings = load_database_settings()
if settings is not None:
    server.shell(
        name=f"Back up {settings.container_name} now",
        commands=[shlex.join(tool_argv(settings, "backup"))],
    )
