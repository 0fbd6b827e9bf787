"""The backup tool on the host: its code, its config and its directory."""

from __future__ import annotations

from io import StringIO
from pathlib import Path

from pyinfra.api import deploy
from pyinfra.operations import files

from pgsteady.backup_config import render_backup_config
from pgsteady.settings import Settings

REPO = Path(__file__).resolve().parent.parent
#: Stdlib-only modules the tool imports from its own directory on the host.
TOOL_MODULES = ("backup_tool.py", "restore_tool.py", "retention.py")


@deploy("Backup tool")
def install(s: Settings) -> None:
    bin_dir = s.paths["bin"]
    files.put(
        name="pgsteady-backup",
        src=str(REPO / "files" / "backup" / "pgsteady-backup"),
        dest=f"{bin_dir}/pgsteady-backup",
        mode="755",
    )
    for module in TOOL_MODULES:
        files.put(
            name=module, src=str(REPO / "pgsteady" / module), dest=f"{bin_dir}/{module}", mode="644"
        )
    files.put(
        name="backup.json",
        src=StringIO(render_backup_config(s)),
        dest=f"{s.paths['config']}/backup.json",
        user="root",
        mode="600",
    )
