"""bench.pitr's pure parts: PITR targets between markers, their verdict, the run order."""

import random
from datetime import UTC, datetime

import pytest

from bench import config
from bench.pitr import (
    Target,
    choose_targets,
    exact,
    marker_script,
    parse_epochs,
    round_order,
)

T0 = 1_800_000_000.0


def markers(n: int, commit: float = 0.01, gap: float = 0.3) -> tuple[dict, dict]:
    """Marker i inserted at T0 + i*gap, its commit returned ``commit`` s later."""
    inserted = {i: T0 + i * gap for i in range(1, n + 1)}
    return inserted, {i: t + commit for i, t in inserted.items()}


def test_targets_lie_strictly_between_a_commit_and_the_next_insert():
    inserted, committed = markers(12)
    for seed in range(50):
        targets = choose_targets(inserted, committed, 5, random.Random(seed))
        assert len({t.after for t in targets}) == 5
        assert [t.after for t in targets] == sorted(t.after for t in targets)
        for t in targets:
            assert 1 <= t.after <= 11
            assert committed[t.after] < t.epoch < inserted[t.after + 1]


def test_targets_are_random_but_reproducible_from_the_seed():
    inserted, committed = markers(12)
    first = choose_targets(inserted, committed, 5, random.Random(7))
    assert first == choose_targets(inserted, committed, 5, random.Random(7))
    others = {tuple(t.after for t in choose_targets(inserted, committed, 5, random.Random(s)))
              for s in range(20)}  # fmt: skip
    assert len(others) > 1


def test_targets_refuse_overlapping_markers_and_too_few_windows():
    inserted, committed = markers(4, commit=0.5)  # marker 1 committed after 2 was inserted
    with pytest.raises(ValueError, match="marker 1 committed"):
        choose_targets(inserted, committed, 2, random.Random(1))
    inserted, committed = markers(5)
    with pytest.raises(ValueError, match="5 targets need at least 6 markers"):
        choose_targets(inserted, committed, 5, random.Random(1))
    with pytest.raises(ValueError, match="markers must be 1..N"):
        choose_targets({1: T0, 3: T0 + 1}, {1: T0, 3: T0 + 1}, 1, random.Random(1))


def test_exact_means_every_marker_up_to_the_target_and_none_after():
    target = Target(after=3, epoch=T0)
    assert exact(target, [1, 2, 3])
    assert not exact(target, [1, 2, 3, 4])  # a commit after the target replayed
    assert not exact(target, [1, 2])  # one committed before it lost
    assert not exact(target, [1, 2, 4])  # a hole
    assert exact(Target(after=0, epoch=T0), [])


def test_target_text_is_utc_with_microseconds():
    epoch = datetime(2026, 11, 29, 18, 53, 15, 324566, tzinfo=UTC).timestamp()
    assert Target(1, epoch).text == "2026-11-29 18:53:15.324566+00"


def test_parse_epochs_skips_pg_sleep_lines():
    assert parse_epochs("1|1800000000.5\n\n2|1800000001.25\n\n") == {
        1: 1800000000.5,
        2: 1800000001.25,
    }


def test_marker_script_commits_each_marker_and_reads_the_clock_after_it():
    lines = marker_script(3, 0.3).splitlines()
    assert lines[0].startswith("CREATE TABLE bench_marks")
    assert lines[1:4] == [
        "INSERT INTO bench_marks VALUES (1, clock_timestamp());",
        "SELECT 1, extract(epoch FROM clock_timestamp());",
        "SELECT pg_sleep(0.3);",
    ]
    assert not any(word in lines for word in ("BEGIN;", "COMMIT;"))  # autocommit: one each
    assert len(lines) == 1 + 3 * 3


def test_round_order_alternates_which_server_goes_first():
    assert round_order(3) == [
        (0, "archiving"), (0, "no_archiving"),
        (1, "no_archiving"), (1, "archiving"),
        (2, "archiving"), (2, "no_archiving"),
    ]  # fmt: skip


def test_pitr_is_a_part_run_by_default_and_small_with_quick():
    assert "pitr" in config.from_args([]).parts
    assert config.from_args(["--only", "pitr"]).parts == ("pitr",)
    full, quick = config.from_args([]), config.from_args(["--quick"])
    assert full.pitr_targets == quick.pitr_targets == 5
    assert quick.pitr_scale < full.pitr_scale and quick.pitr_rounds < full.pitr_rounds
    assert config.from_args(["--pitr-scale", "7"]).pitr_scale == 7


# --- the host-loss trials (bench.pitr_loss) ----------------------------------------------


def test_loss_runs_from_the_newest_restored_row_to_the_last_acknowledged_one():
    from bench.pitr_loss import loss_seconds

    acked = {i: T0 + i * 0.1 for i in range(1, 101)}
    assert loss_seconds(acked, list(range(1, 41)), T0) == pytest.approx(6.0)
    # every acknowledged row came back, or more (a commit whose reply was lost): nothing lost
    assert loss_seconds(acked, list(range(1, 101)), T0) == 0.0
    assert loss_seconds(acked, list(range(1, 103)), T0) == 0.0
    # none came back: everything since the archived start is lost
    assert loss_seconds(acked, [], T0 - 2.0) == pytest.approx(12.0)


def test_loss_refuses_a_hole_and_a_writer_that_saw_nothing():
    from bench.pitr_loss import loss_seconds

    acked = {i: T0 + i for i in range(1, 6)}
    with pytest.raises(ValueError, match="hole"):
        loss_seconds(acked, [1, 2, 4], T0)
    with pytest.raises(ValueError, match="no commit acknowledged"):
        loss_seconds({}, [], T0)


def test_writer_script_commits_then_prints_each_row_then_pauses():
    from bench.pitr_loss import writer_script

    lines = writer_script("t", 3, gap=0.1).splitlines()
    assert lines[:3] == [
        "INSERT INTO t VALUES (1, clock_timestamp());",
        "SELECT 1, extract(epoch FROM clock_timestamp());",
        "SELECT pg_sleep(0.1);",
    ]
    assert len(lines) == 9 and lines[-2] == "SELECT 3, extract(epoch FROM clock_timestamp());"


def test_the_host_is_lost_at_a_random_point_of_one_archive_timeout_period():
    from bench.pitr_loss import kill_after

    waits = [kill_after(60.0, random.Random(seed)) for seed in range(200)]
    assert all(10.0 <= w <= 70.0 for w in waits)
    assert max(waits) - min(waits) > 40  # spread over the period, not one phase


def test_the_page_reports_each_host_loss_and_the_worst():
    from bench import report
    from bench.pitr_loss import summarise

    trials = [{"written_seconds": 31.0, "acknowledged": 290, "restored": 201,
               "lost_seconds": 8.9, "restore_to_ready_seconds": 4.2},
              {"written_seconds": 55.5, "acknowledged": 530, "restored": 530,
               "lost_seconds": 0.0, "restore_to_ready_seconds": 3.9}]  # fmt: skip
    loss = summarise(trials, 60.0)
    assert loss["max_lost_seconds"] == 8.9 and loss["n"] == 2
    text = "\n".join(report._host_loss(loss))
    assert "| 1 | 31.0 s | 290 | 201 | 8.90 s | 4.20 s |" in text
    assert "| 2 | 55.5 s | 530 | 530 | 0.00 s | 3.90 s |" in text
    assert "Worst loss over 2 trial(s)" in text and "archive_timeout` = 60 s" in text
    assert report._host_loss(None) == []


def test_quick_runs_one_host_loss():
    assert config.BenchConfig().pitr_loss_trials == 3
    assert config.QUICK["pitr_loss_trials"] == 1
