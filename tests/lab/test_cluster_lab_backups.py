"""A cluster keeps pgsteady's backups (issue 15 item 5, issue 16 item 4), on a lab of 3
members and 1 backup host (`make lab N=4 CLUSTER=1 BACKUP_HOST=1`): one deploy creates the
cluster's one stanza in the backup host's repository; `pgbackrest check` passes from the
leader; pgsteady-backup dumps on the streaming standbys, not the leader, and a standby's
dump restores on the leader's host; a full backup copies its files from a standby
(pgBackRest's own log names the standby's address); after a switchover under a small
writer the new primary archives, the archive has no gap across the timelines, and a
point-in-time restore (pgBackRest restore into a scratch data directory inside the backup
host's repository container, started with the image's own postgres) to a time after the
switchover holds the rows written after it and none written after the target; `make
reinit` of a replica clones it with the ``pgbackrest`` method; the leader's host loses
power under a writer through HAProxy (a failover, not a switchover), the new leader
archives on its new timeline (segments and .history file), a PITR to a time after the
first commit on the new leader holds exactly the rows committed up to the target, and the
old leader's host, booted again, rejoins on the new timeline. The lab is removed
afterwards.

Opt-in (its own make target, ``make lab-cluster-backups``): it builds the cluster image on
4 hosts, which make test's shared 3-host cluster lab does without a backup host.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import time
from collections.abc import Iterator

import pytest

from pgsteady.lab import faults
from pgsteady.lab.hosts import Lab
from pgsteady.lab.recipe import for_host, layout_data
from pgsteady.settings import Settings
from tests.lab.backup_lab import (
    HOT_STANDBY_FLOORS,
    BackupLab,
    Writer,
    access,
    app,
    archived,
    cluster,
    history_files,
    pitr,
    sql,
    wal_gaps,
)
from tests.lab.conftest import LabTarget, _prerequisites, record

DATA = {
    "compose_project": "labm4",
    "backup_schedule": "@daily",
    "pgbackrest_archive_timeout": "10s",
}
pytestmark = [
    pytest.mark.timeout(3600),
    pytest.mark.skipif(
        os.environ.get("PGSTEADY_LAB_BACKUPS") != "1",
        reason="opt-in (a 4-host lab of its own): make lab-cluster-backups",
    ),
]


@pytest.fixture(scope="module")
def lab() -> Iterator[BackupLab]:
    reason = _prerequisites()
    if reason:
        pytest.fail(f"lab prerequisites missing: {reason}")
    lab = Lab(f"pgsm4{secrets.token_hex(3)}")
    inventory = lab.dir / "inventory.py"
    try:
        hosts = lab.up(4, "bookworm", inventory=inventory, extra_data=DATA, backup_host=True,
                       cluster="lab")  # fmt: skip
        data = {**DATA, **layout_data(hosts[-1].name, "lab")}
        member = Settings(**data)
        backup = Settings(**for_host(data, backup_host=True))
        yield BackupLab(
            [LabTarget(lab, h, inventory, member) for h in hosts[:-1]],
            LabTarget(lab, hosts[-1], inventory, backup),
        )
    finally:
        lab.down(inventory)


def test_deploy_creates_the_clusters_one_stanza(lab: BackupLab) -> None:
    started = time.monotonic()
    result = lab.members[0].make("deploy", timeout=3600)
    assert result.returncode == 0, result.output[-8000:]
    record("cluster lab M4: first deploy of 3 members + backup host", time.monotonic() - started)
    info = lab.repo("info", "--output=json")
    assert info.returncode == 0, info.stderr
    (stanza,) = json.loads(info.stdout)
    assert stanza["name"] == "main" and stanza["status"]["code"] == 0, stanza
    assert [b["type"] for b in stanza["backup"]] == ["full"]  # the deploy's first backup
    lab.wait_streaming()


def test_check_passes_from_the_leader(lab: BackupLab) -> None:
    leader = lab.leader()
    ctl = f"{leader.settings.layout.bin}/pgsteady-ctl"
    out = leader.ssh(f"{ctl} pgbackrest check", timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr


def test_logical_backups_dump_on_the_streaming_standbys(lab: BackupLab) -> None:
    """Every member's pgsteady-backup run: the leader leaves the dump to the streaming
    standbys, each of them dumps; a standby's dump restores on the leader's host."""
    lab.wait_streaming()
    leader = lab.leader()
    s = leader.settings
    tool = f"python3 {s.layout.bin}/pgsteady-backup {{}} --config {s.layout.backup_config}"
    dumps = {}
    for t in lab.members:
        out = t.ssh(tool.format("backup"), timeout=600)
        assert out.returncode == 0, out.stderr[-3000:]
        status = json.loads(t.ssh(f"cat {s.backup_path}/status.json").stdout)
        if t is leader:
            assert "streaming standby" in status["last_run"]["skipped"], status
            assert "last_success" not in status, status
        else:
            assert status["last_success"]["source"] == "standby", status
            dumps[t.host.name] = status["last_success"]["databases"][s.postgres_db]["file"]
    assert len(dumps) == len(lab.members) - 1
    name, rel = next(iter(dumps.items()))
    source = next(t for t in lab.members if t.host.name == name)
    last = f"{s.backup_path}/last"
    for suffix in ("", ".sha256", ".manifest.json"):
        data = source.ssh(f"base64 -w0 {s.backup_path}/{rel}{suffix}").stdout.strip()
        put = leader.ssh(f"echo {data} | base64 -d | install -m 600 /dev/stdin "
                         f"{last}/{os.path.basename(rel)}{suffix}")  # fmt: skip
        assert put.returncode == 0, put.stderr
    restore = tool.format("restore") + f" --backup {last}/{os.path.basename(rel)} --target-db pf"
    out = leader.ssh(restore, timeout=600)
    # the copy goes again: a lone dump with no globals beside it is no backup of this host
    leader.ssh(f"rm -f {last}/{os.path.basename(rel)}*")
    assert out.returncode == 0, out.stderr[-3000:]
    assert sql(leader, "SELECT count(*) FROM pg_catalog.pg_database WHERE datname = 'pf'") == "1"
    ctl = f"{s.layout.bin}/pgsteady-ctl"
    leader.ssh(shlex.join([ctl, "psql", "-d", "postgres", "-c", "DROP DATABASE pf"]))


#: What a lab host cannot pass whatever pgsteady does: it runs no NTP client.
LAB_ENVIRONMENT = {"host/time_synchronised"}


def test_verify_checks_archiving_on_every_member_and_the_backup_host(lab: BackupLab) -> None:
    result = lab.members[0].make("verify", timeout=1800)
    fails = [line for line in result.output.splitlines() if line.startswith("FAIL ")]
    checks = {line.split("] ", 1)[1].split(":", 1)[0] for line in fails}
    assert checks <= LAB_ENVIRONMENT, "\n".join(fails)
    # the summary table: host, group, passed, failed, skipped
    passed = {
        (m[1], m[2]): int(m[3])
        for m in re.finditer(r"│ (\S+) +│ (\S+) +│ +(\d+) │ +(\d+) │", result.output)
    }
    for member in lab.members:
        assert passed.get((member.host.name, "pgbackrest"), 0) >= 5, result.output[-4000:]
    assert passed.get((lab.backup.host.name, "repository"), 0) >= 3, result.output[-4000:]
    # cluster/archiving_on_the_primary runs on the leader only
    assert sum(passed.get((m.host.name, "cluster"), 0) for m in lab.members) >= 4


def test_a_full_backup_copies_from_a_standby(lab: BackupLab) -> None:
    leader = lab.leader()
    standbys = {t.host.ip for t in lab.members} - {leader.host.ip}
    out = lab.repo("backup", "--type=full", "--log-level-console=detail", timeout=900)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr
    log = out.stdout
    assert "replay on the standby reached" in log, log[-4000:]
    sources = re.findall(r"backup file (\d+\.\d+\.\d+\.\d+):", log)
    assert sources, log[-4000:]
    from_standby = [a for a in sources if a in standbys]
    # relation files come from the standby; only what is not replicated from the primary
    assert len(from_standby) > len(sources) / 2, (set(sources), standbys)


def test_switchover_keeps_archiving_and_pitr_after_it_restores(lab: BackupLab) -> None:
    old = lab.leader()
    made = app(old, "CREATE TABLE IF NOT EXISTS m4_writes (n int PRIMARY KEY, "
                     "at timestamptz DEFAULT clock_timestamp())")  # fmt: skip
    assert made.returncode == 0, made.stderr
    floors = {k: sql(old, f"SHOW {k}") for k in HOT_STANDBY_FLOORS}
    writer = Writer(next(t for t in lab.members if t is not old))
    writer.start()
    try:
        time.sleep(5)
        # synchronous mode (a cluster's default) switches over only to the sync standby
        members = cluster(old)["members"]
        to = next((m["name"] for m in members if m["role"] == "sync_standby"), None)
        to = to or next(m["name"] for m in members if m["role"] == "replica")
        target = next(t for t in lab.members if t.host.name == to)
        access(old)
        result = old.make("switchover", f"TO={to}", timeout=600)
        # Under a heavily loaded lab the CLI's 5 s REST read can time out on POST
        # /switchover while Patroni completes it: what counts here is the new leader.
        deadline = time.monotonic() + 120
        while (new := lab.leader()) is not target and time.monotonic() < deadline:
            time.sleep(2)
        assert new is target, result.output[-4000:]
        time.sleep(8)
    finally:
        writer.stop.set()
        writer.join(60)
    assert writer.acked, "the writer got no write acknowledged"
    wal = sql(new, "SELECT pg_walfile_name(pg_current_wal_lsn())")
    timeline = int(wal[:8], 16)
    assert timeline >= 2, wal
    # the PITR target: after the switchover and the rows the writer got acknowledged
    target_time = sql(new, "SELECT clock_timestamp()")
    rows = {int(x) for x in sql(new, "SELECT n FROM public.m4_writes").split()}
    assert set(writer.acked) <= rows  # nothing acknowledged was lost in the switchover
    late = sql(new, f"SELECT count(*) FROM public.m4_writes WHERE at > "
                     f"'{target_time}'::timestamptz - interval '8 s'")  # fmt: skip
    assert int(late) > 0  # rows written on the new primary, after the switchover
    time.sleep(1.5)
    assert app(new, "INSERT INTO m4_writes(n) VALUES (-1)").returncode == 0  # after the target
    ctl = f"{new.settings.layout.bin}/pgsteady-ctl"
    check = new.ssh(f"{ctl} pgbackrest check", timeout=300)  # switches and waits for the WAL
    assert check.returncode == 0, check.stdout + check.stderr
    by_timeline = archived(lab)
    assert timeline in by_timeline, by_timeline
    gaps = wal_gaps(lab)
    assert not gaps, (sorted(gaps), {t: sorted(v) for t, v in by_timeline.items()})
    pitr(lab, target_time, rows, floors, "m4_writes")


def test_reinit_clones_a_replica_from_pgbackrest(lab: BackupLab) -> None:
    lab.wait_streaming()
    leader = lab.leader()
    replica = next(t for t in lab.members if t is not leader)
    since = replica.ssh("date -u +%Y-%m-%dT%H:%M:%S").stdout.strip()
    access(leader)
    result = leader.make("reinit", f"HOST={replica.host.name}", timeout=900)
    assert result.returncode == 0, result.output[-4000:]
    lab.wait_streaming(600)
    logs = replica.ssh(f"docker logs --since {since} {replica.settings.container_name} 2>&1")
    assert "replica has been created using pgbackrest" in logs.stdout, logs.stdout[-4000:]


def _loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def test_failover_under_writes_keeps_archiving_and_pitr_after_it_restores(
    lab: BackupLab,
) -> None:
    """Power loss of the leader's host under a writer through HAProxy: the new leader
    archives on its new timeline (segments and the .history file in the repository), a
    PITR to a time after the first commit on the new leader holds exactly the rows
    committed up to it, and the old leader's host rejoins once booted."""
    lab.wait_streaming()
    old = lab.leader()
    made = app(old, "CREATE TABLE IF NOT EXISTS m4_failover (n int PRIMARY KEY, "
                    "at timestamptz DEFAULT clock_timestamp())")  # fmt: skip
    assert made.returncode == 0, made.stderr
    floors = {k: sql(old, f"SHOW {k}") for k in HOT_STANDBY_FLOORS}
    before = int(sql(old, "SELECT pg_walfile_name(pg_current_wal_lsn())")[:8], 16)
    writer = Writer(next(t for t in lab.members if t is not old), "m4_failover")
    load = {"before": _loadavg()}
    writer.start()
    try:
        time.sleep(6)
        assert writer.acked, "the writer got nothing acknowledged before the fault"
        fault_at = faults.power_off(old.host.name)
        lab.down.add(old.host.name)
        new = lab.leader(timeout=180)
        promoted = time.monotonic() - fault_at
        deadline = time.monotonic() + 120
        while not any(t > fault_at for t in writer.acked_at.values()):
            assert time.monotonic() < deadline, "no write acknowledged after the failover"
            time.sleep(0.5)
        first_after = min(n for n, t in writer.acked_at.items() if t > fault_at)
        gap = writer.acked_at[first_after] - fault_at
        load["failover"] = _loadavg()
        time.sleep(4)  # more commits on the new leader, then the target between two writes
        writer.hold.set()
        assert writer.idle.wait(60), "the writer did not pause"
        cutoff = writer.n
        target_time = sql(new, "SELECT clock_timestamp()")
        time.sleep(1.5)
        writer.hold.clear()
        time.sleep(4)
    finally:
        writer.stop.set()
        writer.join(60)
    record(f"cluster lab M4: failover (leader host power loss), first write acked "
           f"(load {load['failover']})", gap)  # fmt: skip
    record("cluster lab M4: failover (leader host power loss), new leader running", promoted)
    timeline = int(sql(new, "SELECT pg_walfile_name(pg_current_wal_lsn())")[:8], 16)
    assert timeline > before, (before, timeline)
    live = {int(x) for x in sql(new, "SELECT n FROM public.m4_failover").split()}
    lost = set(writer.acked) - live
    assert not lost, sorted(lost)  # synchronous mode: no acknowledged commit lost
    assert first_after <= cutoff  # the target is after a commit on the new leader
    assert any(n > cutoff for n in writer.acked), "no commit after the target"
    ctl = f"{new.settings.layout.bin}/pgsteady-ctl"
    check = new.ssh(f"{ctl} pgbackrest check", timeout=300)  # switches and waits for the WAL
    assert check.returncode == 0, check.stdout + check.stderr
    by_timeline = archived(lab)
    assert timeline in by_timeline, by_timeline
    assert f"{timeline:08X}.history" in history_files(lab), history_files(lab)
    gaps = wal_gaps(lab)
    assert not gaps, (sorted(gaps), {t: sorted(v) for t, v in by_timeline.items()})
    started = time.monotonic()
    pitr(lab, target_time, {n for n in live if n <= cutoff}, floors, "m4_failover")
    record("cluster lab M4: PITR to a time after the failover (restore + recovery)",
           time.monotonic() - started)  # fmt: skip
    # the old leader's host boots again and its member rejoins on the new timeline
    booted = time.monotonic()
    faults.power_on(old.host.name)
    lab.down.discard(old.host.name)
    lab.wait_streaming(900)
    record("cluster lab M4: powered-on old leader streaming again", time.monotonic() - booted)
    load["end"] = _loadavg()
    pattern = "rewind|replica has been created|bootstrap|reinitiali"
    logs = old.ssh(f"docker logs {old.settings.container_name} 2>&1 | grep -iE '{pattern}'")
    how = "; ".join(logs.stdout.strip().splitlines()[-4:]) or "no rewind or clone logged"
    print(f"failover: gap {gap:.1f} s, promoted {promoted:.1f} s, rejoined ({how}); "
          f"timeline {before}->{timeline}; loadavg {load}")  # fmt: skip
