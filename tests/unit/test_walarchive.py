"""Gaps in the pgBackRest WAL archive: segment names, timelines, the bounds of the search."""

from __future__ import annotations

import pytest

from pgsteady.backup.walarchive import (
    Gap,
    Listing,
    find_gaps,
    parse_listing,
    position,
    segment_name,
)

MB = 1024 * 1024


def seg(tli: int, number: int, size: int = 16 * MB) -> str:
    return segment_name(tli, number, size)


def listing(
    segments: list[str], oldest: str, newest: str | None = None, history: str | None = None
) -> Listing:
    text = [f"oldest {oldest}", f"newest {newest or oldest}", f"from {oldest}", "archive-id 17-1"]
    if history:
        tli = max(int(line.split()[0]) for line in history.splitlines()) + 1
        text.append(f"history-file {tli:08X}.history")
        text += [f"history {line}" for line in history.splitlines()]
    text += [f"wal {s}" for s in segments]
    return parse_listing("\n".join([*text, "end"]))


def test_segment_names_roll_over_the_log_id_at_the_segment_size():
    assert position("0000000100000000000000FF") == (1, 255)
    assert position("000000010000000100000000") == (1, 256)
    assert seg(1, 256) == "000000010000000100000000"
    assert seg(3, 0x1_23) == "000000030000000100000023"
    # 64 MB segments: 64 a log id, so ...0000003F is followed by ...00000001 00000000.
    assert seg(1, 64, 64 * MB) == "000000010000000100000000"
    assert position("00000001000000010000003F.partial", 64 * MB) == (1, 127)
    with pytest.raises(ValueError, match="beyond"):
        position("000000010000000000000040", 64 * MB)
    with pytest.raises(ValueError, match="not a WAL segment"):
        position("00000002.history")


def test_a_complete_archive_has_no_gap_across_a_log_id_boundary():
    names = [seg(1, n) for n in range(250, 262)]
    assert find_gaps(listing(names, seg(1, 250)), last_archived=seg(1, 261)) == []


def test_a_dropped_run_is_one_gap_named_by_its_first_and_last_segment():
    names = [seg(1, n) for n in range(3, 20) if not 6 <= n <= 9] + [seg(1, 0x101)]
    names += [seg(1, n) for n in range(20, 0x101)]
    gaps = find_gaps(listing(names, seg(1, 3)), last_archived=seg(1, 0x101))
    assert gaps == [Gap(1, seg(1, 6), seg(1, 9), 4, True)]
    assert gaps[0].describe() == (
        "4 WAL segment(s) missing on timeline 1: 000000010000000000000006..000000010000000000000009"
    )


def test_only_gaps_after_the_newest_backup_start_are_marked_after_it():
    names = [seg(1, n) for n in range(3, 40) if n not in (5, 30)]
    gaps = find_gaps(listing(names, seg(1, 3), newest=seg(1, 20)), last_archived=seg(1, 39))
    assert [(g.first, g.after_newest_backup) for g in gaps] == [(seg(1, 5), False),
                                                                (seg(1, 30), True)]  # fmt: skip


def test_segments_before_the_backup_start_are_not_needed():
    names = [seg(1, n) for n in range(10, 20)]  # 0..9 expired with older backups
    assert find_gaps(listing(names, seg(1, 10)), last_archived=seg(1, 19)) == []


def test_segments_beyond_pg_stat_archiver_may_be_in_flight_and_are_not_gaps():
    # Parallel async push: 12 is in the repository before 11; Postgres counted up to 10.
    names = [seg(1, n) for n in range(3, 11)] + [seg(1, 12)]
    assert find_gaps(listing(names, seg(1, 3)), last_archived=seg(1, 10)) == []
    # Counted as archived but absent (dropped): a gap even with nothing newer listed yet.
    gaps = find_gaps(listing(names[:6], seg(1, 3)), last_archived=seg(1, 10))
    assert gaps == [Gap(1, seg(1, 9), seg(1, 10), 2, True)]
    # The archiver's last file unknown: the newest listed segment bounds the search.
    assert find_gaps(listing(names, seg(1, 3)), last_archived=None)[0].first == seg(1, 11)


def test_a_timeline_switch_follows_the_history_file_and_ignores_the_abandoned_branch():
    # Timeline 2 branched off timeline 1 at 0/5000120 (segment 5, mid-segment): timeline 1
    # is needed up to segment 4, timeline 2 from 5; timeline 1 went on to 9 (abandoned),
    # its segment 5 may exist only as a .partial (not listed as complete).
    names = [seg(1, n) for n in range(3, 5)] + [seg(1, n) for n in range(6, 10)]
    names += [seg(2, n) for n in range(5, 12)]
    history = "1\t0/5000120\tno recovery target specified"
    got = find_gaps(listing(names, seg(1, 3), history=history), last_archived=seg(2, 11))
    assert got == []
    # A hole on the new timeline, and one on the parent before the switch point.
    holed = [n for n in names if n not in (seg(2, 7), seg(1, 4))]
    got = find_gaps(listing(holed, seg(1, 3), history=history), last_archived=seg(2, 11))
    assert [(g.timeline, g.first) for g in got] == [(1, seg(1, 4)), (2, seg(2, 7))]


def test_a_backup_started_in_the_switch_segment_continues_on_the_new_timeline():
    # Restored to the end of the backup (0/3000120): timeline 2 starts in segment 3.
    history = "1\t0/3000120\treached consistency"
    names = [seg(1, n) for n in (3, 4, 5, 7)] + [seg(2, n) for n in range(3, 7)]
    assert find_gaps(listing(names, seg(1, 3), history=history), seg(2, 6)) == []
    holed = [n for n in names if n != seg(2, 4)]
    got = find_gaps(listing(holed, seg(1, 3), history=history), seg(2, 6))
    assert got == [Gap(2, seg(2, 4), seg(2, 4), 1, True)]


def test_two_switches_and_a_backup_on_the_middle_timeline():
    history = "1\t0/5000000\tfirst restore\n2\t0/8000000\tsecond restore"
    names = [seg(2, n) for n in range(6, 8)] + [seg(3, n) for n in range(8, 11)]
    # A switch at a segment boundary: timeline 2 ends with segment 7, 3 starts at 8.
    got = find_gaps(listing(names, seg(2, 6), history=history), last_archived=seg(3, 10))
    assert got == []
    got = find_gaps(listing(names[:-2], seg(2, 6), history=history), last_archived=seg(3, 10))
    assert got == [Gap(3, seg(3, 9), seg(3, 10), 2, True)]


def test_the_newest_history_file_lost_the_timeline_starts_at_its_first_segment():
    names = [seg(1, n) for n in range(3, 8)] + [seg(2, n) for n in range(8, 12)]
    assert find_gaps(listing(names, seg(1, 3)), last_archived=seg(2, 11)) == []
    short = [n for n in names if n != seg(1, 6)]
    assert find_gaps(listing(short, seg(1, 3)), last_archived=seg(2, 11))[0].first == seg(1, 6)


def test_a_partial_as_the_last_archived_file_counts_up_to_the_segment_before_it():
    names = [seg(1, n) for n in range(3, 8)]
    last = seg(1, 8) + ".partial"
    assert find_gaps(listing(names, seg(1, 3)), last_archived=last) == []
    assert find_gaps(listing(names, seg(1, 3)), last_archived="00000002.history") == []


def test_no_backup_or_a_truncated_listing():
    assert find_gaps(parse_listing("end"), last_archived=seg(1, 9)) == []
    cut = parse_listing(
        f"oldest {seg(1, 3)}\nnewest {seg(1, 3)}\nfrom {seg(1, 3)}\nwal {seg(1, 3)}"
    )
    assert not cut.complete
    assert parse_listing("end").complete


def test_listing_keeps_only_complete_segment_names():
    got = parse_listing(
        f"oldest {seg(1, 1)}\nnewest {seg(1, 1)}\nwal {seg(1, 1)}\nwal junk\n"
        f"wal {seg(1, 2)}.partial\nhistory 1\t0/3000000\tx\nend"
    )
    assert got.segments == [seg(1, 1)] and got.history == ["1\t0/3000000\tx"] and got.complete
