"""The backup tool on the host: its code and its config, root-owned (root runs them)."""

from __future__ import annotations

from io import StringIO
from pathlib import Path

from pyinfra.api import deploy
from pyinfra.operations import files

from pgsteady.backup_config import render_backup_config
from pgsteady.hostfiles import TOOL_MODULES
from pgsteady.settings import Settings

REPO = Path(__file__).resolve().parent.parent


@deploy("Backup tool")
def install(s: Settings) -> None:
    bin_dir = s.paths["bin"]
    files.put(
        name="pgsteady-backup",
        src=str(REPO / "files" / "backup" / "pgsteady-backup"),
        dest=f"{bin_dir}/pgsteady-backup",
        user="root",
        group="root",
        mode="755",
    )
    for module in TOOL_MODULES:
        files.put(
            name=module,
            src=str(REPO / "pgsteady" / module),
            dest=f"{bin_dir}/{module}",
            user="root",
            group="root",
            mode="644",
        )
    # Its on_failure_command and docker keys are run by root: root-only, in etc/ (0700).
    files.put(
        name="backup.json",
        src=StringIO(render_backup_config(s)),
        dest=s.paths["backup_config"],
        user="root",
        group="root",
        mode="600",
    )
