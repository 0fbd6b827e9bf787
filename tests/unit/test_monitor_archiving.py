"""make status: WAL archiving health (pg_stat_archiver, queue, pgBackRest backups, repo fs)."""

from __future__ import annotations

import json

from test_monitor_model import SETTINGS, sample_raw

from pgsteady.monitor.archiving import summary
from pgsteady.monitor.model import derive
from pgsteady.settings import HostFacts, build_settings


def archiver(**over):
    data = {
        "archived_count": 40, "last_archived_wal": "000000010000000000000028",
        "last_archived_age_seconds": 30.0, "failed_count": 0, "last_failed_wal": None,
        "failing": False, "ready_segments": 0, "oldest_ready_age_seconds": None,
        "segment_bytes": "16777216",
    }  # fmt: skip
    data.update(over)
    return json.dumps(data)


def test_healthy_archiving_values_and_no_problem():
    st = derive(sample_raw(), SETTINGS)
    a = st.archiving
    assert a.enabled and a.last_archived_wal == "000000010000000000000028"
    assert a.last_full_age_seconds == 86400 and a.last_diff_age_seconds == 3600
    assert a.queue_bytes == 0 and a.stanza_status == "ok"
    assert st.disks["repo"].used_percent == 25
    assert not [p for p in st.problems if "WAL" in p or "pgBackRest" in p]


def test_failing_archive_is_critical():
    st = derive(sample_raw(archiver=archiver(failing=True, last_failed_wal="X1")), SETTINGS)
    assert st.status == "critical"
    assert "critical: WAL archiving fails (last failed WAL X1)" in st.problems


def test_wal_waiting_beyond_twice_archive_timeout_is_critical_idle_server_is_not():
    stale = archiver(
        last_archived_age_seconds=600.0, ready_segments=3, oldest_ready_age_seconds=590.0
    )
    st = derive(sample_raw(archiver=stale), SETTINGS)
    assert "critical: 3 WAL segment(s) wait for the archive, the oldest 9m 50s" in st.problems
    idle = derive(sample_raw(archiver=archiver(last_archived_age_seconds=600.0)), SETTINGS)
    assert not any("wait for the archive" in p for p in idle.problems)
    # A burst after a long idle time: just completed, archived in a moment.
    burst = archiver(
        last_archived_age_seconds=600.0, ready_segments=1, oldest_ready_age_seconds=1.0
    )
    assert not any(
        "wait for the archive" in p for p in derive(sample_raw(archiver=burst), SETTINGS).problems
    )


def test_queue_beyond_half_the_maximum_warns():
    st = derive(sample_raw(archiver=archiver(ready_segments=40)), SETTINGS)  # 640 of 1024 MB
    assert "warning: archive queue 640 MB of 1024 MB" in st.problems


def test_no_full_backup_warns_and_missing_stanza_is_critical():
    none = json.dumps([{"name": "main", "status": {"code": 0, "message": "ok"}, "backup": []}])
    assert (
        "warning: no full pgBackRest backup yet"
        in derive(sample_raw(pgbackrest_info=none), SETTINGS).problems
    )
    other = json.dumps([{"name": "other", "status": {"code": 0, "message": "ok"}}])
    st = derive(sample_raw(pgbackrest_info=other), SETTINGS)
    assert "critical: pgBackRest stanza: missing" in st.problems


def test_disabled_shows_nothing():
    s = build_settings(
        {
            "pgbackrest_enabled": False,
            "metrics_enabled": False,
            "pgbouncer_enabled": False,
            "postgres_image_source": "registry",
        },
        HostFacts(4096, 2),
    )
    st = derive(sample_raw(archiver=None, pgbackrest_info=None, repo_df=None), s)
    assert not st.archiving.enabled and "repo" not in st.disks


def wal_listing(missing: tuple[int, ...] = (), newest: int = 0x10) -> str:
    """The walarchive listing of repo1: a full at segment 3, segments 3..0x28."""
    seg = "0000000100000000000000{:02X}".format
    names = [seg(n) for n in range(3, 0x29) if n not in missing]
    head = [f"oldest {seg(3)}", f"newest {seg(newest)}", f"from {seg(3)}", "archive-id 17-1"]
    return "\n".join([*head, *(f"wal {n}" for n in names), "end"])


def test_complete_archive_has_no_gap_problem():
    st = derive(sample_raw(wal_archive_1=wal_listing()), SETTINGS)
    assert st.archiving.wal_gaps == []
    assert not [p for p in st.problems if "missing" in p or "listing" in p]


def test_gap_after_the_newest_backup_is_critical_before_it_a_warning():
    st = derive(sample_raw(wal_archive_1=wal_listing(missing=(0x12, 0x13))), SETTINGS)
    assert st.archiving.wal_gaps == [
        {"repo": 1, "timeline": 1, "first": "000000010000000000000012",
         "last": "000000010000000000000013", "count": 2, "after_newest_backup": True}
    ]  # fmt: skip
    assert st.status == "critical"
    assert st.problems[0].startswith(
        "critical: repo1: 2 WAL segment(s) missing "
        "(000000010000000000000012..000000010000000000000013) after the newest backup's start"
    )
    assert "pgsteady-ctl pgbackrest backup --type=full" in st.problems[0]
    assert "2 missing from the archive" in summary(st.archiving)
    old = derive(sample_raw(wal_archive_1=wal_listing(missing=(0x08,))), SETTINGS)
    assert [p for p in old.problems if "missing" in p] == [
        "warning: repo1: 1 WAL segment(s) missing (000000010000000000000008) before the newest "
        "backup: points in time from the gap to the newest backup cannot be restored"
    ]


def test_segments_past_last_archived_wal_are_in_flight_not_missing():
    # pg_stat_archiver counts up to 0x28 (sample): 0x27 and 0x28 absent are dropped, even
    # with nothing newer listed yet. Counted up to 0x26 only: 0x27 may still be in flight.
    st = derive(sample_raw(wal_archive_1=wal_listing(missing=(0x27, 0x28))), SETTINGS)
    assert [(g["first"], g["count"]) for g in st.archiving.wal_gaps] == [
        ("000000010000000000000027", 2)
    ]
    behind = archiver(last_archived_wal="000000010000000000000026")
    st = derive(sample_raw(archiver=behind, wal_archive_1=wal_listing(missing=(0x27,))), SETTINGS)
    assert st.archiving.wal_gaps == []  # 0x28 listed, 0x27 still being pushed


def test_failed_or_truncated_listing_is_unknown_not_healthy():
    st = derive(sample_raw(wal_archive_1=None), SETTINGS)
    assert "warning: archiving status unknown: repo1 WAL listing: wal_archive_1 failed: boom" in (
        st.problems
    )
    cut = derive(sample_raw(wal_archive_1=wal_listing().removesuffix("\nend")), SETTINGS)
    assert any("repo1 WAL listing: listing incomplete" in p for p in cut.problems)
