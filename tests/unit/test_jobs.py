"""Scheduled jobs render into cron.d entries and systemd units their tools accept."""

from __future__ import annotations

import shlex
import shutil
import subprocess
from dataclasses import replace

import pytest

from pgsteady.settings import HostFacts, build_settings
from pgsteady.stack.jobs import (
    Job,
    backup_job,
    render_cron,
    render_service,
    render_timer,
    watchdog_job,
)

SYSTEMD_ANALYZE = shutil.which("systemd-analyze")


def settings(**data):
    return build_settings(data, HostFacts(ram_mb=4096, cpus=2))


def test_backup_cron_entry():
    text = render_cron(backup_job(settings(backup_schedule="@daily")))
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert lines[:3] == [
        "SHELL=/bin/sh",
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        'MAILTO=""',
    ]
    assert lines[3] == (
        "0 0 * * * root /usr/bin/python3 /opt/pgsteady/bin/pgsteady-backup backup "
        "--config /opt/pgsteady/etc/backup.json 2>&1 | logger -t pgsteady-backup-pgsteady"
    )
    assert len(lines) == 4
    assert text.endswith("\n")  # cron ignores a last line without a newline


def test_watchdog_runs_every_minute():
    job = watchdog_job(settings(app_dir="/srv/pg", compose_project="shop"))
    assert job.unit == "pgsteady-watchdog-shop"
    line = render_cron(job).splitlines()[-1]
    assert line.startswith("* * * * * root /srv/pg/bin/pgsteady-ctl watchdog --watch ")
    timer = render_timer(job)
    assert "OnCalendar=*-*-* *:*:00\n" in timer
    # At the second: a late tick would widen the gap between two minutes' watchers.
    assert "AccuracySec=1s\n" in timer
    assert "AccuracySec" not in render_timer(backup_job(settings()))


def test_cron_entry_quotes_odd_paths():
    job = replace(backup_job(settings()), command=("/srv/my pg/100%/bin/tool", "backup"))
    line = render_cron(job).splitlines()[-1]
    fields = line.split(" ", 6)
    assert fields[:6] == ["15", "2", "*", "*", "*", "root"]
    assert "%" not in fields[6].replace("\\%", "")  # cron turns a bare % into a newline
    command = fields[6].replace("\\%", "%")
    assert shlex.split(command)[:2] == ["/srv/my pg/100%/bin/tool", "backup"]
    subprocess.run(["sh", "-n", "-c", command], check=True)


def test_timer_renders_every_on_calendar():
    text = render_timer(backup_job(settings(backup_schedule="0 3 1 * sun")))
    assert "OnCalendar=*-*-01 03:00:00\nOnCalendar=Sun *-*-* 03:00:00\n" in text
    assert "Persistent=true\n" in text
    assert "RandomizedDelaySec=60\n" in text
    assert "Unit=pgsteady-backup-pgsteady.service\n" in text
    assert "WantedBy=timers.target" in text


def test_service_quotes_exec_start():
    job = replace(backup_job(settings()), command=("/srv/my pg/100%/tool", "backup"))
    text = render_service(job)
    assert 'ExecStart="/srv/my pg/100%%/tool" "backup"\n' in text
    for line in ("Type=oneshot", "Nice=10", "IOSchedulingClass=idle"):
        assert f"\n{line}\n" in text


@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed")
@pytest.mark.parametrize("value", ["15 2 * * *", "@weekly", "0 3 1 * sun", "*/30 9-17 * * 1-5"])
@pytest.mark.parametrize("make", [backup_job, watchdog_job])
def test_systemd_analyze_verify_accepts_units(tmp_path, value, make):
    job: Job = make(settings(backup_schedule=value))
    service = tmp_path / f"{job.unit}.service"
    timer = tmp_path / f"{job.unit}.timer"
    service.write_text(render_service(job))
    timer.write_text(render_timer(job))
    # verify checks that ExecStart's binary exists: point it at one that does.
    service.write_text(service.read_text().replace(job.command[0], "/bin/true"))
    proc = subprocess.run(
        [SYSTEMD_ANALYZE, "verify", "--man=no", str(service), str(timer)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert job.unit not in proc.stderr, proc.stderr  # no warnings about our units
