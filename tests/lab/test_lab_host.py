"""pgsteady on lab hosts under systemd, over SSH: converge, timers, docker.service, reboot,
host loss.

A fresh lab (tests/lab/conftest.py) of a database host and a backup host (its off-host
pgBackRest repository) is deployed with `make deploy`, exactly as production hosts; the
tests run in file order and share it. The last test removes the lab and proves nothing
is left behind.
"""

from __future__ import annotations

import json
import time
from datetime import datetime

import pytest
from hostloss import Writer, lose_pgsteady_data
from report import section, write_section

from pgsteady.lab import faults
from pgsteady.lab.engine import docker
from pgsteady.lab.recipe import LAB_LABEL
from tests.lab.conftest import FULL, IMAGE_SOURCE, LAB_DATA, REPO, LabTarget, record

pytestmark = pytest.mark.timeout(1800)
ARCHIVE_TIMEOUT_S = int(LAB_DATA["pgbackrest_archive_timeout"].removesuffix("s"))

#: Figures of this module's run, for the docs' host-reboot section (make lab-chaos).
MEASURED: dict[str, list[float]] = {"reboot": [], "power-cycle": []}
CONVERGES: dict[str, float] = {}


def test_first_converge_over_ssh(lab_target: LabTarget) -> None:
    result = lab_target.make("deploy")
    assert result.returncode == 0, result.output[-4000:]
    assert f"[{lab_target.host.name}] Connected" in result.output, result.output[-2000:]
    assert result.changed > 10
    image = "Postgres image" if IMAGE_SOURCE == "debian" else "Postgres image seeded"
    record(f"first converge (Docker install + {image})", result.seconds)
    CONVERGES["first converge (Docker installed, image built)"] = result.seconds
    # The database is up and the deploy's roles exist, seen through the product's ctl.
    proc = lab_target.sql("SELECT current_database(), current_setting('server_version_num')")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().startswith("app|17"), proc.stdout


def test_second_converge_changes_nothing(lab_target: LabTarget) -> None:
    result = lab_target.make("deploy")
    assert result.returncode == 0, result.output[-4000:]
    assert result.changed == 0, result.changed_operations()
    assert result.no_change > 10
    record("second converge (0 changes)", result.seconds)
    CONVERGES["second (0 changes)"] = result.seconds


def test_deploy_enabled_docker_service_and_systemd_timers(lab_target: LabTarget) -> None:
    assert lab_target.ssh("systemctl is-system-running").stdout.strip() in ("running", "degraded")
    assert lab_target.ssh("systemctl is-enabled docker.service").stdout.strip() == "enabled"
    assert lab_target.ssh("systemctl is-active docker.service").stdout.strip() == "active"
    timers = lab_target.ssh("systemctl list-timers --all --no-legend --no-pager").stdout
    for job in ("backup", "watchdog"):
        assert f"pgsteady-{job}-{lab_target.settings.compose_project}.timer" in timers, timers
    # Under systemd there are no cron.d entries.
    assert lab_target.ssh("ls /etc/cron.d/pgsteady-* 2>/dev/null").stdout.strip() == ""


def test_make_backup_and_status_reach_the_host(lab_target: LabTarget) -> None:
    backup = lab_target.make("backup")
    assert backup.returncode == 0, backup.output[-4000:]
    listing = lab_target.ssh(f"ls {lab_target.settings.backup_path}").stdout
    assert listing.strip(), "make backup left no backup on the host"
    status = lab_target.make("status", "JSON=1", timeout=300)
    assert status.returncode == 0, status.output[-3000:]
    assert lab_target.host.name in status.output


def _reboot_and_wait(lab_target: LabTarget, kind: str) -> float:
    """Reboot (or power-cycle) the host; seconds from the command to the first query."""
    fault = faults.reboot if kind == "reboot" else faults.power_cycle
    issued = fault(lab_target.host.name)
    recovery = lab_target.wait_for_query("SELECT count(*) FROM public.lab_probe", since=issued)
    record(f"host {kind} -> first query", recovery)
    MEASURED[kind].append(recovery)
    return recovery


def test_after_a_host_reboot_postgres_serves_its_data(lab_target: LabTarget) -> None:
    setup = lab_target.sql(
        "CREATE TABLE IF NOT EXISTS public.lab_probe (id int PRIMARY KEY, note text);"
        "INSERT INTO public.lab_probe VALUES (1, 'before reboot') ON CONFLICT DO NOTHING"
    )
    assert setup.returncode == 0, setup.stderr
    start_before = lab_target.ssh("systemctl show -p ActiveEnterTimestamp docker.service").stdout
    postmaster_before = lab_target.sql("SELECT pg_postmaster_start_time()").stdout
    kinds = ["reboot"] * (3 if FULL else 1) + (["power-cycle"] * 3 if FULL else [])
    for kind in kinds:
        recovery = _reboot_and_wait(lab_target, kind)
        assert recovery < 120
    # A real reboot: docker.service started again, by systemd, on its own.
    start_after = lab_target.ssh("systemctl show -p ActiveEnterTimestamp docker.service").stdout
    assert start_after != start_before
    # ... and Postgres is a new server process, not one that survived.
    assert lab_target.sql("SELECT pg_postmaster_start_time()").stdout != postmaster_before
    proc = lab_target.sql("SELECT note FROM public.lab_probe WHERE id = 1")
    assert proc.stdout.strip() == "before reboot", proc.stdout + proc.stderr
    if FULL:
        write_section(REPO / "docs" / "reliability.md", section(MEASURED, CONVERGES))


def test_isolate_and_heal(lab_target: LabTarget) -> None:
    faults.isolate(lab_target.host.name)
    try:
        assert lab_target.ssh("true", timeout=30).returncode != 0
    finally:
        faults.heal(lab_target.host.name)
    ip = docker("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
                lab_target.host.name).stdout.strip()  # fmt: skip
    assert ip == lab_target.host.ip
    lab_target.lab.wait_ssh(lab_target.host, timeout=30)


def test_fill_disk_and_free_it(lab_target: LabTarget) -> None:
    avail = "df -B1 --output=avail /var/lib/docker | tail -n 1"
    before = int(lab_target.ssh(avail).stdout)
    size = faults.fill_disk(lab_target.host.name)
    try:
        assert size > before * 0.9
        assert int(lab_target.ssh(avail).stdout) < 1024**2
        # This machine's own disk is not the one that filled up.
        assert int(docker("exec", lab_target.host.name, "df", "-B1", "--output=avail", "/")
                   .stdout.split()[-1]) > 1024**3  # fmt: skip
    finally:
        faults.free_disk(lab_target.host.name)
    assert int(lab_target.ssh(avail).stdout) > before * 0.9


def test_stop_docker_and_start_it(lab_target: LabTarget) -> None:
    faults.stop_docker(lab_target.host.name)
    try:
        assert lab_target.ssh("systemctl is-active docker.service").stdout.strip() != "active"
        assert lab_target.sql("SELECT 1", timeout=20).returncode != 0
    finally:
        faults.start_docker(lab_target.host.name)
    started = time.monotonic()
    lab_target.wait_for_query("SELECT count(*) FROM public.lab_probe", since=started, timeout=120)


def test_backup_and_watchdog_timers_fire(lab_target: LabTarget) -> None:
    """Each timer starts its job after this test began and the job ends in success. A run
    from before (the previous test stops docker, and a backup that fires meanwhile fails)
    does not count: a rehearsal read that failed run as this test's verdict."""
    project = lab_target.settings.compose_project
    watchdog = f"pgsteady-watchdog-{project}.service"
    backup = f"pgsteady-backup-{project}.service"
    #: unit -> whether its run must have ended to count. The watchdog's job watches
    #: Docker's events for 57 s of each minute, so a run of it still going counts
    #: (systemd resets its Result and status at each start); a backup must have finished.
    must_end = {watchdog: False, backup: True}
    # systemd's start timestamps are CLOCK_MONOTONIC (µs); /proc/uptime is CLOCK_BOOTTIME,
    # never behind it: a start stamped after this instant began after it.
    since_us = int(float(lab_target.ssh("cut -d' ' -f1 /proc/uptime").stdout) * 1e6)
    show = (
        "systemctl show -p ExecMainStartTimestampMonotonic -p ExecMainStatus -p Result "
        "-p ActiveState "
    )

    def ran_since(unit: str, s: dict[str, str]) -> bool:
        """Started after ``since_us``, and ended where the unit's rule asks it."""
        started = int(s.get("ExecMainStartTimestampMonotonic") or 0)
        ended = s.get("ActiveState") in ("inactive", "failed")
        return started > since_us and (ended or not must_end[unit])

    deadline = time.monotonic() + 260  # backup: every minute + up to 60 s random delay
    state: dict[str, dict[str, str]] = {}
    while time.monotonic() < deadline:
        state = {}
        for unit in must_end:
            out = lab_target.ssh(show + unit).stdout
            state[unit] = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
        if all(ran_since(u, s) for u, s in state.items()):
            break
        time.sleep(5)
    for unit, s in state.items():
        assert ran_since(unit, s), f"{unit} did not run (to its end) after {since_us} µs: {s}"
        assert s.get("Result") == "success" and s.get("ExecMainStatus") == "0", (unit, s)
    journal = lab_target.ssh(f"journalctl -u {backup} --no-pager -o cat").stdout
    assert journal.strip(), "the backup job wrote nothing to the journal"


def _app_dsn(t: LabTarget) -> str:
    password = t.ssh(f"cat {t.settings.layout.secrets}/app_password").stdout.strip()
    assert password, "no app password on the host"
    s = t.settings
    return (f"host={t.host.ip} port={s.postgres_port} dbname={s.postgres_db} "
            f"user={s.postgres_user} password={password} sslmode=require")  # fmt: skip


def test_host_loss_restores_from_the_backup_host_within_archive_timeout(
    lab_target: LabTarget,
) -> None:
    """A writer commits every 100 ms; the database host is lost; a replacement converged
    with postgres_restore_on_empty restores from the backup host's repository. Every row
    up to the newest surviving one is there; what is lost stays within archive_timeout
    plus the push. make test loses what pgsteady keeps on the host (containers, volumes,
    app_dir); make lab-chaos destroys the whole host (root file system and Docker disk)."""
    t = lab_target
    created = t.sql(
        "CREATE TABLE public.rpo (id bigserial PRIMARY KEY, at timestamptz NOT NULL); "
        "ALTER TABLE public.rpo OWNER TO app"
    )
    assert created.returncode == 0, created.stderr
    # A start that no backup follows: only pgsteady-ctl's checkpoint after it makes
    # archive_timeout switch WAL before the first timed checkpoint (minutes later).
    restarted = t.ssh(f"docker restart {t.settings.container_name} && "
                      f"{t.settings.layout.bin}/pgsteady-ctl wait-healthy 120")  # fmt: skip
    assert restarted.returncode == 0, restarted.stderr
    writer = Writer(_app_dsn(t))
    writer.thread.start()
    time.sleep(3 * ARCHIVE_TIMEOUT_S + 5)  # several archive_timeout switches
    if FULL:
        t.lab.destroy(t.host.name)
    else:
        lose_pgsteady_data(t.host.name, t.settings.compose_project, t.settings.app_dir)
    writer.stop.set()
    writer.thread.join(30)
    assert writer.acked, writer.errors
    last_acked = writer.acked[-1]

    if FULL:  # a replacement host: same name and address, nothing on it
        t.lab.up(2, "bookworm", inventory=t.inventory, extra_data=LAB_DATA, backup_host=True)
    result = t.make("deploy", timeout=1500)
    assert result.returncode == 0, result.output[-4000:]
    what = "host" if FULL else "pgsteady's data on the host"
    record(f"{what} lost: converge + restore from the backup host", result.seconds)

    proc = t.sql("SELECT count(*), max(at) FROM public.rpo")
    assert proc.returncode == 0, proc.stderr
    count, newest = proc.stdout.strip().split("|")
    newest_at = datetime.fromisoformat(newest.replace(" ", "T"))
    survived = [a for a in writer.acked if a <= newest_at]
    assert int(count) == len(survived), (count, len(survived))  # no holes
    lost_s = (last_acked - newest_at).total_seconds()
    record(f"{what} lost: acknowledged writes lost (archive_timeout {ARCHIVE_TIMEOUT_S}s)", lost_s)
    assert lost_s <= ARCHIVE_TIMEOUT_S + 5, f"lost {lost_s:.1f} s of acknowledged writes"

    # It archives again to both repositories (the local one got its stanza back).
    info = t.ssh(f"{t.settings.layout.bin}/pgsteady-ctl pgbackrest info --output=json")
    assert '"status":{"code":0' in info.stdout.replace(" ", ""), info.stdout[-2000:]
    again = t.make("deploy", timeout=900)
    assert again.returncode == 0 and again.changed == 0, again.changed_operations()


def test_lab_down_leaves_nothing(lab_target: LabTarget) -> None:
    lab = lab_target.lab
    assert lab.down(lab_target.inventory) == []
    assert docker("ps", "-aq", "--filter", f"label={LAB_LABEL}={lab.name}").stdout.strip() == ""
    assert not lab_target.inventory.exists()
    assert json.dumps(lab.hosts()) == "[]"
