"""Scheduled jobs on the host: systemd timers where systemd runs, cron.d entries otherwise."""

from __future__ import annotations

from io import StringIO

from pyinfra.api import deploy
from pyinfra.operations import apt, files, systemd, sysvinit

from pgsteady.settings import Settings
from pgsteady.stack.jobs import (
    Job,
    backup_job,
    metrics_job,
    pgbackrest_jobs,
    render_cron,
    render_service,
    render_timer,
    watchdog_job,
)
from tasks.noop_guard import guarded_put


def _systemd_job(job: Job, present: bool) -> None:
    base = f"/etc/systemd/system/{job.unit}"
    if not present:
        systemd.service(
            name=f"Stop {job.unit}.timer", service=f"{job.unit}.timer", running=False, enabled=False
        )
        for suffix in ("service", "timer"):
            files.file(name=f"Remove {job.unit}.{suffix}", path=f"{base}.{suffix}", present=False)
        return
    service = files.put(
        name=f"Write {job.unit}.service",
        src=StringIO(render_service(job)),
        dest=f"{base}.service",
        mode="644",
    )
    timer = files.put(
        name=f"Write {job.unit}.timer",
        src=StringIO(render_timer(job)),
        dest=f"{base}.timer",
        mode="644",
    )
    systemd.service(
        name=f"Enable and start {job.unit}.timer",
        service=f"{job.unit}.timer",
        running=True,
        enabled=True,
        daemon_reload=service.will_change or timer.will_change,
    )


def _cron_job(job: Job, present: bool) -> None:
    path = f"/etc/cron.d/{job.unit}"
    if not present:
        files.file(name=f"Remove {path}", path=path, present=False)
        return
    guarded_put(
        name=f"Write {path}",
        src=StringIO(render_cron(job)),
        dest=path,
        user="root",
        group="root",
        mode="644",
    )


@deploy("Scheduled jobs")
def ensure(s: Settings) -> None:
    jobs = [(watchdog_job(s), True), (backup_job(s), s.backup_enabled)]
    jobs += [(job, s.pgbackrest_enabled) for job in pgbackrest_jobs(s)]
    jobs.append((metrics_job(s), s.metrics_enabled))
    ensure_jobs(s, jobs)


def ensure_jobs(s: Settings, jobs: list[tuple[Job, bool]]) -> None:
    """Each (job, present): a systemd timer where systemd runs, else a cron.d entry."""
    if s.host_has_systemd:
        for job, present in jobs:
            _systemd_job(job, present)
        return
    apt.packages(name="Install cron", packages=["cron"])
    sysvinit.service(name="Start and enable cron", service="cron", running=True, enabled=True)
    for job, present in jobs:
        _cron_job(job, present)
