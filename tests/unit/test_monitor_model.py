"""monitor.model: raw sections → derived values, thresholds, verdict and JSON schema."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pgsteady.monitor.model import (
    CRITICAL,
    OK,
    SCHEMA_VERSION,
    UNREACHABLE,
    WARNING,
    Thresholds,
    derive,
    exit_code,
    expected_interval,
    parse_df,
    parse_time,
    report,
)
from pgsteady.settings import HostFacts, build_settings

SETTINGS = build_settings({"compose_project": "shop"}, HostFacts(ram_mb=0, cpus=0))
NOW = 1_800_000_000  # host clock, seconds since the epoch (2027-01-15T08:00:00Z)


def iso(offset: float) -> str:
    """An RFC 3339 time ``offset`` seconds before NOW, with Docker's nanoseconds."""
    from datetime import UTC, datetime

    return datetime.fromtimestamp(NOW - offset, UTC).strftime("%Y-%m-%dT%H:%M:%S.123456789Z")


def sql_out(**over: Any) -> dict[str, Any]:
    data = {
        "version": "17.12 (Debian 17.12-0+deb13u1)",
        "version_num": 170012,
        "started_at": "2027-01-15T07:00:00.5+00:00",
        "uptime_seconds": 3600.4,
        "in_recovery": False,
        "max_connections": 100,
        "reserved_connections": 3,
        "connections": {"used": 12, "active": 2, "idle": 9, "idle_in_transaction": 1},
        "databases": {"app": 8_000_000, "postgres": 7_500_000},
        "blocks": {"hit": 99_000, "read": 1_000},
        "longest_transaction": {
            "seconds": 12.34,
            "pid": 4242,
            "state": "idle in transaction",
            "database": "app",
            "user": "app",
            "query": "UPDATE t SET x = 1",
        },
        "waiting_locks": 1,
        "longest_lock_wait_seconds": 2.5,
    }
    data.update(over)
    return data


def sample_raw(**sections: Any) -> dict[str, Any]:
    """A healthy host's raw collection; keyword args replace or drop (None) sections."""
    state = {
        "Status": "running",
        "Running": True,
        "OOMKilled": False,
        "ExitCode": 0,
        "StartedAt": iso(7200),
        "Health": {"Status": "healthy", "Log": [{"ExitCode": 0, "Output": ""}]},
    }
    status = {
        "last_success": {"time": iso(3 * 3600)[:19] + "+00:00", "size_bytes": 3500},
        "last_run": {"time": iso(3 * 3600)[:19] + "+00:00", "ok": True},
        "drill": {"time": iso(86400)[:19] + "+00:00", "ok": True},
    }
    base = {
        "host": f"now {NOW}\nhostname db1\ncpus 2\nload 0.50 0.40 0.30\nstopped_marker no",
        "inspect": json.dumps({"state": state, "restart_count": 0, "image": "pgsteady/x:17"}),
        "sql": json.dumps(sql_out()),
        "data_df": "path /var/lib/docker/volumes/shop_pgdata/_data\n"
        "/dev/vda 1000000 400000 600000 40% /var/lib/docker",
        "backup_df": "path /opt/pgsteady/backups\n/dev/vdb 2000000 500000 1500000 25% /",
        "backup_status": json.dumps(status),
        "logs": '2027-01-15 07:59:00.000 GMT [77] app@app ERROR:  relation "nope" does not exist',
        "archiver": json.dumps(
            {"archived_count": 40, "last_archived_wal": "000000010000000000000028",
             "last_archived_age_seconds": 30.0, "failed_count": 0, "last_failed_wal": None,
             "failing": False, "ready_segments": 0, "segment_bytes": "16777216"}
        ),
        "pgbackrest_info": json.dumps(
            [{"name": "main", "status": {"code": 0, "message": "ok"},
              "backup": [{"type": "full", "timestamp": {"stop": NOW - 86400}},
                         {"type": "diff", "timestamp": {"stop": NOW - 3600}}]}]
        ),
        "repo_df": "path /opt/pgsteady/pgbackrest/repo1\n/dev/vdb 2000000 500000 1500000 25% /",
    }  # fmt: skip
    base.update(sections)
    out = {}
    for name, value in base.items():
        if value is None:
            out[name] = {"rc": 1, "out": "", "err": f"{name} failed: boom"}
        else:
            out[name] = {"rc": 0, "out": value, "err": ""}
    facts = {"ram_mb": 4096, "cpus": 2, "has_systemd": True}
    return {"host": "db1", "error": None, "seconds": 0.2, "sections": out, "facts": facts}


def test_healthy_host_values():
    st = derive(sample_raw(), SETTINGS)
    assert st.container.state == "running" and st.container.health == "healthy"
    assert st.container.uptime_seconds == pytest.approx(7200, abs=1)
    assert st.container.restart_count == 0
    pg = st.postgres
    assert pg.up and pg.version == "17.12" and pg.version_num == 170012
    assert pg.connections.used == 12 and pg.connections.max == 100
    assert pg.connections.percent == 12.0
    assert pg.databases == {"app": 8_000_000, "postgres": 7_500_000}
    assert pg.cache_hit_ratio == 0.99
    assert pg.longest_transaction["seconds"] == 12.3
    assert pg.waiting_locks == 1 and pg.longest_lock_wait_seconds == 2.5
    data = st.disks["data"]
    assert data.free_bytes == 600000 * 1024 and data.used_percent == 40.0
    assert data.mount == "/var/lib/docker"
    assert st.disks["backup"].used_percent == 25.0
    assert st.backup.last_success_age_seconds == pytest.approx(3 * 3600, abs=1)
    assert st.backup.last_run_ok is True and st.backup.drill_ok is True
    assert st.log_errors and "ERROR:" in st.log_errors[0]
    assert st.settings["container"] == "shop-postgres"


def test_healthy_host_is_ok():
    st = derive(sample_raw(), SETTINGS)
    assert st.problems == []
    assert st.status == OK


@pytest.mark.parametrize(
    ("sql", "level", "text"),
    [
        ({"connections": {"used": 80}}, WARNING, "connections 80/100"),
        ({"connections": {"used": 96}}, CRITICAL, "connections 96/100"),
        ({"blocks": {"hit": 90_000, "read": 10_000}}, WARNING, "cache hit ratio 90.0%"),
        ({"blocks": {"hit": 10, "read": 90}}, OK, ""),  # too few accesses to judge
        ({"longest_transaction": {"seconds": 301, "pid": 1}}, WARNING, "open for 5m 1s"),
        ({"longest_transaction": {"seconds": 3601, "pid": 1}}, CRITICAL, "open for 1h"),
        ({"longest_lock_wait_seconds": 61, "waiting_locks": 3}, WARNING, "3 waiting lock(s)"),
    ],
)
def test_postgres_thresholds(sql, level, text):
    st = derive(sample_raw(sql=json.dumps(sql_out(**sql))), SETTINGS)
    assert st.status == level
    assert all(text in p for p in st.problems) and (bool(st.problems) == (level != OK))


def test_disk_thresholds():
    full = "path /x\n/dev/vda 1000 960 40 96% /"
    warn = "path /x\n/dev/vda 1000 860 140 86% /"
    assert derive(sample_raw(data_df=full), SETTINGS).status == CRITICAL
    st = derive(sample_raw(backup_df=warn), SETTINGS)
    assert st.status == WARNING and "backup filesystem 86% full" in st.problems[0]
    st = derive(sample_raw(data_df=None), SETTINGS)
    assert st.disks["data"] is None and st.status == WARNING


def test_container_down_unhealthy_missing():
    stopped = {"Status": "exited", "ExitCode": 137, "OOMKilled": True, "StartedAt": iso(60)}
    st = derive(
        sample_raw(inspect=json.dumps({"state": stopped, "restart_count": 2}), sql=None),
        SETTINGS,
    )
    assert st.status == CRITICAL and st.container.uptime_seconds is None
    assert "container is exited (exit code 137, OOM-killed)" in st.problems[0]
    assert not st.postgres.up and st.postgres.error == "sql failed: boom"
    sick = {
        "Status": "running",
        "StartedAt": iso(60),
        "Health": {"Status": "unhealthy", "Log": [{"Output": "no response"}]},
    }
    st = derive(sample_raw(inspect=json.dumps({"state": sick, "restart_count": 3})), SETTINGS)
    assert st.status == CRITICAL
    assert any("unhealthy: no response" in p for p in st.problems)
    assert any("restarted recently (3 restarts)" in p for p in st.problems)
    st = derive(sample_raw(inspect=None, sql=None), SETTINGS)
    assert not st.container.exists and "shop-postgres does not exist" in st.problems[0]


def test_stopped_on_purpose_is_still_critical_and_says_so():
    host = f"now {NOW}\nstopped_marker yes"
    stopped = {"Status": "exited", "ExitCode": 0, "StartedAt": iso(60)}
    st = derive(sample_raw(host=host, inspect=json.dumps({"state": stopped}), sql=None), SETTINGS)
    assert st.container.stopped_on_purpose and st.failing
    assert "stopped on purpose" in st.problems[0]


def test_watchdog_crash_loop_is_critical():
    reason = "exited; started it (start 4; the next no earlier than in 480s)"
    host = f"now {NOW}\nstopped_marker no\nwatchdog_crash_loop yes\nwatchdog_reason {reason}"
    st = derive(sample_raw(host=host), SETTINGS)
    assert st.status == CRITICAL
    assert f"critical: the watchdog reports a crash loop ({reason})" in st.problems
    assert st.container.watchdog_crash_loop == reason
    assert derive(sample_raw(), SETTINGS).container.watchdog_crash_loop is None


def test_backup_age_and_failure():
    def status(age_h: float, ok: bool = True) -> str:
        t = iso(age_h * 3600)
        run = {"time": t, "ok": ok, "error": None if ok else "disk full"}
        return json.dumps({"last_success": {"time": t}, "last_run": run})

    assert derive(sample_raw(backup_status=status(24.5)), SETTINGS).status == OK
    st = derive(sample_raw(backup_status=status(26)), SETTINGS)
    assert st.status == WARNING and "1d 2h old" in st.problems[0]
    assert derive(sample_raw(backup_status=status(50)), SETTINGS).status == CRITICAL
    st = derive(sample_raw(backup_status=status(1, ok=False)), SETTINGS)
    assert st.status == CRITICAL and "last backup failed: disk full" in st.problems[0]
    st = derive(sample_raw(backup_status=None), SETTINGS)
    assert st.status == WARNING and not st.backup.status_found
    off = build_settings({"backup_enabled": False}, HostFacts(ram_mb=0, cpus=0))
    assert derive(sample_raw(backup_status=None), off).status == OK


def test_hourly_schedule_tightens_backup_age():
    hourly = build_settings({"backup_schedule": "@hourly"}, HostFacts(ram_mb=0, cpus=0))
    st = derive(sample_raw(), hourly)  # last success 3 h ago: late after 1 h + 1 h grace
    assert st.backup.expected_interval_seconds == 3600
    assert st.status == WARNING and "3h old" in st.problems[0]


def test_unreachable_and_invalid_settings():
    raw = {"host": "db2", "error": "ssh failed: Connection refused", "seconds": 2.0}
    st = derive(raw, SETTINGS)
    assert st.status == UNREACHABLE and st.failing and st.error == raw["error"]
    st = derive({"host": "db3", "settings_error": "1 invalid setting(s)"}, None)
    assert st.status == CRITICAL and st.error == "1 invalid setting(s)"


def test_settings_failing_the_hosts_facts_warn():
    raw = {**sample_raw(), "facts_error": "postgres_cpus = 8: above the host's 2 CPUs"}
    st = derive(raw, SETTINGS)
    assert st.status == WARNING and "above the host's 2 CPUs" in st.problems[0]
    assert st.hostinfo["cpus"] == 2 and st.hostinfo["ram_mb"] == 4096


def test_custom_thresholds():
    t = Thresholds(connections_warn=0.1, connections_crit=0.5)
    assert derive(sample_raw(), SETTINGS, t).status == WARNING


def test_panic_in_log_and_failed_drill_warn():
    st = derive(sample_raw(logs="x PANIC:  could not write"), SETTINGS)
    assert st.status == WARNING
    status = json.loads(sample_raw()["sections"]["backup_status"]["out"])
    status["drill"]["ok"] = False
    st = derive(sample_raw(backup_status=json.dumps(status)), SETTINGS)
    assert "the last restore drill failed" in st.problems[0]


def test_helpers():
    assert parse_time("0001-01-01T00:00:00Z") is None
    assert parse_time("2026-11-28T17:53:51.014408294Z").microsecond == 14408
    assert parse_time("2026-11-28T17:53:52.7+00:00").microsecond == 700000
    assert parse_df("garbage") is None
    assert parse_df("/dev/x 100 50 50 50% /mnt with space").mount == "/mnt with space"
    assert expected_interval("15 2 * * *") == 86400
    assert expected_interval("0 */6 * * *") == 6 * 3600
    assert expected_interval("0 1,13 * * *") == 12 * 3600
    assert expected_interval("0 3 * * mon") == 7 * 86400


def test_report_schema_and_exit_code():
    hosts = [
        derive(sample_raw(), SETTINGS),
        derive({"host": "db2", "error": "timed out after 30 s"}, SETTINGS),
    ]
    doc = json.loads(json.dumps(report(hosts)))
    assert set(doc) == {"schema", "time", "ok", "hosts"}
    assert doc["schema"] == SCHEMA_VERSION and doc["ok"] is False
    host = doc["hosts"][0]
    assert set(host) == {
        "host", "status", "problems", "error", "collected_in_seconds", "settings",
        "hostinfo", "container", "postgres", "disks", "backup", "archiving", "log_errors",
        "performance", "pooler",
    }  # fmt: skip
    assert set(host["container"]) == {
        "exists", "state", "health", "started_at", "uptime_seconds", "restart_count",
        "oom_killed", "exit_code", "image", "stopped_on_purpose", "health_output",
        "watchdog_crash_loop",
    }  # fmt: skip
    assert set(host["postgres"]) == {
        "up", "error", "version", "version_num", "started_at", "uptime_seconds",
        "in_recovery", "connections", "databases", "cache_hit_ratio", "block_accesses",
        "longest_transaction", "waiting_locks", "longest_lock_wait_seconds",
    }  # fmt: skip
    assert set(host["postgres"]["connections"]) == {
        "used", "max", "reserved", "percent", "active", "idle", "idle_in_transaction",
    }  # fmt: skip
    assert set(host["disks"]) == {"data", "backup", "repo"}
    assert set(host["disks"]["data"]) == {
        "path", "mount", "size_bytes", "free_bytes", "used_percent",
    }  # fmt: skip
    assert set(host["backup"]) == {
        "enabled", "status_found", "last_success_time", "last_success_age_seconds",
        "last_success_size_bytes", "last_run_time", "last_run_ok", "last_run_skipped",
        "last_run_age_seconds", "last_error", "drill_time", "drill_ok",
        "expected_interval_seconds",
    }  # fmt: skip
    assert doc["hosts"][1]["status"] == "unreachable"
    assert exit_code(hosts) == 1 and exit_code(hosts[:1]) == 0
