"""Pure parts of the cluster status, checks and operations: Patroni 3 and 4 documents,
the verdicts the live tests cannot stage (two primaries, a lagging replica), rendering."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from pgsteady.cluster import health, member_service, status
from pgsteady.cluster.operations import replica_fitness

PATRONI3 = {
    "members": [
        {"name": "pg2", "role": "replica", "state": "running", "host": "10.0.0.12",
         "port": 15432, "timeline": 3, "lag": 2048, "pending_restart": True},
        {"name": "pg1", "role": "leader", "state": "running", "host": "10.0.0.11",
         "port": 15432, "timeline": 3},
        {"name": "pg3", "role": "sync_standby", "state": "running", "host": "10.0.0.13",
         "port": 15432, "timeline": 3, "lag": "unknown"},
    ],
    "pause": True,
    "scheduled_switchover": {"at": "2026-12-01T03:00:00+00:00", "from": "pg1", "to": "pg2"},
}  # fmt: skip
PATRONI4 = {
    "members": [
        {"name": "a", "role": "primary", "state": "running", "host": "h", "timeline": 1},
        {"name": "b", "role": "replica", "state": "streaming", "host": "h2", "timeline": 1,
         "lag": 0},
    ]
}  # fmt: skip


def test_patroni3_document_normalised() -> None:
    cs = status.parse_cluster(PATRONI3)
    assert [m.name for m in cs.members] == ["pg1", "pg2", "pg3"]
    assert [m.role for m in cs.members] == ["primary", "replica", "replica"]
    assert cs.leader == "pg1"
    pg1, pg2, pg3 = cs.members
    assert pg1.lag_bytes == 0 and pg2.lag_bytes == 2048 and pg3.lag_bytes is None
    assert pg3.sync and not pg2.sync and pg2.pending_restart
    doc = cs.to_dict()
    assert doc["pending_restart"] == ["pg2"] and doc["paused"] is True
    assert doc["scheduled_switchover"]["to"] == "pg2"
    text = "\n".join(status.render_lines(cs))
    assert "pending-restart" in text and "sync" in text and "unknown" in text
    assert "leader: pg1" in text and "paused" in text and "scheduled switchover" in text


def test_master_is_primary_and_patroni4_streaming_replicates() -> None:
    assert status.normalise_role("master") == "primary"
    assert status.normalise_role("standby_leader") == "standby_leader"
    cs = status.parse_cluster(PATRONI4)
    assert cs.leader == "a"
    assert health.replica_problems(cs, ["a", "b"], ["b"], 1024) == []


def test_two_primaries_is_split_brain_and_a_stranger_leader_is_named() -> None:
    doc = {"members": [dict(m, role="master") for m in PATRONI4["members"]]}
    doc["members"][1]["state"] = "running"
    cs = status.parse_cluster(doc)
    assert cs.leader is None
    assert health.leader_problems(cs, ["a", "b"]) == ["2 running primaries: a, b (split brain)"]
    assert "leader: NONE (2 primaries: a, b)" in status.render_lines(cs)
    one = status.parse_cluster(PATRONI4)
    assert "not a member of the inventory" in health.leader_problems(one, ["b", "c"])[0]


def test_lagging_or_unknown_replica_fails_and_is_unfit() -> None:
    cs = status.parse_cluster(PATRONI3)
    problems = health.replica_problems(cs, ["pg1", "pg2", "pg3"], ["pg2", "pg3"], 1024)
    assert problems == ["pg2 is 2kB behind (limit 1kB)", "pg3's lag is unknown"]
    assert "behind the leader" in (replica_fitness(cs.member("pg2"), "pg2", 1024) or "")
    assert replica_fitness(cs.member("pg2"), "pg2", 4096) is None
    assert "unknown" in (replica_fitness(cs.member("pg3"), "pg3", 4096) or "")
    assert health.replica_problems(cs, ["pg2"], [], 4096) == [
        "pg2 is not streaming from the leader (no WAL sender for it)"
    ]


def test_archiver_verdicts() -> None:
    ok = health.LeaderView(
        archive_mode="on",
        archiver={"last_archived_time": "2026-11-30T04:00:01+00:00",
                  "last_failed_time": "2026-11-30T04:00:00+00:00"},
    )  # fmt: skip
    assert health.archiver_problems(ok, expected=True) == []
    failing = health.LeaderView(
        archive_mode="on", archiver={"last_failed_time": "2026-11-30T04:00:00+00:00"}
    )
    assert "archiving fails" in health.archiver_problems(failing, expected=True)[0]
    off = health.LeaderView(archive_mode="off")
    assert health.archiver_problems(off, expected=True) == ["archive_mode is off on the primary"]
    assert health.archiver_problems(off, expected=False) == []
    assert "in recovery" in health.archiver_problems(health.LeaderView(in_recovery=True), True)[0]


def test_unreachable_cluster_is_one_problem_everywhere() -> None:
    cs = status.ClusterStatus(error="no member answered GET /cluster: x")
    assert health.leader_problems(cs, ["a"]) == [cs.error]
    assert health.replica_problems(cs, ["a"], [], 1) == [cs.error]
    assert status.render_lines(cs) == [f"cluster: {cs.error}"]


@pytest.mark.parametrize(
    ("section", "host", "marked"),
    [
        ({"rc": 0, "out": "yes"}, "pg1", "pg1"),  # recorded: adopted
        ({"rc": 0, "out": "no"}, "pg2", "pg1"),  # another host than the marked seed
        ({"rc": 0, "out": "no"}, "pg1", ""),  # no marker: make cluster-adopt never ran
        ({"rc": 1, "out": ""}, "pg1", "pg1"),  # the section failed: no verdict
        ({}, "pg1", "pg1"),  # a collection without the section
    ],
)
def test_no_adoption_line_without_a_marked_seed_missing_its_record(
    section: dict[str, Any], host: str, marked: str
) -> None:
    assert status.parse_adoption(section, host, marked) is None


def test_the_adoption_line_names_the_seed_the_record_and_the_next_step() -> None:
    line = status.parse_adoption({"rc": 0, "out": "no\n"}, "pg1", "pg1")
    assert line is not None and line.startswith("make cluster-adopt marked pg1 as the seed")
    assert "app_dir/state/adopted" in line and "next make deploy" in line


def test_a_haproxy_file_is_reloaded_only_when_the_marker_holds_its_hash() -> None:
    cfg = "global\n    maxconn 2000\n"
    marker = member_service.haproxy_marker(cfg)
    assert marker == hashlib.sha256(cfg.encode()).hexdigest() + "\n"
    assert health.haproxy_marker_problems(cfg, marker, "/srv/c/haproxy.cfg") == []
    changed = health.haproxy_marker_problems(cfg + "# more\n", marker, "/srv/c/haproxy.cfg")
    assert changed and "changed after the last reload" in changed[0]
    none = health.haproxy_marker_problems(cfg, None, "/srv/c/haproxy.cfg")
    assert none and "no deploy recorded a reload" in none[0]
    assert health.haproxy_marker_problems(None, marker, "/srv/c/haproxy.cfg") == [
        "/srv/c/haproxy.cfg is missing"
    ]
