"""The failover figures from the writers' records (pgsteady.lab.failover)."""

from __future__ import annotations

import pytest

from pgsteady.lab import failover
from pgsteady.lab.failover import Ack

OLD, NEW = "127.0.0.2|t0", "127.0.0.3|t1"


def acks(*items: tuple[int, float, str]) -> list[Ack]:
    return [Ack(n, at, inst) for n, at, inst in items]


def test_the_gap_skips_late_acks_of_the_faulted_server() -> None:
    # the old primary's backend commits once more just after the kill; the gap ends at
    # the first ack of another server instance
    rec = acks((1, 9.9, OLD), (2, 10.05, OLD), (3, 31.0, NEW), (4, 31.1, NEW))
    assert failover.first_ack_after(rec, 10.0) == rec[1]
    assert failover.first_ack_after(rec, 10.0, not_instance=OLD) == rec[2]
    assert failover.first_ack_after(rec, 40.0) is None
    figures = failover.trial_figures("primary_kill", rec, 10.0, 32.0, OLD)
    assert figures["seconds"] == 21.0
    assert figures["served_by"] == "127.0.0.3"
    assert figures["longest_gap_seconds"] == pytest.approx(20.95)


def test_faults_that_keep_the_instance_count_any_ack() -> None:
    rec = acks((1, 9.9, OLD), (2, 10.1, OLD), (3, 10.2, OLD))
    figures = failover.trial_figures("etcd_member_lost", rec, 10.0, 10.5, OLD)
    assert figures["seconds"] == pytest.approx(0.1)
    # the last stretch runs to the end of the trial
    assert figures["longest_gap_seconds"] == pytest.approx(0.3)


def test_quorum_loss_is_measured_from_the_repair() -> None:
    rec = acks((1, 10.5, OLD), (2, 19.0, OLD), (3, 42.0, OLD))
    figures = failover.trial_figures("etcd_quorum_lost", rec, 10.0, 43.0, OLD, healed_at=40.0)
    assert figures["seconds"] == 2.0
    assert figures["writes_went_on_seconds"] == 9.0
    assert figures["fault_lasted_seconds"] == 30.0
    assert figures["longest_gap_seconds"] == 23.0


def test_no_ack_after_the_fault_is_no_figure_and_the_whole_trial_is_the_gap() -> None:
    figures = failover.trial_figures("switchover", acks((1, 9.0, OLD)), 10.0, 70.0, OLD)
    assert figures["seconds"] is None
    assert figures["longest_gap_seconds"] == 60.0


def test_unknown_kind_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="'unplug'.*postmaster_kill"):
        failover.trial_figures("unplug", [], 0.0, 1.0, OLD)


def test_loss_is_the_acknowledged_numbers_the_leader_lacks() -> None:
    assert failover.lost([5, 1, 2, 3], [1, 3, 4]) == [2, 5]
    assert failover.lost([1, 2], [1, 2, 3]) == []


def test_one_move_of_the_primary_is_no_split_brain() -> None:
    times = {"m1": [1.0, 1.1, 1.2], "m2": [5.0, 5.1]}
    assert failover.interleaved(times, 0.0, 10.0) == []
    assert failover.turns(times, 0.0, 10.0) == [("m1", 1.0, 1.2, 3), ("m2", 5.0, 5.1, 2)]


def test_an_old_primary_acknowledging_after_the_new_one_is_split_brain() -> None:
    # resumed after a pause, m1 commits once more after m2 already acknowledged
    times = {"m1": [1.0, 1.1, 23.6], "m2": [23.3, 23.7]}
    assert failover.interleaved(times, 0.0, 30.0) == ["m1", "m2"]
    # outside the window it is not this trial's
    assert failover.interleaved(times, 0.0, 23.5) == []
