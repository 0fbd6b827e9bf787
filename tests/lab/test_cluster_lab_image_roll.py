"""A minor image roll of a running cluster (issue 16, item 2's "rolling minor upgrade"),
on the session's shared 3-host cluster lab under a writer committing through HAProxy.

The product decides "the image changed" when its image operation moves the alias
(``Settings.image_alias``) to another image: for the Debian source, the build finds its
recipe's tag and tags the alias with it. The test gives each host a NEW image under the
same recipe tag (the recipe's image with one more label: a new image id, the same
major, as a rebuild with security updates gives) and removes the alias, so the deploy's
image operation moves the alias. Expected: every member's container is recreated on the
new image, one at a time, replicas first, with exactly one switchover; the data volume
is kept (no re-clone: the system identifier and the rows are the same); the write gap
is measured (goal <= 10 s). After the roll: a second deploy changes nothing, make verify
passes on every member (cluster/no_rolling_change_in_progress: the lock was released), and
a haproxy.cfg that differs from what the deploy renders is rewritten and the RUNNING
HAProxy reloads it (tasks/haproxy_reload.py: same container, no restart). Then the
original image is rolled back the same way, and while that roll holds the lock,
``make switchover`` is refused naming it; the lab is left whole on its original image."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from pgsteady.cluster import member_service as ms
from pgsteady.lab.failover import Ack, longest_gap
from pgsteady.stack.layout import CONFIG_MOUNT
from tests.lab.conftest import ClusterLab, LabTarget, record
from tests.lab.test_cluster_lab_rolling import (
    _deploy_in_background,
    _in_postgres,
    _lines,
    _lock_held,
    _writer,
)

#: Two rolls of three container recreations, three more deploys and make verify (~11 min
#: after the lab's ~13 min build, on the loaded 2-core VM): outside
#: make test; run with PGSTEADY_LAB_IMAGE_ROLL=1 (docs/operations.md, Rolling changes).
pytestmark = [
    pytest.mark.timeout(3600),
    pytest.mark.skipif(
        os.environ.get("PGSTEADY_LAB_IMAGE_ROLL") != "1", reason="PGSTEADY_LAB_IMAGE_ROLL=1 runs it"
    ),
]
#: The test's own tags on both images while it runs (removed at the end).
KEEP = "pgsteady-rolltest"
#: make verify's checks that fail in the lab for the lab's own reasons (its clock).
LAB_ENVIRONMENT = {"host/time_synchronised"}


def _image_id(t: LabTarget, ref: str) -> str:
    out = t.ssh(f"docker image inspect -f '{{{{.Id}}}}' {ref}")
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def _running_image(t: LabTarget) -> str:
    out = t.ssh(f"docker inspect -f '{{{{.Image}}}}' {t.settings.container_name}")
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def _recipe_tag(t: LabTarget) -> str:
    fmt = "{{range .RepoTags}}{{println .}}{{end}}"
    out = t.ssh(f"docker image inspect -f '{fmt}' {t.settings.image_alias}")
    assert out.returncode == 0, out.stderr
    tags = [x for x in out.stdout.split() if "-debian-" in x]
    assert tags, out.stdout
    return tags[0]


def _stage(t: LabTarget, tag: str, image: str) -> None:
    """``tag`` names ``image`` and the alias is gone: the next deploy moves the alias.
    (Both images keep a test tag meanwhile, so removing the alias only untags.)"""
    out = t.ssh(f"docker tag {image} {tag} && docker rmi {t.settings.image_alias}")
    assert out.returncode == 0, out.stderr


def _new_image(t: LabTarget, tag: str, n: str) -> str:
    """The recipe's image with one more label, committed as a new image id."""
    cid = t.ssh(f"docker create {tag}").stdout.strip()
    try:
        label = f"LABEL io.pgsteady.test-roll={n}"
        out = t.ssh(f"docker commit --change '{label}' {cid} {KEEP}:new")
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()
    finally:
        t.ssh(f"docker rm {cid}")


def _roll(lab: ClusterLab, label: str, switchover_refused: bool = False) -> tuple[str, float]:
    """Deploy under a writer through HAProxy: (the deploy's output, the longest write
    gap). With ``switchover_refused``, ``make switchover`` is run while the roll holds
    the lock and must be refused naming the holder."""
    t = lab.targets[0]
    writer = _writer(lab)
    writer.start()
    start, wall = time.monotonic(), time.time()
    proc = _deploy_in_background(t)
    refusal = None
    try:
        if switchover_refused:
            deadline = time.monotonic() + 900
            while not _lock_held(t):
                assert proc.poll() is None, "the deploy ended before the roll took its lock"
                assert time.monotonic() < deadline, "no roll lock within 900 s"
                time.sleep(1)
            leader = lab.cluster.leader()
            refusal = t.make("switchover", timeout=300)
            assert lab.cluster.leader() == leader, "a refused switchover moved the leader"
        output, _ = proc.communicate(timeout=1800)
    finally:
        if proc.poll() is None:
            proc.kill()
        end = time.monotonic()
        time.sleep(1)
        writer.stop()
    print(f"roll {label}: {end - start:.0f} s;", _lines(output, "rolling", "Error", "error:"))
    assert proc.returncode == 0, output[-8000:]
    if refusal is not None:
        print("switchover during the roll:", refusal.output.strip()[-500:])
        assert refusal.returncode != 0, refusal.output[-3000:]
        assert "a rolling operation is in progress in cluster lab" in refusal.output
        assert "rolling recreate by" in refusal.output, refusal.output[-3000:]
    gap = longest_gap([a.at for a in writer.acks], start, end)
    _where(lab, writer.acks, start, wall, gap, writer.errors)
    load = Path("/proc/loadavg").read_text().split()[0]
    record(f"cluster lab: minor image roll ({label}) longest write gap, load {load}", gap)
    record(f"cluster lab: minor image roll ({label}) whole deploy, load {load}", end - start)
    return output, gap


def _where(
    lab: ClusterLab, acks: list[Ack], start: float, wall: float, gap: float, errors: list[str]
) -> None:
    """Print when the longest gap began (UTC) beside each host's container start times,
    so the figure can be put down to a step (the switchover, or the writer's HAProxy
    recreated with its host's stack)."""
    times = sorted([start, *(a.at for a in acks)])
    began = next((a for a, b in zip(times, times[1:], strict=False) if b - a >= gap), times[-1])
    at = time.strftime("%H:%M:%S", time.gmtime(wall + began - start))
    inside = [e[:160] for e in errors if began <= float(e.split()[0]) <= began + gap]
    print(f"longest gap {gap:.2f} s from {at} UTC; writer errors in it: {inside[:3]}")
    for t in lab.targets:
        fmt = "{{.Name}} {{.State.StartedAt}}"
        names = f"{t.settings.container_name} {ms.haproxy_container(t.settings)}"
        print(" ", t.host.name, t.ssh(f"docker inspect -f '{fmt}' {names}").stdout.split())


def _haproxy_reloads_a_changed_cfg(lab: ClusterLab) -> None:
    """A stale haproxy.cfg on a host: the deploy writes the rendered one back and the
    running HAProxy reloads it (the container is not restarted and sees the new file)."""
    t = lab.targets[1]
    name = ms.haproxy_container(t.settings)
    started = f"docker inspect -f '{{{{.State.StartedAt}}}}' {name}"
    before = t.ssh(started).stdout.strip()
    cfg = f"{t.settings.layout.config}/{ms.HAPROXY_CFG}"
    assert t.ssh(f"echo '# stale line' >> {cfg}").returncode == 0
    since = t.ssh("date -u +%Y-%m-%dT%H:%M:%SZ").stdout.strip()
    result = lab.targets[0].make("deploy", timeout=1800)
    assert result.returncode == 0, result.output[-8000:]
    assert "Reload HAProxy for its changed haproxy.cfg" in result.output, _lines(
        result.output, "HAProxy"
    )
    assert t.ssh(started).stdout.strip() == before, "HAProxy was restarted, not reloaded"
    seen = t.ssh(f"docker exec {name} cat {CONFIG_MOUNT}/{ms.HAPROXY_CFG}")
    assert seen.returncode == 0 and "# stale line" not in seen.stdout, seen.stderr
    logs = t.ssh(f"docker logs --since {since} {name} 2>&1").stdout
    assert "Reloading HAProxy" in logs, logs[-2000:]


#: A file each member's data directory carries through the roll: a re-clone (which keeps
#: the system identifier) or a new volume would lose it.
MARKER = (
    "d=$(psql -XAtq -d postgres -c 'SHOW data_directory') && {} \"$d/pgsteady-rolltest.marker\""
)


def _started(t: LabTarget) -> str:
    out = t.ssh(f"docker inspect -f '{{{{.State.StartedAt}}}}' {t.settings.container_name}")
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_a_new_image_rolls_one_member_at_a_time(deployed_cluster_lab: ClusterLab) -> None:
    lab = deployed_cluster_lab
    lab.wait_whole(300)
    sysid = "psql -XAtq -d postgres -c 'SELECT system_identifier FROM pg_control_system()'"
    ids = {_in_postgres(t, sysid).strip() for t in lab.targets}
    for t in lab.targets:
        _in_postgres(t, MARKER.format("touch"))
    tags = {t.host.name: _recipe_tag(t) for t in lab.targets}
    originals = {t.host.name: _image_id(t, t.settings.image_alias) for t in lab.targets}
    leader_before = lab.cluster.leader()
    news = {}
    for t in lab.targets:
        assert t.ssh(f"docker tag {originals[t.host.name]} {KEEP}:orig").returncode == 0
        news[t.host.name] = _new_image(t, tags[t.host.name], str(time.time_ns()))
        _stage(t, tags[t.host.name], news[t.host.name])
    try:
        output, gap = _roll(lab, "new image id, same major")
        lab.wait_whole(300)
        for t in lab.targets:
            assert _running_image(t) == news[t.host.name], t.host.name
        line = next(x for x in output.splitlines() if "rolling recreate:" in x)
        steps = [s.split()[0] for s in line.split("rolling recreate:", 1)[1].split(";")]
        assert steps == ["recreate", "recreate", "switchover", "recreate"], line
        assert f"switchover from {leader_before}" in line, line
        assert {_in_postgres(t, sysid).strip() for t in lab.targets} == ids
        for t in lab.targets:  # the same data directory: no re-clone, no new volume
            _in_postgres(t, MARKER.format("test -f"))
        started = {t.host.name: _started(t) for t in lab.targets}  # ISO 8601, UTC
        assert max(started, key=started.__getitem__) == leader_before, started  # last
        again = lab.targets[0].make("deploy", timeout=1800)
        assert again.returncode == 0 and again.changed == 0, again.changed_operations()
        fails = [x for x in lab.verify().output.splitlines() if x.startswith("FAIL ")]
        assert {x.split("] ", 1)[1].split(":", 1)[0] for x in fails} <= LAB_ENVIRONMENT, fails
        # the lock is released: the check ran on each member and did not fail
        assert "cluster/no_rolling_change_in_progress:" not in lab.verify().output
        assert "checks:" in lab.verify().output, lab.verify().output[-4000:]
        _haproxy_reloads_a_changed_cfg(lab)
        assert gap <= 10, gap
    finally:
        for t in lab.targets:
            _stage(t, tags[t.host.name], originals[t.host.name])
        _roll(lab, "back to the original image", switchover_refused=True)
        lab.wait_whole(300)
        for t in lab.targets:
            t.ssh(f"docker rmi {KEEP}:orig {KEEP}:new")
            _in_postgres(t, MARKER.format("rm -f"))
    for t in lab.targets:
        assert _running_image(t) == originals[t.host.name], t.host.name
