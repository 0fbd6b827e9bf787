"""Gaps in the pgBackRest WAL archive, for real: `make verify`'s check and `make status`.

A real server archiving into an encrypted posix repository (test_pgbackrest_engine's
Cluster, named as the settings name the container so the verify check and the monitor's
collect script find it):

* a healthy archive, also right after a timeline switch (an in-place restore that
  promoted to timeline 2), has no gap: the verify check passes, status shows nothing;
* pgBackRest really drops WAL (a queue maximum of 16 MiB written straight into
  pgbackrest.conf: settings refuse less than 64MB) while the repository is dead;
  pg_stat_archiver and the old checks stay green, the new check fails with the
  full-backup fix and status is critical; after a new full backup the check passes and
  status warns about the older hole;
* a segment deleted from the repository on the new timeline is found the same way.
"""

from __future__ import annotations

import time
import types
import uuid
from collections.abc import Iterator

import pytest
from debian_images import docker_client, ensure_debian_image
from test_pgbackrest_engine import Cluster, docker
from test_verify_roles import _load_verify_module, _LocalHost

from pgsteady.backup import pgbackrest
from pgsteady.inventory import InventoryHost
from pgsteady.monitor.collect import Target, collect
from pgsteady.monitor.model import derive
from pgsteady.verify import CheckFailed, Fixes

pytestmark = pytest.mark.docker


def switch(c: Cluster, count: int) -> None:
    """``count`` new WAL segments with a row each."""
    c.psql("CREATE TABLE IF NOT EXISTS filler (v text)")
    for _ in range(count):
        c.psql("INSERT INTO filler SELECT repeat('x', 100) FROM generate_series(1, 50)")
        c.psql("SELECT pg_switch_wal()")


def settle(c: Cluster) -> None:
    """Archive everything completed so far (check forces a switch and waits for it)."""
    c.pgbackrest("check")


class Probe:
    """The verify suite's gap check and `make status`, both against the cluster."""

    def __init__(self, c: Cluster) -> None:
        module = _load_verify_module("test_pgbackrest")
        host = _load_verify_module("conftest").Host(_LocalHost(), c.s)
        self.run = lambda name: getattr(module, name)(host, c.s, Fixes("inventory.py"))
        self.check = lambda: self.run("test_archive_has_no_gap_after_the_newest_backup")
        self.target = Target(InventoryHost("@local", {}), c.s)

    def status(self) -> types.SimpleNamespace:
        st = derive(collect(self.target, timeout=60), self.target.settings)
        wal = [p for p in st.problems if "repo1" in p and ("missing" in p or "listing" in p)]
        return types.SimpleNamespace(gaps=st.archiving.wal_gaps, problems=wal)


@pytest.fixture(params=[17])
def cluster(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    """A server of the Debian image (17: pgBackRest 2.55; 15: 2.45, Debian 12's)."""
    try:
        docker_client().ping()
    except Exception as exc:
        pytest.skip(f"no Docker engine: {exc}")
    image = ensure_debian_image(docker_client(), request.param)
    c = Cluster(image, compose_project=f"pgsitgap{uuid.uuid4().hex[:6]}",
                postgres_version=request.param, pgbackrest_archive_timeout="5s")  # fmt: skip
    c.name = c.s.container_name  # where verify and status look
    try:
        yield c
    finally:
        c.destroy()


def restart_on_a_new_timeline(c: Cluster) -> None:
    """Restore the newest backup in place and promote: the server continues on timeline+1."""
    docker("stop", c.name)
    docker(
        "run", "--rm", "--user", "postgres", "--volumes-from", c.name, "--entrypoint",
        "pgbackrest", c.image, *pgbackrest.command(c.s)[1:], "restore", "--delta",
        "--type=immediate", "--target-action=promote",
    )  # fmt: skip
    docker("start", c.name)
    deadline = time.monotonic() + 60
    while c.psql("SELECT NOT pg_is_in_recovery()", check=False) != "t":
        assert time.monotonic() < deadline, c.logs()[-2000:]
        time.sleep(0.5)


@pytest.mark.parametrize("cluster", [15, 17], indirect=True)
def test_healthy_across_a_timeline_switch_then_a_deleted_segment_is_found(cluster) -> None:
    c = cluster
    c.start()
    c.stanza()
    c.pgbackrest("backup", "--type=full")
    probe = Probe(c)
    switch(c, 3)
    settle(c)
    # Only log directories from the backup's start on are listed: one that sorts before
    # every real one, unreadable, would fail the listing if it were read.
    stale = next((c.repo / "archive").glob("*/*-*")) / "00000000FFFFFFFF"
    stale.mkdir(mode=0o000)
    probe.check()
    assert probe.status().problems == []
    stale.rmdir()
    restart_on_a_new_timeline(c)
    switch(c, 3)
    settle(c)
    assert c.psql("SELECT timeline_id FROM pg_control_checkpoint()") == "2"
    assert list((c.repo / "archive").rglob("00000002.history"))
    probe.check()  # no false positive: timeline 1 past the switch is not needed
    assert probe.status().problems == []
    # A hole on timeline 2, below what pg_stat_archiver counts as archived.
    last = c.psql("SELECT last_archived_wal FROM pg_stat_archiver")
    victim = next((c.repo / "archive").rglob("000000020000000000000005-*"))
    assert last > victim.name[:24]
    victim.unlink()
    with pytest.raises(CheckFailed) as failed:
        probe.check()
    assert "000000020000000000000005" in failed.value.what
    assert failed.value.fix and "pgbackrest backup --type=full" in failed.value.fix
    st = probe.status()
    assert [(g["timeline"], g["first"], g["after_newest_backup"]) for g in st.gaps] == [
        (2, "000000020000000000000005", True)
    ]
    assert st.problems[0].startswith("critical: repo1: 1 WAL segment(s) missing")
    # An unreadable repository: `pgbackrest info` exits 0 listing no backup, the listing
    # must not pass as "no gap".
    c.repo.chmod(0o000)
    try:
        with pytest.raises(RuntimeError, match="Permission denied"):
            probe.check()
        assert any("repo1 WAL listing" in p for p in probe.status().problems)
    finally:
        c.repo.chmod(0o750)


def test_wal_dropped_by_pgbackrest_is_found_and_a_full_backup_clears_the_check(cluster) -> None:
    c = cluster
    c.start()
    c.stanza()
    c.pgbackrest("backup", "--type=full")
    probe = Probe(c)
    switch(c, 2)
    settle(c)
    probe.check()
    # A queue maximum of one segment (each archive-push reads the file anew).
    conf = c.config / "pgbackrest.conf"
    text = conf.read_text()
    assert "archive-push-queue-max=" in text
    conf.write_text(
        "\n".join(
            "archive-push-queue-max=16MiB" if line.startswith("archive-push-queue-max=") else line
            for line in text.splitlines()
        )
        + "\n"
    )
    c.repo.chmod(0o000)  # the repository dies
    deadline = time.monotonic() + 120
    while "dropped WAL file" not in c.logs():
        assert time.monotonic() < deadline, "pgBackRest dropped nothing"
        switch(c, 1)
        time.sleep(1)
    switch(c, 1)
    time.sleep(2)
    conf.write_text(text)  # the usual maximum again (at one segment, every push drops)
    c.repo.chmod(0o750)  # back: archiving resumes after the hole
    switch(c, 2)
    settle(c)
    # The checks that existed before pass: nothing fails, nothing waits, a full exists.
    for old in ("test_archive_is_fresh", "test_queue_below_half_the_maximum",
                "test_stanza_ok", "test_full_backup_exists"):  # fmt: skip
        probe.run(old)
    with pytest.raises(CheckFailed) as failed:
        probe.check()
    assert "missing on timeline 1" in failed.value.what, failed.value.what
    st = probe.status()
    assert st.gaps and all(g["after_newest_backup"] for g in st.gaps)
    assert st.problems and st.problems[0].startswith("critical: repo1:")
    # The runbook's fix: a new full backup; PITR works again from it on.
    c.pgbackrest("backup", "--type=full")
    switch(c, 1)
    settle(c)
    probe.check()
    st = probe.status()
    assert st.gaps and not any(g["after_newest_backup"] for g in st.gaps)
    assert st.problems and all(p.startswith("warning: repo1:") for p in st.problems)
    assert "before the newest backup" in st.problems[0]
