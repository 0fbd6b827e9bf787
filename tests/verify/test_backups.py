"""backups: scheduled, recent, intact, pruned as configured, with room for the next one."""

from __future__ import annotations

import json
import shlex
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pytest

from pgsteady.backup.tool_config import render_backup_config
from pgsteady.backuptool.layout import DUMP_SUFFIX, GLOBALS, GLOBALS_SUFFIX, STATUS_FILE
from pgsteady.backuptool.retention import parse_stamp
from pgsteady.settings import Settings
from pgsteady.stack.jobs import backup_job, render_cron, render_service, render_timer
from pgsteady.verify import Fixes, backup_deadline, check, human_duration

if TYPE_CHECKING:
    from conftest import Host

TIERS = {
    "daily": "backup_keep_days",
    "weekly": "backup_keep_weeks",
    "monthly": "backup_keep_months",
}


def _tool(s: Settings, sub: str) -> str:
    return f"python3 {s.layout.bin}/pgsteady-backup {sub} --config {s.layout.backup_config}"


def _backup_now(fixes: Fixes, s: Settings) -> str:
    return fixes.on_host(_tool(s, "backup"))


@pytest.fixture(scope="module")
def enabled(s: Settings) -> None:
    if not s.backup_enabled:
        pytest.skip("backup_enabled is off for this host")


@pytest.fixture(scope="module")
def status(on: Host, s: Settings, enabled: None) -> dict[str, Any]:
    text = on.read(f"{s.backup_path}/{STATUS_FILE}")
    try:
        return json.loads(text) if text else {}
    except ValueError:
        return {}


def test_backup_dir_private(on: Host, s: Settings, fixes: Fixes) -> None:
    """First: `pgsteady-backup verify` (below) silently resets the mode to 0700."""
    path = s.backup_path
    got = on.stat(path)
    check(
        got is not None and got[0] == 0 and got[2] == 0o700,
        f"{path} is {'missing' if got is None else f'{got[0]}:{got[1]} {got[2]:04o}'}; "
        "must be root-owned 0700",
        fixes.on_host(f"chown root:root {path} && chmod 700 {path}"),
    )


def test_scheduler_installed(on: Host, s: Settings) -> None:
    """The backup job as the settings render it: cron.d file or systemd timer (or absent)."""
    job = backup_job(s)
    if s.host_has_systemd:
        base = f"/etc/systemd/system/{job.unit}"
        if not s.backup_enabled:
            check(on.read(f"{base}.timer") is None, f"{base}.timer exists; backups are off")
            return
        check(on.read(f"{base}.service") == render_service(job), f"{base}.service differs")
        check(on.read(f"{base}.timer") == render_timer(job), f"{base}.timer differs")
        res = on.run(
            f"systemctl is-enabled {job.unit}.timer && systemctl is-active {job.unit}.timer"
        )
        check(res.rc == 0, f"{job.unit}.timer is not enabled and active")
        return
    path = f"/etc/cron.d/{job.unit}"
    if not s.backup_enabled:
        check(on.read(path) is None, f"{path} exists although backup_enabled is off")
        return
    check(on.read(path) == render_cron(job), f"{path} is missing or differs from the settings")
    check(on.stat(path) == (0, 0, 0o644), f"{path} must be root:root 0644 or cron ignores it")


def test_config_matches(on: Host, s: Settings) -> None:
    path = s.layout.backup_config
    check(on.read(path) == render_backup_config(s), f"{path} is missing or differs from settings")


def _host_now(on: Host) -> datetime:
    return datetime.fromtimestamp(int(on.out("date +%s")), tz=UTC)


def test_last_success_recent(on: Host, s: Settings, fixes: Fixes, status: dict[str, Any]) -> None:
    deadline = backup_deadline(s.backup_schedule)
    check(deadline is not None, f"backup_schedule {s.backup_schedule!r} never runs", fixes.deploy)
    assert deadline is not None
    now = _host_now(on)
    run = status.get("last_run") or {}
    if (
        run.get("skipped")
        and run.get("time")
        and now - datetime.fromisoformat(run["time"]) <= deadline
    ):
        # a cluster member whose last run left the dump to a streaming standby
        pytest.skip(f"the last run ({run['time']}) dumped elsewhere: {run['skipped']}")
    last = (status.get("last_success") or {}).get("time")
    if not last:
        # The first converge writes the superuser's secret, and nothing rewrites it.
        first = on.run(f"stat -c %Y {s.layout.secrets}/postgres_password").stdout.strip()
        check(first, "no backup, and the host was never deployed", fixes.deploy)
        deployed = datetime.fromtimestamp(int(first), tz=now.tzinfo)
        age = now - deployed
        if age <= deadline:
            pytest.skip(
                f"no backup yet; deployed {human_duration(age)} ago, the first is due within "
                f"{human_duration(deadline - age)} (schedule {s.backup_schedule!r})"
            )
        check(
            False,
            f"no successful backup since the deploy {human_duration(age)} ago",
            _backup_now(fixes, s),
        )
    age = now - datetime.fromisoformat(last)
    check(
        age <= deadline,
        f"last successful backup {human_duration(age)} ago ({last}); schedule "
        f"{s.backup_schedule!r} allows {human_duration(deadline)} incl. grace",
        _backup_now(fixes, s),
    )


def test_last_run_ok(s: Settings, fixes: Fixes, status: dict[str, Any]) -> None:
    run = status.get("last_run")
    if not run:
        pytest.skip("no backup has run yet")
    error = (status.get("last_error") or {}).get("message", "")
    check(
        run.get("ok"),
        f"the last backup run ({run.get('time')}) failed: {error[:160]}",
        _backup_now(fixes, s),
    )


def _has_backups(on: Host, s: Settings) -> bool:
    return bool(on.run(f"ls -A {shlex.quote(s.backup_path + '/last')}").stdout.strip())


def test_newest_backup_verifies(on: Host, s: Settings, fixes: Fixes, enabled: None) -> None:
    if not _has_backups(on, s):
        pytest.skip(f"no backup in {s.backup_path}/last yet")
    res = on.run(_tool(s, "verify"))
    lines = [line for line in (res.stderr + res.stdout).splitlines() if line.strip()]
    problem = next((line for line in lines if "mismatch" in line or "error" in line.lower()), "")
    check(
        res.rc == 0,
        f"the newest backup fails its sha256 check: {(problem or lines[-1:] or [''])[0][:200]}",
        _backup_now(fixes, s) + "  (then investigate the corrupt file)",
    )


def test_retention(on: Host, s: Settings, fixes: Fixes, enabled: None) -> None:
    """No tier holds more backups of a database than keep_* allows."""
    too_many = []
    for tier, key in TIERS.items():
        keep = getattr(s, key)
        names = on.run(f"ls -A {shlex.quote(f'{s.backup_path}/{tier}')}").stdout.split()
        for db, suffix in ((s.postgres_db, DUMP_SUFFIX), (GLOBALS, GLOBALS_SUFFIX)):
            count = sum(parse_stamp(tier, n, db, suffix) is not None for n in names)
            if count > keep:
                too_many.append(f"{tier}: {count} of {db} > {key}={keep}")
    check(not too_many, f"retention not applied: {'; '.join(too_many)}", _backup_now(fixes, s))


@pytest.mark.fix("free space on the backup filesystem, or lower backup_keep_*")
def test_space_for_next_backup(on: Host, s: Settings, status: dict[str, Any]) -> None:
    size = (status.get("last_success") or {}).get("size_bytes")
    if not size:
        pytest.skip("no backup yet to size the next one")
    free = on.free_bytes(s.backup_path)
    check(
        free >= 2 * size,
        f"{free / 1024**2:.0f} MB free on {s.backup_path}; 2x the newest backup "
        f"({size / 1024**2:.1f} MB) is needed",
    )
