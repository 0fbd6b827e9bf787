"""A cluster keeps pgsteady's backups (issue 15 item 5, issue 16 item 4), on a lab of 3
members and 1 backup host (`make lab N=4 CLUSTER=1 BACKUP_HOST=1`): one deploy creates the
cluster's one stanza in the backup host's repository; `pgbackrest check` passes from the
leader; a full backup copies its files from a standby (pgBackRest's own log names the
standby's address); after a switchover under a small writer the new primary archives, the
archive has no gap across the timelines, and a point-in-time restore (pgBackRest restore
into a scratch data directory inside the backup host's repository container, started with
the image's own postgres) to a time after the switchover holds the rows written after it
and none written after the target; `make reinit` of a replica clones it with the
``pgbackrest`` method. The lab is removed afterwards.

Opt-in (its own make target, ``make lab-cluster-backups``): it builds the cluster image on
4 hosts, which make test's shared 3-host cluster lab does without a backup host.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from pgsteady.backup import repository_host as repository
from pgsteady.ca_store import load_or_create_ca
from pgsteady.cluster.certs import issue_etcd_client_cert
from pgsteady.cluster.status import FETCH_SCRIPT
from pgsteady.lab.hosts import Lab
from pgsteady.lab.recipe import for_host, layout_data
from pgsteady.settings import Settings
from tests.lab.conftest import LabTarget, _prerequisites, record

DATA = {
    "compose_project": "labm4",
    "backup_schedule": "@daily",
    "pgbackrest_archive_timeout": "10s",
}
CA = "/etc/pgsteady-tls/ca.crt"
PGBIN = "/usr/lib/postgresql/17/bin"
SCRATCH = "/tmp/pgsteady-pitr"
pytestmark = [
    pytest.mark.timeout(3600),
    pytest.mark.skipif(
        os.environ.get("PGSTEADY_LAB_BACKUPS") != "1",
        reason="opt-in (a 4-host lab of its own): make lab-cluster-backups",
    ),
]
#: Settings a hot standby (the PITR's recovery) needs at least as high as the primary's.
HOT_STANDBY_FLOORS = ("max_connections", "max_worker_processes", "max_wal_senders",
                      "max_prepared_transactions", "max_locks_per_transaction")  # fmt: skip


@dataclass
class BackupLab:
    members: list[LabTarget]
    backup: LabTarget

    def repo(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        """``pgbackrest`` for the cluster's stanza in the backup host's repository server."""
        s = self.backup.settings
        client = repository.Client(
            name="cluster", peer=None, stanza=s.pgbackrest_stanza, repo=1,  # type: ignore[arg-type]
            retention_full=2, retention_diff=6, full_schedule="", diff_schedule="",
            verify_schedule="", postgres_version=17, process_max=1,
        )  # fmt: skip
        return self.backup.ssh(shlex.join(repository.command(s, client, *args)), timeout)

    def leader(self) -> LabTarget:
        for _ in range(120):
            for m in _cluster(self.members[0])["members"]:
                if m["role"] == "leader" and m["state"] == "running":
                    return next(t for t in self.members if t.host.name == m["name"])
            time.sleep(1)
        raise AssertionError("no running leader")

    def wait_streaming(self, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while True:
            members = _cluster(self.members[0])["members"]
            streaming = [m for m in members if m["state"] == "streaming"]
            if len(streaming) == len(self.members) - 1:
                return
            assert time.monotonic() < deadline, members
            time.sleep(2)


def _in_postgres(target: LabTarget, script: str, timeout: float = 120):
    argv = ["docker", "exec", "-u", "postgres", target.settings.container_name, "sh", "-c", script]
    return target.ssh(shlex.join(argv), timeout=timeout)


def _cluster(target: LabTarget) -> dict[str, Any]:
    # the member's certificate: Patroni's REST API requires a client certificate
    url = f"https://{target.host.ip}:8008/cluster"
    out = _in_postgres(target, shlex.join(["python3", "-c", FETCH_SCRIPT, url, CA]))
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def _access(target: LabTarget) -> None:
    """The REST gates' files `make switchover` and `make reinit` read (docs/operations.md):
    the CA, a clientAuth certificate from it and the REST password, beside the lab's CA."""
    ca_dir = target.lab.dir / "ca"  # the lab's postgres_tls_ca_dir
    access = ca_dir / "cluster-access"
    if (access / "rest-password").exists():
        return
    access.mkdir(mode=0o700, exist_ok=True)
    cert, key = issue_etcd_client_cert(load_or_create_ca(ca_dir, ca_dir.name), "pgsm4-lab")
    (access / "ca.crt").write_bytes((ca_dir / "ca.crt").read_bytes())
    (access / "client.crt").write_bytes(cert)
    password = (ca_dir / "clusters" / "lab" / "patroni_rest_password").read_bytes()
    for name, data in (("client.key", key), ("rest-password", password)):
        fd = os.open(access / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)


def _sql(target: LabTarget, query: str) -> str:
    out = target.sql(query, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


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


def _archived(lab: BackupLab) -> dict[int, set[int]]:
    """Segments in the repository by timeline (complete segments, not .partial)."""
    where = f"{repository.repo_dir(lab.backup.settings)}/archive/main"
    out = lab.backup.ssh(f"find {where} -type f -name '0000*' -printf '%f\\n'")
    assert out.returncode == 0, out.stderr
    by: dict[int, set[int]] = {}
    for name in out.stdout.split():
        if ".partial" in name or not re.fullmatch(r"[0-9A-F]{24}-.*", name):
            continue
        tli, log, seg = int(name[0:8], 16), int(name[8:16], 16), int(name[16:24], 16)
        by.setdefault(tli, set()).add(log * 256 + seg)
    return by


def _app(target: LabTarget, sql: str) -> subprocess.CompletedProcess[str]:
    """``sql`` as the application's role through the host's HAProxy (TLS, verified)."""
    s = target.settings
    dsn = (
        f"host=127.0.0.1 port={s.postgres_port} dbname={s.postgres_db} "
        f"user={s.postgres_user} sslmode=verify-full sslrootcert={CA} connect_timeout=3"
    )
    script = (
        'PGPASSWORD="$(cat /run/secrets/app_password)" '
        f"psql -XAtq -v ON_ERROR_STOP=1 {shlex.quote(dsn)} -c {shlex.quote(sql)}"
    )
    return _in_postgres(target, script, timeout=30)


class Writer(threading.Thread):
    """Numbered rows through HAProxy on ``target`` every ~0.2 s; keeps the acknowledged."""

    def __init__(self, target: LabTarget) -> None:
        super().__init__(daemon=True)
        self.target, self.stop, self.acked, self.n = target, threading.Event(), [], 0

    def run(self) -> None:
        while not self.stop.is_set():
            self.n += 1
            if _app(self.target, f"INSERT INTO m4_writes(n) VALUES ({self.n})").returncode == 0:
                self.acked.append(self.n)
            time.sleep(0.2)


def test_switchover_keeps_archiving_and_pitr_after_it_restores(lab: BackupLab) -> None:
    old = lab.leader()
    made = _app(old, "CREATE TABLE IF NOT EXISTS m4_writes (n int PRIMARY KEY, "
                     "at timestamptz DEFAULT clock_timestamp())")  # fmt: skip
    assert made.returncode == 0, made.stderr
    floors = {k: _sql(old, f"SHOW {k}") for k in HOT_STANDBY_FLOORS}
    writer = Writer(next(t for t in lab.members if t is not old))
    writer.start()
    try:
        time.sleep(5)
        # synchronous mode (a cluster's default) switches over only to the sync standby
        members = _cluster(old)["members"]
        to = next((m["name"] for m in members if m["role"] == "sync_standby"), None)
        to = to or next(m["name"] for m in members if m["role"] == "replica")
        target = next(t for t in lab.members if t.host.name == to)
        _access(old)
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
    wal = _sql(new, "SELECT pg_walfile_name(pg_current_wal_lsn())")
    timeline = int(wal[:8], 16)
    assert timeline >= 2, wal
    # the PITR target: after the switchover and the rows the writer got acknowledged
    target_time = _sql(new, "SELECT clock_timestamp()")
    rows = {int(x) for x in _sql(new, "SELECT n FROM public.m4_writes").split()}
    assert set(writer.acked) <= rows  # nothing acknowledged was lost in the switchover
    late = _sql(new, f"SELECT count(*) FROM public.m4_writes WHERE at > "
                     f"'{target_time}'::timestamptz - interval '8 s'")  # fmt: skip
    assert int(late) > 0  # rows written on the new primary, after the switchover
    time.sleep(1.5)
    assert _app(new, "INSERT INTO m4_writes(n) VALUES (-1)").returncode == 0  # after the target
    ctl = f"{new.settings.layout.bin}/pgsteady-ctl"
    check = new.ssh(f"{ctl} pgbackrest check", timeout=300)  # switches and waits for the WAL
    assert check.returncode == 0, check.stdout + check.stderr
    archived = _archived(lab)
    assert timeline in archived, archived
    # from the oldest backup's first segment to the newest: no segment missing on every
    # timeline (a switchover continues the old timeline's last segment on the new one)
    info = json.loads(lab.repo("info", "--output=json").stdout)[0]
    start = info["backup"][0]["archive"]["start"]
    first = int(start[8:16], 16) * 256 + int(start[16:24], 16)
    covered = set().union(*archived.values())
    gaps = set(range(first, max(covered) + 1)) - covered
    assert not gaps, (sorted(gaps), {t: sorted(v) for t, v in archived.items()})
    _pitr(lab, target_time, rows, floors)


def _pitr(lab: BackupLab, target_time: str, rows: set[int], floors: dict[str, str]) -> None:
    """Restore to ``target_time`` in a scratch directory of the repository container and
    read the rows back with the image's postgres; removed afterwards."""
    b = lab.backup.settings
    container = repository.container_name(b)
    conf = (
        "[global]\nrepo1-path=/var/lib/pgbackrest/repository\nrepo1-cipher-type=aes-256-cbc\n"
        f"log-path={SCRATCH}\nspool-path={SCRATCH}\n[main]\npg1-path={SCRATCH}/data\n"
        f"pg1-socket-path={SCRATCH}\npg1-port=5499\n"
    )
    br = (
        f"pgbackrest --config={SCRATCH}/br.conf --config-include-path=/etc/pgbackrest/conf.d "
        "--stanza=main"
    )
    psql = f"{PGBIN}/psql -h {SCRATCH} -p 5499 -U postgres -XAtq"
    restore_command = f'{br} archive-get %f "%p"'
    pgconf = (
        f"listen_addresses = ''\nport = 5499\nunix_socket_directories = '{SCRATCH}'\n"
        f"hba_file = '{SCRATCH}/hba.conf'\nident_file = '{SCRATCH}/ident.conf'\n"
        "archive_mode = off\nshared_buffers = 64MB\n"
        + "".join(f"{k} = {v}\n" for k, v in floors.items())
        + f"restore_command = '{restore_command.replace(chr(39), chr(39) * 2)}'\n"
    )
    script = f"""set -e
rm -rf {SCRATCH}; mkdir -m 700 -p {SCRATCH}/data
printf '%s' {shlex.quote(conf)} > {SCRATCH}/br.conf
printf '%s' {shlex.quote(pgconf)} > {SCRATCH}/pg.conf
echo 'local all all trust' > {SCRATCH}/hba.conf; : > {SCRATCH}/ident.conf
{br} restore --type=time {shlex.quote("--target=" + target_time)} \
  --target-action=promote --log-level-console=warn
{PGBIN}/pg_ctl -D {SCRATCH}/data -o '-c config_file={SCRATCH}/pg.conf' \
  -l {SCRATCH}/pg.log -w -t 600 start
for i in $(seq 300); do
  [ "$({psql} -d postgres -c 'SELECT pg_is_in_recovery()')" = f ] && break
  sleep 1
done
"""
    user = f"{b.postgres_uid}:{b.postgres_uid}"
    run = lab.backup.ssh(shlex.join(["docker", "exec", "-u", user, container, "sh", "-c", script]),
                         timeout=900)  # fmt: skip
    try:
        log = lab.backup.ssh(f"docker exec {container} cat {SCRATCH}/pg.log", timeout=60).stdout
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:] + log[-3000:]
        query = shlex.join([f"{PGBIN}/psql", "-h", SCRATCH, "-p", "5499", "-U", "postgres",
                            "-XAtq", "-d", lab.members[0].settings.postgres_db,
                            "-c", "SELECT n FROM public.m4_writes ORDER BY n"])  # fmt: skip
        out = lab.backup.ssh(
            shlex.join(["docker", "exec", "-u", user, container, "sh", "-c", query])
        )
        assert out.returncode == 0, out.stderr + log[-3000:]
        restored = {int(x) for x in out.stdout.split()}
        assert -1 not in restored  # committed after the target time
        assert restored == rows, sorted(rows ^ restored)  # every row up to the target
        assert "recovery stopping before commit" in log, log[-3000:]
    finally:
        stop = f"{PGBIN}/pg_ctl -D {SCRATCH}/data -m immediate stop; rm -rf {SCRATCH}"
        lab.backup.ssh(shlex.join(["docker", "exec", "-u", user, container, "sh", "-c", stop]))


def test_reinit_clones_a_replica_from_pgbackrest(lab: BackupLab) -> None:
    lab.wait_streaming()
    leader = lab.leader()
    replica = next(t for t in lab.members if t is not leader)
    since = replica.ssh("date -u +%Y-%m-%dT%H:%M:%S").stdout.strip()
    _access(leader)
    result = leader.make("reinit", f"HOST={replica.host.name}", timeout=900)
    assert result.returncode == 0, result.output[-4000:]
    lab.wait_streaming(600)
    logs = replica.ssh(f"docker logs --since {since} {replica.settings.container_name} 2>&1")
    assert "replica has been created using pgbackrest" in logs.stdout, logs.stdout[-4000:]
