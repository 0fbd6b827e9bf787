"""The rolling-change planner (pgsteady/cluster/rolling.py) on Patroni 3.x and 4.x
``GET /cluster`` documents: who goes first, when to switch over, what is refused. A small
simulation applies each step to the document the way Patroni reports its effect."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from pgsteady.cluster import rolling
from pgsteady.cluster.roll_lock import Holder
from pgsteady.cluster.status import parse_cluster

MAX_LAG = 16 * 1024 * 1024

#: Patroni 4.0.7's /cluster after a DCS patch of shared_buffers (every member flagged).
PATRONI4 = {
    "members": [
        {"name": "lab1", "role": "leader", "state": "running", "api_url": "https://10.1.0.2:8008/patroni",
         "host": "10.1.0.2", "port": 15432, "timeline": 1, "pending_restart": True,
         "pending_restart_reason": {"shared_buffers": {"old_value": "128MB", "new_value": "1GB"}}},
        {"name": "lab2", "role": "replica", "state": "streaming", "host": "10.1.0.3", "port": 15432,
         "timeline": 1, "receive_lag": 0, "replay_lag": 0, "lag": 0, "pending_restart": True},
        {"name": "lab3", "role": "replica", "state": "streaming", "host": "10.1.0.4", "port": 15432,
         "timeline": 1, "receive_lag": 0, "replay_lag": 0, "lag": 0, "pending_restart": True},
    ],
    "scope": "lab",
}  # fmt: skip
#: Patroni 3.0.2's: the leader says "leader" in /cluster, replicas "running", lag numbers.
PATRONI3 = {
    "members": [
        {"name": "pg1", "role": "leader", "state": "running", "host": "10.0.0.11", "port": 15432,
         "timeline": 2, "pending_restart": True},
        {"name": "pg2", "role": "replica", "state": "running", "host": "10.0.0.12", "port": 15432,
         "timeline": 2, "lag": 0, "pending_restart": True},
    ]
}  # fmt: skip


def _apply(doc: dict[str, Any], step: rolling.Step) -> None:
    """What Patroni reports after the step: a restarted member runs the new settings; a
    switchover swaps the two roles."""
    by = {m["name"]: m for m in doc["members"]}
    if step.action == "cycle":
        by[step.member].pop("pending_restart", None)
    else:
        assert step.candidate is not None
        by[step.member].update(role="replica", state="streaming", lag=0)
        by[step.candidate].update(role="leader", state="running")
        by[step.candidate].pop("lag", None)


def _roll(doc: dict[str, Any], primary_first: bool = False) -> list[str]:
    doc = copy.deepcopy(doc)
    cs = parse_cluster(doc)
    st = rolling.RollState(rolling.pending_members(cs), primary_first=primary_first)
    steps = []
    while (step := rolling.next_step(parse_cluster(doc), st, MAX_LAG)) is not None:
        steps.append(step.describe())
        _apply(doc, step)
        rolling.record(st, step)
        assert len(steps) < 10
    assert rolling.pending_members(parse_cluster(doc)) == set()
    return steps


def test_patroni4_replicas_first_then_one_switchover_then_the_old_leader() -> None:
    assert _roll(PATRONI4) == [
        "restart lab2",
        "restart lab3",
        "switchover from lab1 to lab2",
        "restart lab1",
    ]


def test_patroni3_document_rolls_the_same_way() -> None:
    assert _roll(PATRONI3) == ["restart pg2", "switchover from pg1 to pg2", "restart pg1"]


def test_lowering_an_at_least_primary_parameter_restarts_the_leader_first() -> None:
    before = {"max_connections": "200", "shared_buffers": "128MB", "max_wal_senders": 10}
    after = {"max_connections": 100, "shared_buffers": "256MB", "max_wal_senders": "10"}
    assert rolling.lowered(before, after) == ["max_connections"]
    assert rolling.lowered(after, before) == []  # raising: replicas first
    assert _roll(PATRONI4, primary_first=True) == ["restart lab1", "restart lab2", "restart lab3"]


def test_only_the_leader_pending_still_switches_over_once() -> None:
    doc = copy.deepcopy(PATRONI4)
    for m in doc["members"][1:]:
        m.pop("pending_restart")
    assert _roll(doc) == ["switchover from lab1 to lab2", "restart lab1"]


def test_nothing_pending_is_no_step() -> None:
    doc = copy.deepcopy(PATRONI4)
    for m in doc["members"]:
        m.pop("pending_restart")
    assert _roll(doc) == []


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"lab3": {"state": "starting"}}, "lab3 is replica in state starting"),
        ({"lab2": {"lag": 64 * 1024 * 1024}}, "lab2 is 64MB behind the leader"),
        ({"lab2": {"lag": "unknown"}}, "lab2's replication lag is unknown"),
        ({"lab1": {"state": "stopped"}}, "no single running leader"),
        ({"lab2": {"role": "leader", "state": "running"}}, "no single running leader"),
    ],
)
def test_a_cluster_that_is_not_whole_is_refused_by_name(
    change: dict[str, dict[str, Any]], reason: str
) -> None:
    doc = copy.deepcopy(PATRONI4)
    for m in doc["members"]:
        m.update(change.get(m["name"], {}))
    with pytest.raises(rolling.RollRefused, match=reason):
        _roll(doc)


def test_paused_cluster_and_one_member_are_refused() -> None:
    with pytest.raises(rolling.RollRefused, match="maintenance mode"):
        _roll({**PATRONI4, "pause": True})
    alone = {"members": [PATRONI4["members"][0]]}
    with pytest.raises(rolling.RollRefused, match="no replica to switch over to from lab1"):
        _roll(alone)


def test_a_leader_still_pending_after_the_switchover_stops_the_roll() -> None:
    doc = copy.deepcopy(PATRONI3)
    cs = parse_cluster(doc)
    st = rolling.RollState(rolling.pending_members(cs))
    st.switched_from = "pg0"
    st.cycled = ["pg2"]
    with pytest.raises(rolling.RollRefused, match="pg1 leads after the switchover from pg0"):
        rolling.next_step(cs, st, MAX_LAG)


def test_lock_holder_round_trips_and_reads_foreign_values() -> None:
    h = Holder("deploy-box pid 42", "rolling restart", "2026-11-30T08:00:00Z")
    assert Holder.parse(h.to_json()) == h
    assert h.describe() == "rolling restart by deploy-box pid 42 since 2026-11-30T08:00:00Z"
    assert Holder.parse("") is None
    assert Holder.parse("someone") == Holder("unknown", "someone", "?")


def test_status_and_the_monitor_report_a_roll_in_progress() -> None:
    import json

    from pgsteady.cluster import status
    from pgsteady.monitor import model
    from tests.unit.test_monitor_model import sample_raw

    h = Holder("deploy-box pid 42", "rolling restart", "2026-11-30T08:00:00Z")
    members = {"members": PATRONI4["members"]}
    st = model.derive(sample_raw(cluster=json.dumps(members), cluster_roll=h.to_json()), None)
    assert st.cluster is not None and st.cluster.rolling == h.describe()
    assert any("rolling change in progress: rolling restart by" in p for p in st.problems)
    assert model.report([st])["cluster"]["rolling"] == h.describe()
    assert f"rolling change in progress: {h.describe()}" in status.render_lines(st.cluster)
    free = model.derive(sample_raw(cluster=json.dumps(members), cluster_roll=""), None)
    assert free.cluster is not None and free.cluster.rolling is None
    assert not any("rolling" in p for p in free.problems)
    assert status.parse_rolling({"rc": 1, "out": "", "err": "etcd: down"}) is None


def test_the_lock_script_takes_no_secret_in_argv() -> None:
    from pgsteady.cluster import roll_lock

    argv = roll_lock.script_argv("acquire", "value", "900")
    assert argv[:2] == ["python3", "-c"] and argv[3:] == ["acquire", "value", "900"]
    script = argv[2]
    # the password comes from the member's secret file, the rest from Patroni's config
    assert f'open("{roll_lock.PASSWORD_FILE}")' in script
    assert f'open("{roll_lock.RUNNING_CONFIG}")' in script
    assert "password" not in " ".join(argv[3:]) and "environ" not in script
    assert '"create_revision": "0"' in script  # created only when absent: one holder
    command = roll_lock.show_command("docker", "labm-postgres")
    assert command.startswith("docker exec -u postgres labm-postgres python3 -c ")


def test_synchronous_mode_switches_over_to_the_synchronous_standby() -> None:
    doc = copy.deepcopy(PATRONI4)
    doc["members"][2]["role"] = "sync_standby"  # lab3: Patroni refuses any other candidate
    assert _roll(doc) == [
        "restart lab2",
        "restart lab3",
        "switchover from lab1 to lab3",
        "restart lab1",
    ]
