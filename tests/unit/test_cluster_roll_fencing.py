"""Review R9's rolling-change findings (issue 16 items 1, 2, 6): the lock fences the roll
(M1), a failed lock read stops the deploy (L1), the lock's text is made printable (L4),
the switchover candidate is the synchronous standby (L3), a running etcd is recreated
one host at a time inside the roll (H1) and a running member is never started outside
it (M3). The lock script against real etcd: tests/integration/test_cluster_roll_lock_etcd.py.
"""

from __future__ import annotations

import copy
import json
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest

from pgsteady.cluster import roll_driver, roll_lock, rolling
from pgsteady.cluster.roll_lock import Holder
from pgsteady.cluster.status import FETCH_SCRIPT, parse_cluster
from pgsteady.cluster.topology import cluster_from_mapping
from tests.unit.test_cluster_rolling import MAX_LAG, PATRONI4

CLUSTER = cluster_from_mapping(
    {
        "postgres_cluster_name": "lab",
        "members": [{"name": f"lab{i}", "address": f"10.1.0.{i + 1}"} for i in range(1, 5)],
    }
)


# --- L3 ---------------------------------------------------------------------------------


def test_the_switchover_goes_to_the_sync_standby_even_when_it_needed_no_cycle() -> None:
    """R9 L3: lab1 leads, lab2 is the synchronous standby and needs nothing, lab3 (async)
    was cycled: Patroni refuses lab3 as the candidate, so lab2 it is."""
    doc = copy.deepcopy(PATRONI4)
    doc["members"][1].update(role="sync_standby")
    doc["members"][1].pop("pending_restart")
    cs = parse_cluster(doc)
    st = rolling.RollState({"lab1", "lab3"}, cycled=["lab3"])
    assert rolling.next_step(cs, st, MAX_LAG) == rolling.Step("switchover", "lab1", "lab2")
    # asynchronous: a cycled replica is still preferred to one that needed nothing
    doc["members"][1].update(role="replica")
    step = rolling.next_step(parse_cluster(doc), st, MAX_LAG)
    assert step == rolling.Step("switchover", "lab1", "lab3")


# --- L4 ---------------------------------------------------------------------------------


def test_the_holder_text_reaches_the_terminal_without_control_characters() -> None:
    raw = "\x1b]0;pwned\x07\x1b[2Jsomeone"
    foreign = Holder.parse(raw)
    assert (
        foreign is not None and "\x1b" not in foreign.operation and "\x07" not in foreign.operation
    )
    assert foreign.operation.endswith("someone")
    doc = json.dumps({"by": "a\x1b[31mb", "operation": "x\ny", "since": "\x9b1m" + "z" * 200})
    held = Holder.parse(doc)
    assert held is not None
    assert all(c.isprintable() for c in held.describe()) and len(held.since) == 80


# --- L1 ---------------------------------------------------------------------------------


def test_a_failed_lock_read_is_never_free() -> None:
    h = Holder("deploy-box pid 42", "rolling restart", "2026-11-30T08:00:00Z")
    assert roll_lock.parse_fact("read\n") is None
    assert roll_lock.parse_fact("read") is None  # the member's container does not run
    assert roll_lock.parse_fact(f"read\n{h.to_json()}\n") == h
    for answer in ("", "unreadable\n", "unreadable\netcd: https://10.1.0.2:2379: timed out"):
        with pytest.raises(roll_lock.LockUnreadable, match="could not be read"):
            roll_lock.parse_fact(answer)


def _fact_output(tmp_path: Path, running: str, show_rc: int, show_out: str) -> str:
    """fact_command run by sh with a stand-in docker: ``inspect`` says ``running``, the
    lock script (``exec``) prints ``show_out`` and exits ``show_rc``."""
    docker = tmp_path / "docker"
    docker.write_text(
        "#!/bin/sh\n"
        f'case "$1" in inspect) echo {running};; '
        f"exec) echo {shlex.quote(show_out)}; echo 'etcd: every host refused' >&2; "
        f"exit {show_rc};; "
        "esac\n"
    )
    docker.chmod(0o755)
    cmd = roll_lock.fact_command(str(docker), "labm-postgres")
    proc = subprocess.run(["sh", "-c", cmd], capture_output=True, text=True, check=True)
    return proc.stdout


def test_the_fact_command_tells_unreadable_from_free(tmp_path: Path) -> None:
    assert roll_lock.parse_fact(_fact_output(tmp_path, "false", 1, "")) is None
    assert roll_lock.parse_fact(_fact_output(tmp_path, "true", 0, "")) is None
    held = _fact_output(tmp_path, "true", 0, '{"by": "b", "operation": "o", "since": "s"}')
    assert roll_lock.parse_fact(held) == Holder("b", "o", "s")
    with pytest.raises(roll_lock.LockUnreadable, match="every host refused"):
        roll_lock.parse_fact(_fact_output(tmp_path, "true", 1, ""))


# --- M1 ---------------------------------------------------------------------------------


class FakeSeed:
    """The seed's shell: /cluster answers from ``doc``; the lock script's actions are
    recorded; ``renew`` fails once ``lost`` is set (the script's 'lost: ...' exit)."""

    def __init__(self) -> None:
        self.doc = copy.deepcopy(PATRONI4)
        for m in self.doc["members"]:
            m.pop("pending_restart", None)
        self.now = 0.0
        self.lost = False
        self.calls: list[str] = []
        self.back_at: dict[str, float] = {}

    def run(self, command: str) -> tuple[bool, str, str]:
        argv = shlex.split(command)[5:]
        if argv[:3] == ["python3", "-c", FETCH_SCRIPT]:
            doc = copy.deepcopy(self.doc)
            for m in doc["members"]:
                if self.now < self.back_at.get(m["name"], 0):
                    m["state"] = "starting"
            return True, json.dumps(doc), ""
        if argv[0] == "patronictl":  # restart CLUSTER MEMBER --force: back at once
            self.calls.append(f"{argv[3]} {argv[5]}")
            for m in self.doc["members"]:
                if m["name"] == argv[5]:
                    m.pop("pending_restart", None)
                    m.pop("pending_restart_reason", None)
            return True, "", ""
        action = argv[3]
        self.calls.append(f"{action}@{self.now:g}")
        if action == "acquire":
            return True, "ok 7587\n", ""
        if action == "renew" and self.lost:
            return False, "", "lost: the lock's lease 7587 has lapsed (TTL 0)"
        return True, "ok 900\n", ""

    def sleep(self, seconds: float) -> None:
        self.now += seconds

    def seed(self) -> roll_driver.Seed:
        return roll_driver.Seed(
            self.run, "lab-postgres", CLUSTER, "lab1", clock=lambda: self.now, sleep=self.sleep
        )


def test_a_lock_lost_before_a_step_touches_no_member() -> None:
    fake = FakeSeed()
    recreated: list[str] = []

    def recreate(name: str) -> None:
        recreated.append(name)
        fake.lost = name == "lab2"  # the lease lapses while lab2 is recreated

    holder = Holder("deploy-box pid 42", "rolling recreate", "now")
    with pytest.raises(rolling.RollRefused, match="the roll lock is no longer ours"):
        roll_driver.recreate_roll(fake.seed(), holder, MAX_LAG, {"lab2", "lab3"}, recreate)
    assert recreated == ["lab2"]  # lab3 never restarted under a lock that is not ours
    fake.lost, recreated[:] = True, []
    with pytest.raises(rolling.RollRefused, match="lapsed"):
        roll_driver.recreate_roll(fake.seed(), holder, MAX_LAG, {"lab2"}, recreate)
    assert recreated == []  # lapsed between the acquire and the first step


def test_the_lease_is_renewed_while_a_step_is_waited_for() -> None:
    fake = FakeSeed()

    def recreate(name: str) -> None:
        fake.back_at[name] = fake.now + 250  # streams again after 250 s

    holder = Holder("deploy-box pid 42", "rolling recreate", "now")
    roll_driver.recreate_roll(fake.seed(), holder, MAX_LAG, {"lab2"}, recreate)
    renewals = [float(c.split("@")[1]) for c in fake.calls if c.startswith("renew")]
    gaps = [b - a for a, b in zip([0.0, *renewals], renewals, strict=False)]
    assert len(renewals) >= 5 and max(gaps) <= roll_driver.KEEPALIVE_S + roll_driver.POLL_S
    assert fake.calls[-1].startswith("release")
    # a step's unrenewed stretch (the member's up, then the etcd wait) stays below the TTL
    assert roll_driver.UP_TIMEOUT_S + roll_driver.ETCD_HEALTHY_S < roll_lock.TTL_S


# --- H1 ---------------------------------------------------------------------------------


def test_an_etcd_host_is_recreated_then_waited_for_before_the_next_member(
    tmp_path: Path,
) -> None:
    ctl = [str(tmp_path / "etcdctl")]
    up = "/srv/pg/bin/pgsteady-ctl up"
    first, wait = roll_driver.recreate_commands(CLUSTER, "lab2", up, ctl)
    assert first == f"timeout {roll_driver.UP_TIMEOUT_S} {up}"
    assert roll_driver.recreate_commands(CLUSTER, "lab4", up, ctl) == [first]  # no etcd there
    # the wait: until etcdctl says every member is healthy (a stand-in answering after 2 s)
    count = tmp_path / "count"
    count.write_text("")
    (tmp_path / "etcdctl").write_text(
        f'#!/bin/sh\necho "$*" >> {count}\n[ "$(wc -l < {count})" -ge 3 ]\n'
    )
    (tmp_path / "etcdctl").chmod(0o755)
    proc = subprocess.run(["sh", "-c", wait], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert count.read_text().splitlines() == ["endpoint health --cluster"] * 3


def _etcd_plan(etcd_running: bool) -> list[str]:
    from pyinfra.operations import files

    from pgsteady.settings import Settings
    from tasks import cluster_member
    from tests.support.pyinfra_plan import plan

    s = Settings(compose_project="labm")

    def task() -> None:
        image = files.file(name="Image stand-in", path="/nonexistent/image-marker")
        p = cluster_member.Pending("docker compose", [image], True)
        cluster_member.start_etcd(s, p, True)

    def inspect(kind: str, object_id: str) -> dict[str, Any]:
        assert object_id == "labm-etcd"
        return {"State": {"Running": etcd_running}}

    _, p = plan(task, facts={"DockerInspect": inspect})
    return p.execute(changed=["Image stand-in"])


def test_a_running_etcd_is_not_recreated_by_every_host_at_once() -> None:
    """R9 H1: the image moved on every host; a running etcd waits for the roll."""
    assert "Start etcd (its quorum before any Patroni)" not in _etcd_plan(etcd_running=True)
    assert "Start etcd (its quorum before any Patroni)" in _etcd_plan(etcd_running=False)


# --- M3 ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("container", "running"),
    [
        ({"State": {"Running": True, "Health": {"Status": "healthy"}}}, True),
        ({"State": {"Running": True, "Health": {"Status": "unhealthy"}}}, True),
        ({"State": {"Running": True, "Health": {"Status": "starting"}}}, True),
        ({"State": {"Running": False}}, False),
        (None, False),
    ],
)
def test_a_member_whose_postgres_runs_is_left_to_the_roll(
    monkeypatch: pytest.MonkeyPatch, container: dict[str, Any] | None, running: bool
) -> None:
    """R9 M3: an unhealthy moment under load (or a busy healthcheck) is no reason for
    start_member's out-of-roll 'up'; only a member whose Postgres container does not run
    starts outside the roll."""
    from pyinfra.operations import files

    from tasks import postgres
    from tests.support.pyinfra_plan import plan
    from tests.unit.test_tasks_postgres import settings

    monkeypatch.setattr(postgres.etcd, "compose_service", lambda s: None)  # no inventory here
    s = settings(
        postgres_cluster_name="lab",
        postgres_version=17,
        metrics_enabled=False,
        pgbouncer_enabled=False,
        pgbackrest_enabled=False,
        postgres_allowed_networks=["10.0.0.0/24"],
    )

    def task() -> Any:
        image = files.file(name="Image stand-in", path="/nonexistent/image-marker")
        return postgres.ensure(s, "docker compose", [image])

    facts = {
        "DockerInspect": lambda kind, object_id: container,
        "NumericStat": None,
        "FileState": None,
        "VolumePgVersion": lambda volume: None,
        "VolumeUpgradeIncomplete": lambda volume, state_dir: False,
        "File": None,
    }
    pending, _ = plan(task, facts=facts)
    assert pending.running is running


# --- M2 ---------------------------------------------------------------------------------


def test_a_running_container_older_than_its_compose_file_is_drift() -> None:
    """R9 M2: the hashes compose prints for the file on disk against the running
    containers' labels (the real compose CLI: tests/integration/test_cluster_stack_drift.py)."""
    from pgsteady.cluster import stack_drift

    out = "\n".join(
        [
            "#pgsteady-wanted",
            "postgres 1111",
            "etcd 2222",
            "haproxy 3333",
            "#pgsteady-running",
            "postgres 1111",
            "etcd 2000",
            "haproxy ",  # a container without the label (not made by compose): no verdict
            "other 9",  # not in the file (an orphan): pgsteady-ctl up removes it
        ]
    )
    assert stack_drift.drifted(out) == ["etcd"]
    assert stack_drift.drifted("#pgsteady-wanted\n#pgsteady-running\npostgres 1\n") == []
    command = stack_drift.drift_command("docker-compose -p labm -f /srv/pg/c.yml", "labm")
    assert "config --hash='*'" in command and "label=com.docker.compose.project=labm" in command


# --- M4 ---------------------------------------------------------------------------------


def test_a_lowering_an_earlier_run_patched_still_restarts_the_leader_first() -> None:
    """R9 M4: the first roll of a max_connections lowering was refused after the DCS patch;
    the next run sees no delta in the DCS, but the leader still runs 200 where the DCS
    says 100 (Patroni 4's pending_restart_reason), so the leader goes first, in place."""
    fake = FakeSeed()
    reason = {"max_connections": {"old_value": "200", "new_value": "100"}}
    for m in fake.doc["members"]:
        m.update(pending_restart=True, pending_restart_reason=reason)
    assert rolling.leader_lowered(parse_cluster(fake.doc)) == ["max_connections"]
    holder = Holder("deploy-box pid 42", "rolling restart", "now")
    done = roll_driver.restart_roll(fake.seed(), holder, MAX_LAG, [], 0.0)
    assert [line.split(" (")[0] for line in done] == [
        "restart lab1",
        "restart lab2",
        "restart lab3",
    ]
    assert [c for c in fake.calls if c.startswith("restart")] == [
        "restart lab1",
        "restart lab2",
        "restart lab3",
    ]
    # raising (the leader runs less than the DCS value): replicas first, as before
    raised = {"max_connections": {"old_value": "100", "new_value": "200"}}
    fake.doc["members"][0].update(pending_restart=True, pending_restart_reason=raised)
    assert rolling.leader_lowered(parse_cluster(fake.doc)) == []


@pytest.mark.parametrize(("stale", "reloads"), [(True, True), (False, False)])
def test_a_patroni_yml_an_earlier_run_wrote_is_still_reloaded(
    monkeypatch: pytest.MonkeyPatch, stale: bool, reloads: bool
) -> None:
    """R9 M2: nothing changed in THIS run, but the running copy differs from the file on
    disk (the run that wrote it stopped before its reload): the reload runs."""
    from pyinfra.operations import files

    from pgsteady.settings import Settings
    from tasks import cluster_member, cluster_roll
    from tests.support.pyinfra_plan import plan

    monkeypatch.setattr(cluster_roll, "context", lambda s: (CLUSTER, CLUSTER.members[0]))
    s = Settings(compose_project="labm")

    def task() -> None:
        written = files.file(name="patroni.yml stand-in", path="/nonexistent/patroni.yml")
        cluster_roll.reload_patroni(s, cluster_member.Pending("docker compose", [written], True))

    _, p = plan(task, facts={"PatroniConfigStale": lambda container: stale})
    ran = p.execute(changed=[])
    assert ("Reload Patroni when its patroni.yml changed (no restart)" in ran) is reloads
