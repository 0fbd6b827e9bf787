"""The backup tool's config file (app_dir/etc/backup.json, root-only), decided from Settings."""

from __future__ import annotations

import json

from pgsteady.settings import Settings
from pgsteady.units import parse_size


def backup_config(s: Settings) -> dict[str, object]:
    """The tool's config; a cluster member's says so (it dumps on a streaming standby)."""
    config: dict[str, object] = {
        "container": s.container_name,
        "databases": [s.postgres_db],
        "backup_dir": s.backup_path,
        "keep_days": s.backup_keep_days,
        "keep_weeks": s.backup_keep_weeks,
        "keep_months": s.backup_keep_months,
        "on_failure_command": s.backup_on_failure_command,
        "docker": "docker",
        "compose_project": s.compose_project,
    }
    if s.postgres_cluster_name is not None:
        config["cluster"] = True
        config["max_replay_gap"] = parse_size(s.postgres_replica_max_lag)
    return config


def tool_argv(s: Settings, subcommand: str, *args: str) -> list[str]:
    """The command line of the backup tool on the host."""
    return [
        "/usr/bin/python3",
        f"{s.layout.bin}/pgsteady-backup",
        subcommand,
        "--config",
        s.layout.backup_config,
        *args,
    ]


def render_backup_config(s: Settings) -> str:
    return json.dumps(backup_config(s), indent=2, sort_keys=True) + "\n"
