"""Scheduled jobs (backups, the container watchdog) as cron.d entries or systemd timers.

One description per job, rendered either way: systemd when the host runs it, cron.d
otherwise. Pure: Settings in, file names and contents out.
"""

from __future__ import annotations

from dataclasses import dataclass

from pgsteady.backup.tool_config import tool_argv
from pgsteady.render import render
from pgsteady.settings import Settings
from pgsteady.stack.schedule_syntax import parse_schedule


@dataclass(frozen=True)
class Job:
    """A command run on a schedule as root."""

    unit: str  # cron.d file name / systemd unit name (no dots: cron skips such files)
    description: str
    schedule: str  # backup_schedule syntax: cron expression or @daily ...
    command: tuple[str, ...]
    log_tag: str
    nice: int = 10
    io_class: str = "idle"
    persistent: bool = True
    randomized_delay_sec: int = 60
    accuracy_sec: int = 0  # 0: systemd's default (1 min), fine for all but the watchdog


def watchdog_job(s: Settings) -> Job:
    """Every minute ``pgsteady-ctl watchdog --watch``: it checks, then watches Docker's
    events for 57 s, so a container Docker will not restart is started within seconds.

    The timer fires at the second (``AccuracySec=1s``: with systemd's default of a minute
    it could fire late in the minute and, since a timer skips a tick while its service
    still runs, leave the watcher's gap wide)."""
    return Job(
        unit=f"pgsteady-watchdog-{s.compose_project}",
        description=f"restart {s.container_name} if it is down",
        schedule="* * * * *",
        command=(f"{s.layout.bin}/pgsteady-ctl", "watchdog", "--watch"),
        log_tag=f"pgsteady-watchdog-{s.compose_project}",
        nice=0,
        io_class="best-effort",
        persistent=False,
        randomized_delay_sec=0,
        accuracy_sec=1,
    )


def metrics_job(s: Settings) -> Job:
    """pgsteady-metrics every minute: the textfile node-exporter serves (docs/monitoring.md)."""
    return Job(
        unit=f"pgsteady-metrics-{s.compose_project}",
        description=f"textfile metrics of {s.container_name}",
        schedule="* * * * *",
        command=(
            f"{s.layout.bin}/pgsteady-metrics",
            "--config",
            f"{s.layout.etc}/metrics.json",
        ),
        log_tag=f"pgsteady-metrics-{s.compose_project}",
        persistent=False,
        randomized_delay_sec=0,
    )


def backup_job(s: Settings) -> Job:
    return Job(
        unit=f"pgsteady-backup-{s.compose_project}",
        description=f"backup of {s.container_name}",
        schedule=s.backup_schedule,
        command=tuple(tool_argv(s, "backup")),
        log_tag=f"pgsteady-backup-{s.compose_project}",
    )


def pgbackrest_jobs(s: Settings) -> list[Job]:
    """Full and differential backups and ``pgbackrest verify`` of each repository on this
    host (present while ``pgbackrest_enabled``; the deploy removes them when it is off).

    Off-host repositories get theirs on the backup host: pgBackRest backs up where the
    repository is (pgsteady/backup/repository_host.py).
    """
    from pgsteady.backup.pgbackrest import local_repos

    ctl = f"{s.layout.bin}/pgsteady-ctl"
    jobs = []
    for n in local_repos(s):
        suffix = "" if n == 1 else f"-repo{n}"
        for kind, schedule, args in (
            ("full", s.pgbackrest_full_schedule, ("backup", "--type=full")),
            ("diff", s.pgbackrest_diff_schedule, ("backup", "--type=diff")),
            ("verify", s.pgbackrest_verify_schedule, ()),
        ):
            unit = f"pgsteady-pgbackrest-{kind}-{s.compose_project}{suffix}"
            what = "verify of pgBackRest" if kind == "verify" else f"pgBackRest {kind} backup"
            # pgbackrest verify exits 0 on a corrupt repository: pgsteady-ctl judges it.
            command = (
                (ctl, "pgbackrest-verify", str(n))
                if kind == "verify"
                else (ctl, "pgbackrest", f"--repo={n}", *args)
            )
            jobs.append(
                Job(
                    unit=unit,
                    description=f"{what} repo{n} of {s.container_name}",
                    schedule=schedule,
                    command=command,
                    log_tag=unit,
                )
            )
    return jobs


def _context(job: Job) -> dict[str, object]:
    sched = parse_schedule(job.schedule)
    return {
        "unit": job.unit,
        "description": job.description,
        "schedule_value": sched.value,
        "cron_schedule": sched.cron,
        "on_calendar": sched.on_calendar,
        "command": job.command,
        "log_tag": job.log_tag,
        "nice": job.nice,
        "io_class": job.io_class,
        "persistent": job.persistent,
        "randomized_delay_sec": job.randomized_delay_sec,
        "accuracy_sec": job.accuracy_sec,
    }


def render_cron(job: Job) -> str:
    return render("job.cron.j2", **_context(job))


def render_service(job: Job) -> str:
    return render("job.service.j2", **_context(job))


def render_timer(job: Job) -> str:
    return render("job.timer.j2", **_context(job))
