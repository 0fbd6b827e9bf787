"""make status: WAL archiving health (pg_stat_archiver, queue, pgBackRest backups, repo fs)."""

from __future__ import annotations

import json

from test_monitor_model import SETTINGS, sample_raw

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
    assert "critical: 3 WAL segment(s) wait for the archive, the oldest 590 s" in st.problems
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
        {"pgbackrest_enabled": False, "postgres_image_source": "registry"}, HostFacts(4096, 2)
    )
    st = derive(sample_raw(archiver=None, pgbackrest_info=None, repo_df=None), s)
    assert not st.archiving.enabled and "repo" not in st.disks
