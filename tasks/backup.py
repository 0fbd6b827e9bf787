"""The backup tool on the host: its code and its config, root-owned (root runs them)."""

from __future__ import annotations

from io import BytesIO, StringIO
from pathlib import Path

from pyinfra.api import deploy

from pgsteady.backup import artifact
from pgsteady.backup.tool_config import render_backup_config
from pgsteady.settings import Settings
from tasks.noop_guard import guarded_put, guarded_remove

REPO = Path(__file__).resolve().parent.parent


@deploy("Backup tool")
def install(s: Settings) -> None:
    bin_dir = s.layout.bin
    guarded_put(
        name="Upload pgsteady-backup",
        src=str(REPO / "files" / "backup" / "pgsteady-backup"),
        dest=f"{bin_dir}/pgsteady-backup",
        user="root",
        group="root",
        mode="755",
    )
    # The package as one zip, the same bytes on every deploy (pgsteady.backup.artifact).
    guarded_put(
        name=f"Upload {artifact.ARTIFACT}",
        src=BytesIO(artifact.build()),
        dest=f"{bin_dir}/{artifact.ARTIFACT}",
        user="root",
        group="root",
        mode="644",
    )
    for old in artifact.OLD_MODULES:  # the one-file-per-module layout it replaces
        guarded_remove(name=f"Remove old {bin_dir}/{old}", path=f"{bin_dir}/{old}")
    # Its on_failure_command and docker keys are run by root: root-only, in etc/ (0700).
    guarded_put(
        name="Write backup.json",
        src=StringIO(render_backup_config(s)),
        dest=s.layout.backup_config,
        user="root",
        group="root",
        mode="600",
    )
