"""Major version upgrade 15 -> 17 of a deployed single host, with data (issue 16 item 3).

One stack, in order: deployed on Postgres 15 with app-owned data; an upgrade that fails
half way (the new major's one-off server is killed while it restores into the new
volume); the new volume refused while unfinished; the rollback (the inventory back on
15 and the old volume) serving every row and taking writes; the upgrade run again under
a continuous writer, whose longest gap between two committed writes is the measured
write downtime; then the app over TLS, the pooler, pg_stat_statements and `make verify`
on Postgres 17, and a second deploy with zero changes.

PGSTEADY_UPGRADE_ROWS sets the size of the data (default 200,000 rows of ~100 bytes);
`make bench` measures the same run on more data (bench/upgrade.py).
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import psycopg2
import pytest

from pgsteady.stack.upgrade import PGBACKREST_PENDING, incomplete_marker
from tests.support.major_upgrade import (
    LABEL,
    fingerprint,
    load,
    upgrade_data,
    upgrade_under_writer,
    volume_dir,
)
from tests.support.stack import Stack, docker
from tests.support.verify_run import make_verify

pytestmark = pytest.mark.timeout(3600)

ROWS = int(os.environ.get("PGSTEADY_UPGRADE_ROWS", "200000"))


def _pooled_select(stack: Stack) -> int:
    conn = psycopg2.connect(
        host="127.0.0.1",
        port=stack.pgbouncer_port,
        user="app",
        password=stack.secret("app_password"),
        dbname="app",
        connect_timeout=10,
        sslmode="verify-full",
        sslrootcert=str(stack.ca_file),
    )
    with conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM items")
        (n,) = cur.fetchone()
    conn.close()
    return n


def _kill_new_server_once_it_restores(stack: Stack, new_volume: str, done: threading.Event) -> None:
    """The fault: once the new volume exists and the new major's one-off server runs
    on it, kill that server (as a crash or an OOM kill would)."""
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline and not done.is_set():
        ids = docker("ps", "-q", "--filter", f"label={LABEL}=new", "--filter",
                     f"name={stack.container}", check=False).stdout.split()  # fmt: skip
        if ids and volume_dir(new_volume) is not None:
            time.sleep(1)  # into its restore
            docker("kill", *ids, check=False)
            return
        time.sleep(0.2)


def test_major_upgrade_fails_half_way_rolls_back_then_succeeds(new_stack: Stack) -> None:
    stack = new_stack
    old_volume, new_volume = f"{stack.name}_pgdata", f"{stack.name}_pgdata17"
    upgrade = upgrade_data(stack)
    try:
        first = stack.deploy(postgres_version=15)
        assert first.returncode == 0, first.output[-4000:]
        load(stack, ROWS)
        before = fingerprint(stack)
        assert before[0] == ROWS
        assert stack.psql("SHOW server_version_num")[:2] == "15"

        # 1. Half way: the new major's server dies during its restore.
        done = threading.Event()
        killer = threading.Thread(
            target=_kill_new_server_once_it_restores, args=(stack, new_volume, done), daemon=True
        )
        killer.start()
        failed = stack.deploy(**upgrade)
        done.set()
        killer.join()
        assert failed.returncode != 0, failed.output[-4000:]
        assert "upgrade-major FAILED" in failed.output, failed.output[-4000:]
        assert f"postgres_data_volume={old_volume}" in failed.output  # the way back, printed
        old_dir, new_dir = volume_dir(old_volume), volume_dir(new_volume)
        assert (
            old_dir is not None and (old_dir / "pgdata" / "PG_VERSION").read_text().strip() == "15"
        )
        # The marker is root's (app_dir/state), not in the volume the server's uid writes.
        marker = Path(stack.app_dir) / "state" / incomplete_marker(new_volume)
        assert new_dir is not None and marker.exists()
        assert docker("inspect", stack.container, check=False).returncode != 0  # nothing serves

        # 2. The unfinished volume is never served.
        refused = stack.deploy(postgres_version=17, postgres_data_volume=new_volume)
        assert refused.returncode != 0
        assert f"the data volume {new_volume} holds an unfinished major upgrade" in refused.output
        assert docker("inspect", stack.container, check=False).returncode != 0

        # 3. Rollback: the inventory back on 15 and the old volume.
        back = stack.deploy(postgres_version=15)
        assert back.returncode == 0, back.output[-4000:]
        assert stack.psql("SHOW server_version_num")[:2] == "15"
        assert fingerprint(stack) == before
        with stack.connect() as conn, conn.cursor() as cur:
            cur.execute("INSERT INTO notes (note) VALUES ('after the rollback')")
        conn.close()

        # 4. The upgrade again, under a continuous writer.
        run = upgrade_under_writer(stack)
        assert run.result.returncode == 0, run.result.output[-6000:]
        assert stack.psql("SHOW server_version_num")[:2] == "17"
        mounts = {m["Destination"]: m.get("Name") for m in stack.inspect()["Mounts"]}
        assert new_volume in mounts.values() and old_volume not in mounts.values()
        assert (old_dir / "pgdata" / "PG_VERSION").read_text().strip() == "15"
        assert not marker.exists()
        count, digest, notes = fingerprint(stack)
        assert (count, digest) == before[:2]
        # Every committed write is there: the one after the rollback and the writer's.
        assert notes >= 1 + run.writes, (notes, run.writes)
        assert _pooled_select(stack) == ROWS
        # The extension came with the app database; the new server preloads its library.
        assert int(stack.psql("SELECT count(*) FROM public.pg_stat_statements", db="app")) > 0
        assert run.report["from_version"] == 15 and run.report["to_version"] == 17
        # pgBackRest: the stanza follows the new cluster and its first full backup is taken.
        assert not (stack.app_dir / "state" / PGBACKREST_PENDING).exists()
        info = docker("exec", "-u", "postgres", stack.container, "pgbackrest", "info",
                      "--output=json").stdout  # fmt: skip
        assert json.loads(info)[0]["backup"][-1]["database"]["id"] == 2  # the 17 cluster
        assert 0 < run.gap_seconds <= run.deploy_seconds

        verify = make_verify(stack.inventory, stack.dir / "verify.xml")
        assert verify.returncode == 0, verify.output[-6000:]
        again = stack.deploy(**upgrade)
        assert again.returncode == 0, again.output[-3000:]
        assert again.changed == 0, again.changed_operations()

        figures = {
            "rows": ROWS,
            "database_bytes": int(stack.psql("SELECT pg_database_size('app')", db="app")),
            "write_gap_seconds": round(run.gap_seconds, 1),
            "deploy_seconds": round(run.deploy_seconds, 1),
            **{k: v for k, v in run.report.items() if k.endswith("_seconds")},
            "loadavg": Path("/proc/loadavg").read_text().split()[:3],
        }
        print(json.dumps(figures))
    finally:
        stack.stop_watchdog()  # before the container goes: the watchdog would start it again
        docker("rm", "-f", "-v", stack.container, check=False)
        docker("volume", "rm", "-f", new_volume, check=False)
