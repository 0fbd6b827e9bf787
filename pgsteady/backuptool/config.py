"""The tool's JSON config (APP_DIR/etc/backup.json), validated as a whole."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from . import retention
from .errors import BackupError
from .layout import GLOBALS


@dataclass
class Config:
    """The JSON config the deploy writes to APP_DIR/etc/backup.json.

    Required: ``container`` (name), ``databases`` (list of names), ``backup_dir`` (host
    path). Optional: ``keep_days`` (>= 1), ``keep_weeks``, ``keep_months`` (>= 0; 0 turns
    the tier off), ``keep_last_hours`` (>= 1), ``on_failure_command`` (shell command, run
    with PGSTEADY_* variables describing the failure), ``docker`` (client path),
    ``compose_project`` (for messages), ``verify`` ("full": pg_restore reads the whole
    archive, or "list": only its table of contents), ``lock_timeout`` (seconds to wait
    for a concurrent run), ``cluster`` (true on a cluster member: dump on a streaming
    standby, the primary only when none streams; pgsteady.backuptool.source),
    ``max_replay_gap`` (bytes of WAL a dumping standby may have received but not replayed;
    null: no limit). Unknown keys are errors.
    """

    container: str
    databases: list[str]
    backup_dir: str
    keep_days: int = 7
    keep_weeks: int = 4
    keep_months: int = 6
    keep_last_hours: int = 24
    on_failure_command: str | None = None
    docker: str = "docker"
    compose_project: str = "pgsteady"
    verify: str = "full"
    lock_timeout: int = 1800
    cluster: bool = False
    max_replay_gap: int | None = None
    policy: retention.Policy = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.policy = retention.validate_policy(
            self.keep_days, self.keep_weeks, self.keep_months, self.keep_last_hours, prefix=""
        )


_REQUIRED = ("container", "databases", "backup_dir")


def config_from_dict(data: dict) -> Config:
    """Validate a config mapping; every problem is reported in one BackupError."""
    if not isinstance(data, dict):
        raise BackupError("config: expected a JSON object")
    known = set(Config.__dataclass_fields__) - {"policy"}
    errors = [
        f"{key}: unknown key (known: {', '.join(sorted(known))})"
        for key in data
        if key not in known
    ]
    errors += [f"{key}: missing" for key in _REQUIRED if key not in data]
    dbs = data.get("databases")
    if "databases" in data and (
        not isinstance(dbs, list)
        or not dbs
        or not all(isinstance(d, str) and d and "/" not in d and d != GLOBALS for d in dbs)
    ):
        errors.append(f"databases: {dbs!r}; expected a non-empty list of database names")
    for key in ("container", "backup_dir", "docker", "compose_project"):
        if key in data and (not isinstance(data[key], str) or not data[key]):
            errors.append(f"{key}: {data[key]!r}; expected a non-empty string")
    if data.get("verify", "full") not in ("list", "full"):
        errors.append(f"verify: {data['verify']!r}; expected 'list' or 'full'")
    timeout = data.get("lock_timeout", 0)
    if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout < 0:
        errors.append(f"lock_timeout: {timeout!r}; expected an integer >= 0 (seconds)")
    if not isinstance(data.get("cluster", False), bool):
        errors.append(f"cluster: {data['cluster']!r}; expected true or false")
    gap = data.get("max_replay_gap")
    if gap is not None and (isinstance(gap, bool) or not isinstance(gap, int) or gap < 0):
        errors.append(f"max_replay_gap: {gap!r}; expected an integer >= 0 (bytes) or null")
    command = data.get("on_failure_command")
    if command is not None and not isinstance(command, str):
        errors.append(f"on_failure_command: {command!r}; expected a string or null")
    keeps = ("keep_days", "keep_weeks", "keep_months", "keep_last_hours")
    try:
        retention.validate_policy(**{k: data[k] for k in keeps if k in data}, prefix="")
    except ValueError as exc:
        errors.append(str(exc))
    if errors:
        raise BackupError("invalid config: " + "; ".join(errors))
    try:
        return Config(**data)
    except (TypeError, ValueError) as exc:
        raise BackupError(f"invalid config: {exc}") from None


def load_config(path: str) -> Config:
    """Read and validate the JSON config at ``path``."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError) as exc:
        raise BackupError(f"cannot read config {path}: {exc}") from None
    return config_from_dict(data)
