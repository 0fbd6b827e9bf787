"""The cluster backups lab's helpers (tests/lab/test_cluster_lab_backups.py): the 3+1 lab,
Patroni's view of it, a numbered writer through HAProxy, the repository's archive and a
point-in-time restore into a scratch directory of the repository container."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from pgsteady.backup import repository_host as repository
from pgsteady.ca_store import load_or_create_ca
from pgsteady.cluster.certs import issue_etcd_client_cert
from pgsteady.cluster.status import FETCH_SCRIPT
from tests.lab.conftest import LabTarget

CA = "/etc/pgsteady-tls/ca.crt"
PGBIN = "/usr/lib/postgresql/17/bin"
SCRATCH = "/tmp/pgsteady-pitr"
#: Settings a hot standby (the PITR's recovery) needs at least as high as the primary's.
HOT_STANDBY_FLOORS = ("max_connections", "max_worker_processes", "max_wal_senders",
                      "max_prepared_transactions", "max_locks_per_transaction")  # fmt: skip


@dataclass
class BackupLab:
    members: list[LabTarget]
    backup: LabTarget
    #: Member hosts powered off by a test (asked nothing until they are back).
    down: set[str] = field(default_factory=set)

    def repo(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        """``pgbackrest`` for the cluster's stanza in the backup host's repository server."""
        s = self.backup.settings
        client = repository.Client(
            name="cluster", peer=None, stanza=s.pgbackrest_stanza, repo=1,  # type: ignore[arg-type]
            retention_full=2, retention_diff=6, full_schedule="", diff_schedule="",
            verify_schedule="", postgres_version=17, process_max=1,
        )  # fmt: skip
        return self.backup.ssh(shlex.join(repository.command(s, client, *args)), timeout)

    def up(self) -> list[LabTarget]:
        return [t for t in self.members if t.host.name not in self.down]

    def status(self, timeout: float = 60) -> dict[str, Any]:
        """``GET /cluster`` from the first member that is powered on (a failing read, as
        during an election on a loaded lab, is retried for ``timeout`` s)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return cluster(self.up()[0])
            except (AssertionError, json.JSONDecodeError, subprocess.TimeoutExpired):
                if time.monotonic() > deadline:
                    raise
                time.sleep(2)

    def leader(self, timeout: float = 120) -> LabTarget:
        """The running leader among the members that are up (waits up to ``timeout``)."""
        deadline = time.monotonic() + timeout
        while True:
            for m in self.status()["members"]:
                running = m["role"] == "leader" and m["state"] == "running"
                if running and m["name"] not in self.down:
                    return next(t for t in self.members if t.host.name == m["name"])
            assert time.monotonic() < deadline, "no running leader"
            time.sleep(1)

    def wait_streaming(self, timeout: float = 300) -> None:
        """Until every other member streams from the leader on the leader's timeline."""
        deadline = time.monotonic() + timeout
        while True:
            members = self.status()["members"]
            lead = [m.get("timeline") for m in members if m["role"] == "leader"]
            streaming = [m for m in members if m["state"] == "streaming" and
                         lead and m.get("timeline") == lead[0]]  # fmt: skip
            if len(streaming) == len(self.members) - 1:
                return
            assert time.monotonic() < deadline, members
            time.sleep(2)


def in_postgres(target: LabTarget, script: str, timeout: float = 120):
    argv = ["docker", "exec", "-u", "postgres", target.settings.container_name, "sh", "-c", script]
    return target.ssh(shlex.join(argv), timeout=timeout)


def cluster(target: LabTarget) -> dict[str, Any]:
    # the member's certificate: Patroni's REST API requires a client certificate
    url = f"https://{target.host.ip}:8008/cluster"
    out = in_postgres(target, shlex.join(["python3", "-c", FETCH_SCRIPT, url, CA]))
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def access(target: LabTarget) -> None:
    """The REST gates' files `make switchover` and `make reinit` read (docs/operations.md):
    the CA, a clientAuth certificate from it and the REST password, beside the lab's CA."""
    ca_dir = target.lab.dir / "ca"  # the lab's postgres_tls_ca_dir
    gate = ca_dir / "cluster-access"
    if (gate / "rest-password").exists():
        return
    gate.mkdir(mode=0o700, exist_ok=True)
    cert, key = issue_etcd_client_cert(load_or_create_ca(ca_dir, ca_dir.name), "pgsm4-lab")
    (gate / "ca.crt").write_bytes((ca_dir / "ca.crt").read_bytes())
    (gate / "client.crt").write_bytes(cert)
    password = (ca_dir / "clusters" / "lab" / "patroni_rest_password").read_bytes()
    for name, data in (("client.key", key), ("rest-password", password)):
        fd = os.open(gate / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)


def sql(target: LabTarget, query: str) -> str:
    out = target.sql(query, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def archived(lab: BackupLab) -> dict[int, set[int]]:
    """Segments in the repository by timeline (complete segments, not .partial)."""
    by: dict[int, set[int]] = {}
    for name in _archive_files(lab, "0000*"):
        if ".partial" in name or not re.fullmatch(r"[0-9A-F]{24}-.*", name):
            continue
        tli, log, seg = int(name[0:8], 16), int(name[8:16], 16), int(name[16:24], 16)
        by.setdefault(tli, set()).add(log * 256 + seg)
    return by


def history_files(lab: BackupLab) -> set[str]:
    """The timeline history files in the repository's archive (``00000003.history``)."""
    return {n for n in _archive_files(lab, "*.history") if re.fullmatch(r"[0-9A-F]{8}\.history", n)}


def _archive_files(lab: BackupLab, pattern: str) -> list[str]:
    where = f"{repository.repo_dir(lab.backup.settings)}/archive/main"
    out = lab.backup.ssh(f"find {where} -type f -name '{pattern}' -printf '%f\\n'")
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def wal_gaps(lab: BackupLab) -> set[int]:
    """Segments missing on every timeline between the oldest backup's first segment and
    the newest archived (a promotion continues the old timeline's last segment on the
    new one, so the union over timelines has no hole when archiving is continuous)."""
    by = archived(lab)
    info = json.loads(lab.repo("info", "--output=json").stdout)[0]
    start = info["backup"][0]["archive"]["start"]
    first = int(start[8:16], 16) * 256 + int(start[16:24], 16)
    covered = set().union(*by.values())
    return set(range(first, max(covered) + 1)) - covered


def app(target: LabTarget, statement: str) -> subprocess.CompletedProcess[str]:
    """``statement`` as the application's role through the host's HAProxy (TLS, verified)."""
    s = target.settings
    dsn = (
        f"host=127.0.0.1 port={s.postgres_port} dbname={s.postgres_db} "
        f"user={s.postgres_user} sslmode=verify-full sslrootcert={CA} connect_timeout=3"
    )
    script = (
        'PGPASSWORD="$(cat /run/secrets/app_password)" '
        f"psql -XAtq -v ON_ERROR_STOP=1 {shlex.quote(dsn)} -c {shlex.quote(statement)}"
    )
    return in_postgres(target, script, timeout=30)


class Writer(threading.Thread):
    """Numbered rows into ``table`` through HAProxy on ``target`` every ~0.2 s, a new
    session each; keeps the acknowledged numbers and when each was acknowledged.
    ``hold`` set: no new write starts; ``idle`` is set once none is in flight."""

    def __init__(self, target: LabTarget, table: str = "m4_writes") -> None:
        super().__init__(daemon=True)
        self.target, self.table, self.n = target, table, 0
        self.stop, self.hold, self.idle = threading.Event(), threading.Event(), threading.Event()
        self.acked: list[int] = []
        self.acked_at: dict[int, float] = {}  # number -> monotonic time of the ack

    def run(self) -> None:
        while not self.stop.is_set():
            if self.hold.is_set():
                self.idle.set()
                time.sleep(0.05)
                continue
            self.idle.clear()
            self.n += 1
            if app(self.target, f"INSERT INTO {self.table}(n) VALUES ({self.n})").returncode == 0:
                self.acked.append(self.n)
                self.acked_at[self.n] = time.monotonic()
            time.sleep(0.2)


def pitr(
    lab: BackupLab, target_time: str, rows: set[int], floors: dict[str, str], table: str
) -> None:
    """Restore to ``target_time`` in a scratch directory of the repository container and
    assert that ``table`` holds exactly ``rows`` (and no -1); removed afterwards."""
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
                            "-c", f"SELECT n FROM public.{table} ORDER BY n"])  # fmt: skip
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
