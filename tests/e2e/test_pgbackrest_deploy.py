"""A newcomer's deploy archives WAL with pgBackRest; `make restore-pitr` restores as of a
time side by side and prints where; `make restore-pitr-clean` removes it (real CLI)."""

from __future__ import annotations

import json
import re
import subprocess
import time
from datetime import UTC, datetime

import psycopg2

from pgsteady.backup import pgbackrest, walarchive
from pgsteady.settings import HostFacts, build_settings
from tests.support.stack import REPO, Stack, docker
from tests.support.verify_run import make_verify


def make(stack: Stack, target: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "-s", target, f"INVENTORY={stack.inventory}", *args],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip


def test_deploy_archives_backs_up_and_schedules(deployed: Stack) -> None:
    row = deployed.psql(
        "SELECT archived_count, last_archived_wal IS NOT NULL FROM pg_stat_archiver"
    )
    assert int(row.split("|")[0]) >= 1 and row.endswith("|t"), row
    info = json.loads(
        docker("exec", "-u", "postgres", deployed.container, "pgbackrest", "info",
               "--output=json").stdout
    )  # fmt: skip
    assert info[0]["status"]["code"] == 0
    assert info[0]["cipher"] == "aes-256-cbc"
    assert [b["type"] for b in info[0]["backup"]] == ["full"]  # the deploy's first backup
    units = {p.name for p in deployed.scheduled_files()}
    for kind in ("full", "diff", "verify"):
        assert f"pgsteady-pgbackrest-{kind}-{deployed.name}" in units
    again = deployed.deploy()
    assert again.returncode == 0 and again.changed == 0, again.changed_operations()


def test_restore_pitr_side_by_side_then_clean(deployed: Stack) -> None:
    with deployed.connect() as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE IF NOT EXISTS pitr_probe (id int, at timestamptz)")
    for i in (1, 2):
        with deployed.connect() as conn, conn.cursor() as cur:
            cur.execute("INSERT INTO pitr_probe VALUES (%s, clock_timestamp())", (i,))
        time.sleep(1.2)
    target = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f+00")
    time.sleep(0.5)
    with deployed.connect() as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO pitr_probe VALUES (3, clock_timestamp())")

    proc = make(deployed, "restore-pitr", f"TARGET_TIME={target}")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    output = proc.stdout + proc.stderr  # pyinfra shows the command's output on stderr
    found = re.findall(r"restored: host=(\S+) port=(\d+) dbname=(\S+)", output)
    assert len(found) == 1, output[-3000:]
    host, port, dbname = found[0]
    assert (host, dbname) == ("127.0.0.1", "app")
    # Same credentials, TLS, bound like postgres_bind: the app role logs in as usual.
    with psycopg2.connect(
        host=host, port=int(port), user="app", dbname=dbname,
        password=deployed.secret("app_password"), sslmode="verify-full",
        sslrootcert=str(deployed.ca_file), connect_timeout=5,
    ) as conn, conn.cursor() as cur:  # fmt: skip
        cur.execute("SELECT id FROM pitr_probe ORDER BY id")
        assert [r[0] for r in cur.fetchall()] == [1, 2]
        cur.execute("SHOW archive_mode")
        assert cur.fetchone()[0] == "off"  # the copy never writes to the repository
    ports = docker("port", f"{deployed.container}-pitr", "5432/tcp").stdout
    assert ports.strip() == f"127.0.0.1:{port}"
    # As confined as the live server: its network (not Docker's default bridge, where any
    # container would reach it) and its memory and log limits.
    fmt = "{{json .NetworkSettings.Networks}} {{.HostConfig.Memory}} {{json .HostConfig.LogConfig}}"
    live = docker("inspect", "-f", fmt, deployed.container).stdout.split(" ", 1)
    side = docker("inspect", "-f", fmt, f"{deployed.container}-pitr").stdout.split(" ", 1)
    live_nets, side_nets = json.loads(live[0]), json.loads(side[0])
    assert list(side_nets) == list(live_nets) and "bridge" not in side_nets
    assert side[1] == live[1] and int(side[1].split()[0]) > 0

    proc = make(deployed, "restore-pitr-clean")
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert docker("inspect", f"{deployed.container}-pitr", check=False).returncode != 0
    assert docker("volume", "inspect", f"{deployed.container}-pitr", check=False).returncode != 0
    # The live server kept running and archiving throughout.
    assert deployed.psql("SELECT count(*) FROM pitr_probe", db="app") == "3"


def test_restore_pitr_in_place_replaces_the_live_cluster(deployed: Stack) -> None:
    """IN_PLACE=1: the live cluster as of the target, the old data kept aside, the restart
    policy back to the live one, archiving on a new timeline."""
    with deployed.connect() as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE IF NOT EXISTS inplace_probe (id int)")
        cur.execute("INSERT INTO inplace_probe VALUES (1)")
    time.sleep(1.2)
    target = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f+00")
    time.sleep(0.5)
    with deployed.connect() as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO inplace_probe VALUES (2)")  # the "bad migration"

    proc = make(deployed, "restore-pitr", f"TARGET_TIME={target}", "IN_PLACE=1")
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    assert len(re.findall(r"restored: host=\S+ port=\d+ dbname=app", output)) == 1
    assert "to go back to the data before the restore" in output
    assert deployed.psql("SELECT string_agg(id::text, ',') FROM inplace_probe", db="app") == "1"
    policy = docker("inspect", "-f", "{{.HostConfig.RestartPolicy.Name}}", deployed.container)
    assert policy.stdout.strip() == "always"
    kept = docker(
        "exec", "-u", "postgres", deployed.container, "sh", "-c",
        "ls -d /var/lib/postgresql/data/pgdata.before-pitr-*",
    )  # fmt: skip
    assert kept.returncode == 0 and kept.stdout.strip(), kept.stderr
    assert deployed.psql("SELECT pg_is_in_recovery()") == "f"
    # No false WAL gap right after the switch to the new timeline (verify's gap check).
    s = build_settings(deployed.host_data(), HostFacts(ram_mb=4096, cpus=2))
    docker("exec", "-u", "postgres", deployed.container, *pgbackrest.command(s, "check"))
    last = deployed.psql("SELECT last_archived_wal FROM pg_stat_archiver")
    listed = docker("exec", "-u", "postgres", deployed.container,
                    *walarchive.listing_argv(s, 1, "oldest"))  # fmt: skip
    listing = walarchive.parse_listing(listed.stdout)
    assert listing.complete and listing.history_file and listing.segments, listed
    assert walarchive.find_gaps(listing, last) == []


def test_a_corrupt_repository_fails_the_verify_job_and_make_verify(deployed: Stack) -> None:
    """pgbackrest verify exits 0 on a corrupt file; the scheduled job (pgsteady-ctl
    pgbackrest-verify) fails on its verdict and keeps it, and make verify reports it."""
    ctl = [str(deployed.app_dir / "bin" / "pgsteady-ctl"), "pgbackrest-verify", "1"]
    verdict_file = deployed.app_dir / "state" / "pgbackrest-verify-repo1.json"
    sound = subprocess.run(ctl, capture_output=True, text=True, timeout=600, check=False)
    assert sound.returncode == 0, sound.stdout + sound.stderr
    assert json.loads(verdict_file.read_text())["ok"] is True
    repo = deployed.app_dir / "pgbackrest" / "repo1" / "backup"
    victim = max(repo.rglob("*.zst"), key=lambda p: p.stat().st_size)
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    corrupt = subprocess.run(ctl, capture_output=True, text=True, timeout=600, check=False)
    assert corrupt.returncode == 1, corrupt.stdout + corrupt.stderr
    verdict = json.loads(verdict_file.read_text())
    assert verdict["ok"] is False and "checksum invalid: 1" in verdict["summary"], verdict
    run = make_verify(deployed.inventory, deployed.dir / "corrupt-repo.xml")
    what, fix = run.failed["pgbackrest/last_verify_found_the_repositories_sound"]
    assert "checksum invalid: 1" in what and "backup --type=full" in fix, run.output[-3000:]
