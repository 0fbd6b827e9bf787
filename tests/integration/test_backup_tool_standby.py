"""The backup tool in a cluster (issue 16 item 4), against a real primary and a real
streaming standby of the test image: with ``cluster`` on, the primary leaves the dump to
the standby, the standby dumps (and says so), restore and drill stop on the standby with
the reason, and the standby's dump restores on the primary; the primary dumps itself
once no standby streams.

The standby is a second container in the primary's network namespace (pg_basebackup -R
over 127.0.0.1, then ``postgres`` with no TCP listener: the two sockets are each
container's own), with ``hot_standby_feedback`` on as a cluster member has it.
"""

from __future__ import annotations

import json
import secrets
import shutil
import time
from collections.abc import Iterator

import pytest
from backup_env import Postgres, Tool, docker, find_image

IMAGE = find_image()
pytestmark = [
    pytest.mark.docker,
    pytest.mark.skipif(IMAGE is None, reason="no image labelled io.pgsteady.recipe"),
]
STANDBY_SCRIPT = (
    "set -e; PGPASSWORD=unused pg_basebackup -h 127.0.0.1 -U postgres -D /tmp/standby -R "
    "-X stream -c fast; exec postgres -D /tmp/standby -c listen_addresses= "
    "-c hot_standby_feedback=on"
)


class Standby:
    """A streaming standby of ``primary`` (removed with its volumes by ``remove``)."""

    def __init__(self, primary: Postgres) -> None:
        self.name = f"pgsteady-bt-sb-{secrets.token_hex(4)}"
        docker("run", "-d", "--name", self.name, "-u", "postgres",
               f"--network=container:{primary.name}", "--entrypoint", "sh", str(IMAGE),
               "-c", STANDBY_SCRIPT)  # fmt: skip
        self.wait(lambda: self.value("SELECT status FROM pg_stat_wal_receiver") == "streaming")

    def value(self, sql: str, db: str = "postgres") -> str:
        proc = docker("exec", "-u", "postgres", self.name, "psql", "-XAtq", "-d", db, "-c", sql,
                      check=False)  # fmt: skip
        return proc.stdout.strip()

    def wait(self, done, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                logs = docker("logs", "--tail", "20", self.name, check=False)
                raise AssertionError(f"{self.name}: {logs.stdout}{logs.stderr}")
            time.sleep(0.5)

    def remove(self) -> None:
        docker("rm", "-f", "-v", self.name, check=False)


@pytest.fixture(scope="module")
def pair() -> Iterator[tuple[Postgres, Standby]]:
    primary = Postgres(str(IMAGE))
    standby = None
    try:
        primary.sql(
            "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 500)"
        )
        standby = Standby(primary)
        standby.wait(lambda: standby.value("SELECT count(*) FROM t", "app") == "500")
        yield primary, standby
    finally:
        if standby is not None:
            standby.remove()
        primary.remove()


def _ok(proc):
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def test_the_standby_dumps_and_the_primary_leaves_it_to_it(tmp_path, pair) -> None:
    primary, standby = pair
    on_primary = Tool.install(tmp_path / "p", primary.name, ["app"], cluster=True)
    on_standby = Tool.install(tmp_path / "s", standby.name, ["app"], cluster=True)
    proc = _ok(on_primary.run("backup"))
    assert "the primary leaves the dump to its streaming standby(s)" in proc.stderr
    run = on_primary.status()["last_run"]
    assert run["ok"] is True and "streaming standby" in run["skipped"]
    assert "last_success" not in on_primary.status()
    assert not list((on_primary.backup_dir / "last").glob("*.dump"))
    proc = _ok(on_standby.run("backup"))
    assert "dumped on the standby" in proc.stderr
    success = on_standby.status()["last_success"]
    assert success["source"] == "standby"
    dump = on_standby.latest()
    manifest = json.loads((dump.parent / (dump.name + ".manifest.json")).read_text())
    assert manifest["tables"] == {"public.t": 500}
    _ok(on_standby.run("verify"))

    # restore and drill write: on the standby they stop before creating anything
    before = standby.value("SELECT count(*) FROM pg_database")
    for command in (("restore", "--db", "app"), ("drill",)):
        proc = on_standby.run(*command)
        assert proc.returncode != 0 and "is a standby (read-only)" in proc.stderr, proc.stderr
    assert standby.value("SELECT count(*) FROM pg_database") == before

    # the standby's dump, copied to the primary's host, restores there
    (on_primary.backup_dir / "last").mkdir(parents=True, exist_ok=True)
    for suffix in ("", ".sha256", ".manifest.json"):
        shutil.copy(f"{dump}{suffix}", on_primary.backup_dir / "last" / f"{dump.name}{suffix}")
    copied = on_primary.backup_dir / "last" / dump.name
    proc = _ok(on_primary.run("restore", "--backup", str(copied), "--target-db", "from_standby"))
    assert primary.value("SELECT count(*) FROM t", "from_standby") == "500"
    primary.sql('DROP DATABASE "from_standby"', "postgres")


GAP_SQL = (
    "SELECT pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_last_wal_receive_lsn(), "
    "pg_catalog.pg_last_wal_replay_lsn())"
)


def test_a_standby_behind_in_replay_leaves_the_dump(tmp_path, pair) -> None:
    """Replay paused while the primary writes: the standby has received more WAL than it
    replayed than max_replay_gap allows, so its dump would hold old data: it leaves it."""
    primary, standby = pair
    limit = 1024 * 1024
    on_standby = Tool.install(
        tmp_path / "s", standby.name, ["app"], cluster=True, max_replay_gap=limit
    )
    standby.value("SELECT pg_catalog.pg_wal_replay_pause()")
    try:
        primary.sql(
            "CREATE TABLE gap AS SELECT g, repeat('x', 200) AS pad FROM generate_series(1, 50000) g"
        )
        standby.wait(lambda: float(standby.value(GAP_SQL) or 0) > limit)
        proc = _ok(on_standby.run("backup"))
        assert f"bytes of WAL received but not yet replayed (limit {limit})" in proc.stderr
        assert "last_success" not in on_standby.status()
        assert not list((on_standby.backup_dir / "last").glob("*.dump"))
    finally:
        standby.value("SELECT pg_catalog.pg_wal_replay_resume()")
        primary.sql("DROP TABLE IF EXISTS gap")
    standby.wait(lambda: float(standby.value(GAP_SQL) or 0) == 0)
    assert "dumped on the standby" in _ok(on_standby.run("backup")).stderr


def test_the_primary_dumps_as_the_fallback_when_no_standby_streams(tmp_path, pair) -> None:
    primary, standby = pair
    on_primary = Tool.install(tmp_path / "p", primary.name, ["app"], cluster=True)
    docker("stop", "-t", "5", standby.name)
    deadline = time.monotonic() + 60
    while primary.value("SELECT count(*) FROM pg_stat_replication", "postgres") != "0":
        assert time.monotonic() < deadline, "the walsender outlived the standby"
        time.sleep(0.5)
    proc = _ok(on_primary.run("backup"))
    assert "WARNING dumping on the primary (fallback: no standby streams)" in proc.stderr
    assert on_primary.status()["last_success"]["source"].startswith("primary (fallback")
