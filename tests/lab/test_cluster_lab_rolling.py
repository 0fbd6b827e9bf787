"""Rolling changes of a running cluster (issue 16, items 1, 2 and 6) on the session's
shared 3-host cluster lab, under a writer committing through HAProxy every 100 ms:

- a patroni.yml that changed on a member reaches the running Patroni by a reload (before,
  the file was copied into the container only at start, so a deploy changed nothing);
- a restart-only setting (postgres_max_connections raised) re-deployed: every member is
  restarted with the new value, replicas first, with exactly one switchover, and the
  longest write gap is measured; a second deploy started meanwhile is refused, naming
  the roll that holds the lock, with nothing changed;
- the original inventory deployed back LOWERS max_connections: the leader restarts
  first in place (a hot standby's value must stay >= the primary's), no switchover.

The lab is left whole with its original inventory."""

from __future__ import annotations

import json
import shlex
import subprocess
import time
from pathlib import Path

import pytest

from pgsteady.cluster.roll_lock import show_command
from pgsteady.cluster.status import CONTAINER_CA, FETCH_SCRIPT
from pgsteady.lab.cluster_backend import read_inventory
from pgsteady.lab.failover import longest_gap
from pgsteady.lab.recipe import render_inventory
from pgsteady.lab.writers import SCHEMA, WRITES, Writer, connect, execute
from tests.lab.conftest import REPO, ClusterLab, LabTarget, record

pytestmark = pytest.mark.timeout(3600)
RUNNING = "/run/patroni/10-pgsteady.yml"


def _in_postgres(t: LabTarget, script: str, timeout: float = 60) -> str:
    argv = ["docker", "exec", "-u", "postgres", t.settings.container_name, "sh", "-c", script]
    out = t.ssh(shlex.join(argv), timeout=timeout)
    assert out.returncode == 0, out.stderr
    return out.stdout


def _max_connections(t: LabTarget) -> int:
    return int(_in_postgres(t, "psql -XAtq -d postgres -c 'SHOW max_connections'").strip())


def _with_data(inventory: Path, extra: dict[str, object]) -> None:
    lab, entries = read_inventory(inventory)
    inventory.write_text(render_inventory(lab, [(n, {**d, **extra}) for n, d in entries]))


def _writer(lab: ClusterLab) -> Writer:
    dsn = lab.cluster.proxy_dsn()
    conn = connect(dsn, 10)
    try:
        execute(conn, f"{SCHEMA}; TRUNCATE public.{WRITES}", (), 30)
    finally:
        conn.close()
    return Writer(dsn)


def test_a_changed_patroni_yml_is_reloaded(deployed_cluster_lab: ClusterLab) -> None:
    lab = deployed_cluster_lab
    t = lab.targets[2]
    host_file = f"{t.settings.layout.config}/patroni.yml"
    # an older patroni.yml runs (nofailover on), as if the last deploy had rendered it
    old = "sed 's/nofailover: false/nofailover: true/' {0} > /tmp/p.yml && cat /tmp/p.yml > {0}"
    assert t.ssh(old.format(host_file)).returncode == 0
    _in_postgres(t, f'cat "$PGSTEADY_PATRONI_CONFIG" > {RUNNING}')
    _in_postgres(t, f"patronictl -c /run/patroni reload lab {t.host.name} --force")
    try:
        deadline = time.monotonic() + 60
        while not _tags(lab, t).get("nofailover"):
            assert time.monotonic() < deadline, "Patroni never took the staged nofailover"
            time.sleep(1)
        result = lab.targets[0].make("deploy", timeout=1800)
        assert result.returncode == 0, result.output[-6000:]
        assert "Reload Patroni when its patroni.yml changed" in result.output
        deadline = time.monotonic() + 60
        while _tags(lab, t).get("nofailover"):
            assert time.monotonic() < deadline, "the deploy left Patroni on the old file"
            time.sleep(1)
        assert "nofailover: false" in _in_postgres(t, f"cat {RUNNING}")
    finally:
        lab.wait_whole(300)


def _tags(lab: ClusterLab, t: LabTarget) -> dict:
    """The member's tags as its Patroni reports them (GET /patroni)."""
    url = f"https://{t.host.ip}:{t.settings.patroni_rest_port}/patroni"
    fetch = shlex.join(["python3", "-c", FETCH_SCRIPT, url, CONTAINER_CA])
    return json.loads(_in_postgres(t, fetch)).get("tags") or {}


def _deploy_in_background(t: LabTarget) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["make", "-s", "deploy", f"INVENTORY={t.inventory}"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def _lock_held(t: LabTarget) -> bool:
    out = t.ssh(show_command("docker", t.settings.container_name))
    return out.returncode == 0 and bool(out.stdout.strip())


def _lines(output: str, *words: str) -> str:
    return "\n".join(x.strip()[:300] for x in output.splitlines() if any(w in x for w in words))


def _roll(lab: ClusterLab, label: str) -> tuple[str, float]:
    """Deploy the inventory as it is now under a writer through HAProxy; a second deploy
    started while the roll holds the lock must be refused, naming the holder.
    (the first deploy's output, the longest write gap)."""
    t = lab.targets[0]
    writer = _writer(lab)
    writer.start()
    start = time.monotonic()
    proc = _deploy_in_background(t)
    try:
        deadline = time.monotonic() + 600
        while not _lock_held(t):
            assert proc.poll() is None, "the deploy ended before the roll took its lock"
            assert time.monotonic() < deadline, "no roll lock within 600 s"
            time.sleep(1)
        held_at = time.monotonic() - start
        second = t.make("deploy", timeout=900)
        second_done = time.monotonic() - start
        output, _ = proc.communicate(timeout=1800)
    finally:
        if proc.poll() is None:
            proc.kill()
        end = time.monotonic()
        time.sleep(1)
        writer.stop()
    first_done = end - start
    print(f"roll {label}: lock seen at {held_at:.0f} s, second deploy ended at "
          f"{second_done:.0f} s, first at {first_done:.0f} s")  # fmt: skip
    print(_lines(output, "rolling", "Error", "error:"))
    print("second:", _lines(second.output, "rolling", "Error", "error:"))
    assert proc.returncode == 0, output[-8000:]
    assert second.returncode != 0
    assert "a rolling operation is in progress" in second.output, _lines(
        second.output, "rolling", "rror"
    )
    assert "rolling restart by" in second.output
    assert "rolling restart:" not in second.output  # it restarted nothing
    gap = longest_gap([a.at for a in writer.acks], start, end)
    load = Path("/proc/loadavg").read_text().split()[0]
    record(f"cluster lab: rolling restart ({label}) longest write gap, load {load}", gap)
    record(f"cluster lab: rolling restart ({label}) whole deploy", first_done)
    return output, gap


def test_restart_only_setting_rolls_replicas_first_with_one_switchover(
    deployed_cluster_lab: ClusterLab,
) -> None:
    lab = deployed_cluster_lab
    inventory = lab.targets[0].inventory
    original = inventory.read_text()
    before = _max_connections(lab.targets[0])
    leader_before = lab.cluster.leader()
    try:
        _with_data(inventory, {"postgres_max_connections": before + 20})
        output, gap = _roll(lab, "max_connections raised")
        lab.wait_whole(300)
        assert [_max_connections(t) for t in lab.targets] == [before + 20] * 3
        line = next(x for x in output.splitlines() if "rolling restart:" in x)
        steps = line.split("rolling restart:", 1)[1].split(";")
        assert [s.split()[0] for s in steps] == ["restart", "restart", "switchover", "restart"]
        # the old leader appears twice in the steps (the line's "[host]" prefix aside):
        # switched over from, then restarted last
        steps_text = line.split("rolling restart:", 1)[1]
        assert (
            f"switchover from {leader_before}" in steps_text
            and steps_text.count(leader_before) == 2
            and steps[-1].split()[1] == leader_before
        ), line
        assert lab.cluster.leader() != leader_before
        # the figure is published by make bench's record; this only catches an outage
        # (all members down together), not a slow switchover
        assert gap <= 30, gap
    finally:
        inventory.write_text(original)
        output, gap = _roll(lab, "max_connections lowered back")
        lab.wait_whole(300)
    assert [_max_connections(t) for t in lab.targets] == [before] * 3
    line = next(x for x in output.splitlines() if "rolling restart:" in x)
    assert "switchover" not in line, line  # lowering: the leader first, in place
