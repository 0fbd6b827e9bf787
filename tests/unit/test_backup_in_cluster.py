"""Logical backups in a cluster (issue 16 item 4): where a run dumps, what it records, and
how verify and the monitor read a member that left the dump to a standby (pure parts)."""

from __future__ import annotations

import json
import re

import pytest

from pgsteady.backup.tool_config import backup_config
from pgsteady.backuptool.config import config_from_dict
from pgsteady.backuptool.databases import PROPERTIES_SQL
from pgsteady.backuptool.dump import COMPRESSION_SQL, META_SQL
from pgsteady.backuptool.errors import BackupError
from pgsteady.backuptool.source import ROLE_SQL, plan, recovery_conflict
from pgsteady.monitor.model import OK, WARNING, derive
from pgsteady.settings import HostFacts, build_settings
from tests.unit.test_monitor_model import SETTINGS, iso, sample_raw

PRIMARY = {"in_recovery": False, "receiver": None, "streaming": []}


def test_a_streaming_standby_dumps_and_says_so() -> None:
    p = plan({"in_recovery": True, "receiver": "streaming", "streaming": []}, cluster=True)
    assert (p.dump, p.source) == (True, "standby")


def test_the_primary_leaves_the_dump_to_its_streaming_standbys() -> None:
    p = plan({**PRIMARY, "streaming": ["pg2", "pg3"]}, cluster=True)
    assert not p.dump
    assert p.note == "the primary leaves the dump to its streaming standby(s): pg2, pg3"


def test_the_primary_dumps_as_the_fallback_when_no_standby_streams() -> None:
    p = plan(PRIMARY, cluster=True)
    assert (p.dump, p.source) == (True, "primary (fallback: no standby streams)")


@pytest.mark.parametrize("receiver", [None, "stopping", "waiting"])
def test_a_standby_that_does_not_stream_leaves_it(receiver: str | None) -> None:
    p = plan({"in_recovery": True, "receiver": receiver, "streaming": []}, cluster=True)
    assert not p.dump and "does not stream" in p.note


def test_off_a_cluster_the_run_dumps_where_it_runs() -> None:
    assert plan({**PRIMARY, "streaming": ["a-standby"]}, cluster=False).dump
    assert plan({"in_recovery": True, "receiver": None}, cluster=False).source == "standby"


def test_only_a_replay_cancellation_is_tried_again() -> None:
    assert recovery_conflict(
        "pg_dump failed in c (exit 1): ERROR:  canceling statement due to conflict with "
        "recovery\nDETAIL:  User query might have needed to see row versions"
    )
    assert not recovery_conflict("pg_dump failed in c (exit 1): could not connect")


def test_the_config_key_is_a_boolean() -> None:
    base = {"container": "c", "databases": ["app"], "backup_dir": "/b"}
    assert config_from_dict({**base, "cluster": True}).cluster is True
    assert config_from_dict(base).cluster is False
    with pytest.raises(BackupError, match="cluster: 'yes'; expected true or false"):
        config_from_dict({**base, "cluster": "yes"})


def test_only_a_cluster_members_config_carries_the_key() -> None:
    single = build_settings({}, HostFacts(ram_mb=0, cpus=0))
    assert "cluster" not in backup_config(single)  # a single host's file is unchanged
    member = single.model_copy(update={"postgres_cluster_name": "main"})
    assert backup_config(member)["cluster"] is True


def _status(success_h: float, skipped_h: float) -> str:
    run = {"time": iso(skipped_h * 3600), "ok": True, "skipped": "the primary leaves the dump"}
    return json.dumps({"last_success": {"time": iso(success_h * 3600)}, "last_run": run})


def test_the_monitor_does_not_call_a_member_late_that_left_the_dump_to_a_standby() -> None:
    st = derive(sample_raw(backup_status=_status(72, 2)), SETTINGS)
    assert st.status == OK, st.problems
    assert st.backup.last_run_skipped == "the primary leaves the dump"
    # a skipped run long ago does not hide a stale backup
    st = derive(sample_raw(backup_status=_status(26, 26)), SETTINGS)
    assert st.status == WARNING and "1d 2h old" in st.problems[0]


def test_a_standby_far_behind_in_replay_leaves_the_dump() -> None:
    """A standby catching up (WAL received faster than replayed) would dump old data under
    tonight's date: beyond max_replay_gap it leaves the dump, within it it dumps."""
    role = {"in_recovery": True, "receiver": "streaming", "streaming": [], "replay_gap": 2e9}
    p = plan(role, cluster=True, max_replay_gap=16 * 1024 * 1024)
    assert not p.dump
    assert p.note.startswith("this standby has 2000000000 bytes of WAL received but not yet")
    assert plan({**role, "replay_gap": 4096}, True, 16 * 1024 * 1024).dump
    assert plan(role, cluster=True).dump  # no limit configured: as before


def test_a_members_config_carries_the_replay_limit_from_the_lag_setting() -> None:
    single = build_settings({}, HostFacts(ram_mb=0, cpus=0))
    assert "max_replay_gap" not in backup_config(single)
    member = single.model_copy(
        update={"postgres_cluster_name": "main", "postgres_replica_max_lag": "16MB"}
    )
    config = config_from_dict(backup_config(member))
    assert config.max_replay_gap == 16 * 1024 * 1024
    base = {"container": "c", "databases": ["app"], "backup_dir": "/b"}
    with pytest.raises(BackupError, match="max_replay_gap: -1; expected an integer >= 0"):
        config_from_dict({**base, "max_replay_gap": -1})


def test_the_logical_backup_plan_is_one_for_the_whole_cluster() -> None:
    """The primary leaves the dump to its streaming standbys: a standby with backups off
    (or on another schedule) would leave the cluster with no dump and nothing red."""
    from pgsteady.cluster.inventory import cluster_of
    from pgsteady.cluster.topology import ClusterError
    from pgsteady.settings import defaults

    hosts = [
        (f"pg{i}", {"postgres_cluster_name": "main", "ssh_hostname": f"10.0.0.{i}"})
        for i in (1, 2, 3)
    ]
    cluster_of("main", hosts, defaults())
    hosts[1][1]["backup_enabled"] = False
    hosts[2][1]["backup_schedule"] = "@weekly"
    with pytest.raises(ClusterError) as exc:
        cluster_of("main", hosts, defaults())
    text = str(exc.value)
    assert "backup_enabled: differs between the members of cluster 'main'" in text
    assert "False on pg2" in text
    assert "backup_schedule: differs between the members of cluster 'main'" in text


@pytest.mark.parametrize(
    "query",
    [ROLE_SQL, META_SQL, COMPRESSION_SQL, PROPERTIES_SQL],
    ids=["ROLE_SQL", "META_SQL", "COMPRESSION_SQL", "PROPERTIES_SQL"],
)
def test_superuser_queries_resolve_no_operator_or_type_through_search_path(
    query: str,
) -> None:
    """Their sessions pin search_path, and each query qualifies what it names all the
    same: every comparison is OPERATOR(pg_catalog.op) (LIKE is an operator too) and
    every cast names pg_catalog."""
    sql = re.sub(r"OPERATOR\(pg_catalog\.[=<>!~]+\)", "", query)
    assert not re.search(r"[=<>~]|\bIN\s*\(|\b(I?LIKE|SIMILAR)\b", sql, re.I), sql
    assert re.findall(r"::\s*(\w+)", query) == ["pg_catalog"] * query.count("::")
