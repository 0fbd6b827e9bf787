"""pgsteady.postgres.tuning.

The first section holds PGTune's own test expectations (le0pard/pgtune,
src/features/configuration/__tests__/configurationSlice.test.js, 2026 sources), checked
against our per-setting functions. The rest are hand-computed cases.
"""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pgsteady.postgres import tuning as t
from pgsteady.postgres.tuning import Setting, TuningError, TuningInput, pgtune, tune, tuned_settings
from pgsteady.units import GIB, MIB, parse_size

# --------------------------------------------------------------------------------------
# PGTune's own test expectations
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("db_type", "expected"),
    [("web", 200), ("oltp", 300), ("dw", 40), ("desktop", 20), ("mixed", 100)],
)
def test_pgtune_fixture_max_connections(db_type, expected):
    assert t.max_connections(db_type, None) == expected


@pytest.mark.parametrize(
    ("db_type", "expected"),
    [("web", 100), ("oltp", 100), ("dw", 500), ("desktop", 100), ("mixed", 100)],
)
def test_pgtune_fixture_default_statistics_target(db_type, expected):
    assert t.default_statistics_target(db_type) == expected


@pytest.mark.parametrize(
    ("storage", "expected"), [("hdd", "4"), ("ssd", "1.1"), ("san", "1.1"), ("nvme", "1.1")]
)
def test_pgtune_fixture_random_page_cost(storage, expected):
    assert t.random_page_cost(storage, "web") == expected


@pytest.mark.parametrize(
    ("os", "storage", "expected"),
    [
        ("linux", "hdd", 2),
        ("linux", "ssd", 200),
        ("linux", "san", 300),
        ("windows", "ssd", None),
        ("linux", "nvme", 1000),
    ],
)
def test_pgtune_fixture_effective_io_concurrency(os, storage, expected):
    assert t.effective_io_concurrency(os, storage) == expected


@pytest.mark.parametrize(
    ("version", "cpus", "db_type", "expected"),
    [
        (14, 1, "web", []),
        (
            13,
            12,
            "web",
            [
                ("max_worker_processes", 12),
                ("max_parallel_workers_per_gather", 4),
                ("max_parallel_workers", 12),
                ("max_parallel_maintenance_workers", 4),
            ],
        ),
        (
            10,
            12,
            "web",
            [
                ("max_worker_processes", 12),
                ("max_parallel_workers_per_gather", 4),
                ("max_parallel_workers", 12),
            ],
        ),
        (
            10,
            31,
            "web",
            [
                ("max_worker_processes", 31),
                ("max_parallel_workers_per_gather", 4),
                ("max_parallel_workers", 31),
            ],
        ),
        (
            12,
            31,
            "dw",
            [
                ("max_worker_processes", 31),
                ("max_parallel_workers_per_gather", 16),
                ("max_parallel_workers", 31),
                ("max_parallel_maintenance_workers", 4),
            ],
        ),
    ],
)
def test_pgtune_fixture_parallel_settings(version, cpus, db_type, expected):
    assert t.parallel_settings(version, db_type, cpus) == expected


def test_pgtune_fixture_wal_level():
    assert t.wal_level_settings("desktop") == [("wal_level", "minimal"), ("max_wal_senders", "0")]
    assert t.wal_level_settings("web") == []


@pytest.mark.parametrize(
    ("ram_gb", "os", "version", "expected"),
    [
        (256, "linux", 17, 8388608),
        (256, "windows", 17, 2096128),
        (256, "windows", 18, 8388608),
        (16, "linux", 15, 1048576),
    ],
)
def test_pgtune_fixture_maintenance_work_mem(ram_gb, os, version, expected):
    assert t.maintenance_work_mem_kb(ram_gb * GIB, "web", os, version) == expected


@pytest.mark.parametrize(
    ("ram_gb", "os", "expected"), [(4, "linux", "off"), (16, "linux", "try"), (128, "mac", "off")]
)
def test_pgtune_fixture_huge_pages(ram_gb, os, expected):
    assert t.huge_pages(t.shared_buffers_kb(ram_gb * GIB, "web"), os) == expected


def _work_mem(ram_gb, os, version, connections, cpus):
    ram = ram_gb * GIB
    sb = t.shared_buffers_kb(ram, "web")
    return t.work_mem_kb(ram, sb, connections, cpus, "web", os, version)


def test_pgtune_fixture_work_mem():
    assert _work_mem(4, "linux", 15, 9999, 4) == 4096
    assert _work_mem(256, "windows", 17, 20, 4) == 2096128
    assert _work_mem(256, "windows", 18, 20, 4) > 2096128
    assert _work_mem(256, "windows", 18, 20, 4) == 2796202  # PGTune's comment: "2796202"


def test_pgtune_fixture_jit():
    assert t.jit(12, "web") == "off"
    assert t.jit(15, "oltp") == "off"
    assert t.jit(15, "dw") is None
    assert t.jit(11, "web") is None


def test_pgtune_fixture_wal_compression():
    assert t.wal_compression(10) == "on"
    assert t.wal_compression(14) == "on"
    assert t.wal_compression(15) == "lz4"
    assert t.wal_compression(17) == "lz4"


def test_pgtune_fixture_autovacuum_max_workers():
    assert t.autovacuum_max_workers(32) == 5
    assert t.autovacuum_max_workers(16) == 4
    assert t.autovacuum_max_workers(8) is None


@pytest.mark.parametrize(
    ("ram_gb", "os", "version", "expected"),
    [
        (4, "linux", 15, None),
        (256, "linux", 15, 2097152),
        (256, "windows", 17, None),
        (256, "windows", 18, 2097152),
    ],
)
def test_pgtune_fixture_autovacuum_work_mem(ram_gb, os, version, expected):
    mwm = t.maintenance_work_mem_kb(ram_gb * GIB, "web", os, version)
    assert t.autovacuum_work_mem_kb(mwm, os, version) == expected


def test_pgtune_fixture_io_workers():
    assert t.io_workers(17, 32) is None
    assert t.io_workers(18, None) is None
    assert t.io_workers(18, 8) is None
    assert t.io_workers(18, 32) == 8
    assert t.io_workers(18, 64) == 16
    assert t.io_workers(18, 256) == 32


def test_pgtune_fixture_io_method():
    assert t.io_method(17, "linux") is None
    assert t.io_method(18, "linux") == "io_uring"
    assert t.io_method(18, "windows") == "worker"
    assert t.io_method(18, "mac") == "worker"


LZ4 = "wal_compression = lz4 requires PostgreSQL to be compiled with --with-lz4"
URING = "io_method = io_uring requires PostgreSQL to be compiled with --with-liburing"


def test_pgtune_fixture_warnings():
    assert t.pgtune_warnings(4 * GIB, 14, "linux", "web", "ssd") == []
    assert t.pgtune_warnings(128 * MIB, 14, "linux", "web", "ssd") == [
        "this tool not being optimal for low memory systems"
    ]
    assert t.pgtune_warnings(256 * GIB, 14, "linux", "web", "ssd") == [
        "this tool not being optimal for very high memory systems"
    ]
    assert t.pgtune_warnings(4 * GIB, 15, "linux", "web", "ssd") == [LZ4]
    assert t.pgtune_warnings(4 * GIB, 18, "linux", "web", "ssd") == [LZ4, URING]


def test_pgtune_dw_cost_warning_and_random_page_cost():
    warnings = t.pgtune_warnings(4 * GIB, 14, "linux", "dw", "nvme")
    assert warnings and "NVMe drives" in warnings[0]
    assert t.pgtune_warnings(4 * GIB, 14, "linux", "dw", "hdd") == []
    assert t.random_page_cost("ssd", "dw") == "4"


# --------------------------------------------------------------------------------------
# Whole configurations, hand-computed from PGTune's formulas
# --------------------------------------------------------------------------------------

SMALL_WEB_15 = {
    "max_connections": "200",
    "shared_buffers": "256MB",
    "effective_cache_size": "768MB",
    "maintenance_work_mem": "64MB",
    "checkpoint_completion_target": "0.9",
    "wal_buffers": "7864kB",  # floor(3% of 262144kB)
    "default_statistics_target": "100",
    "random_page_cost": "1.1",
    "effective_io_concurrency": "200",
    "work_mem": "4MB",  # 786432 / ((200+8)*3) = 1260kB, raised to the 4MB floor
    "huge_pages": "off",
    "min_wal_size": "1GB",
    "max_wal_size": "4GB",
    "jit": "off",
    "wal_compression": "lz4",
}

LARGE_OLTP_17 = {
    "max_connections": "300",
    "shared_buffers": "16GB",
    "effective_cache_size": "48GB",
    "maintenance_work_mem": "4GB",
    "checkpoint_completion_target": "0.9",
    "wal_buffers": "16MB",
    "default_statistics_target": "100",
    "random_page_cost": "1.1",
    "effective_io_concurrency": "1000",
    "work_mem": "53092kB",  # (64GB-16GB)kB / ((300+16)*3)
    "huge_pages": "try",
    "min_wal_size": "2GB",
    "max_wal_size": "8GB",
    "max_worker_processes": "16",
    "max_parallel_workers_per_gather": "4",
    "max_parallel_workers": "16",
    "max_parallel_maintenance_workers": "4",
    "jit": "off",
    "wal_compression": "lz4",
    "autovacuum_max_workers": "4",
    "autovacuum_work_mem": "2GB",
}

LARGE_DW_18_HDD = {
    "max_connections": "40",
    "shared_buffers": "16GB",
    "effective_cache_size": "48GB",
    "maintenance_work_mem": "8GB",
    "checkpoint_completion_target": "0.9",
    "wal_buffers": "16MB",
    "default_statistics_target": "500",
    "random_page_cost": "4",
    "effective_io_concurrency": "2",
    "work_mem": "149796kB",  # (64GB-16GB)kB / ((40+16)*3) / 2
    "huge_pages": "try",
    "min_wal_size": "4GB",
    "max_wal_size": "16GB",
    "max_worker_processes": "16",
    "max_parallel_workers_per_gather": "8",
    "max_parallel_workers": "16",
    "max_parallel_maintenance_workers": "4",
    "wal_compression": "lz4",
    "autovacuum_max_workers": "4",
    "autovacuum_work_mem": "2GB",
    "io_method": "io_uring",
    "io_workers": "4",
}

SMALL_DESKTOP_13 = {
    "max_connections": "20",
    "shared_buffers": "64MB",
    "effective_cache_size": "256MB",
    "maintenance_work_mem": "64MB",
    "checkpoint_completion_target": "0.9",
    "wal_buffers": "1966kB",
    "default_statistics_target": "100",
    "random_page_cost": "1.1",
    "effective_io_concurrency": "200",
    "work_mem": "4MB",
    "huge_pages": "off",
    "min_wal_size": "100MB",
    "max_wal_size": "2GB",
    "wal_level": "minimal",
    "max_wal_senders": "0",
    "wal_compression": "on",
}

MEDIUM_MIXED_16_SAN = {
    "max_connections": "100",
    "shared_buffers": "2GB",
    "effective_cache_size": "6GB",
    "maintenance_work_mem": "512MB",
    "checkpoint_completion_target": "0.9",
    "wal_buffers": "16MB",
    "default_statistics_target": "100",
    "random_page_cost": "1.1",
    "effective_io_concurrency": "300",
    "work_mem": "9709kB",  # (8GB-2GB)kB / ((100+8)*3) / 2
    "huge_pages": "try",
    "min_wal_size": "1GB",
    "max_wal_size": "4GB",
    "max_worker_processes": "8",
    "max_parallel_workers_per_gather": "4",
    "max_parallel_workers": "8",
    "max_parallel_maintenance_workers": "4",
    "jit": "off",
    "wal_compression": "lz4",
}

MEDIUM_WEB_14_WINDOWS = {
    "max_connections": "200",
    "shared_buffers": "4GB",
    "effective_cache_size": "12GB",
    "maintenance_work_mem": "1GB",
    "checkpoint_completion_target": "0.9",
    "wal_buffers": "16MB",
    "default_statistics_target": "100",
    "random_page_cost": "1.1",
    "work_mem": "20560kB",  # (16GB-4GB)kB / ((200+4)*3)
    "huge_pages": "try",
    "min_wal_size": "1GB",
    "max_wal_size": "4GB",
    "max_worker_processes": "4",
    "max_parallel_workers_per_gather": "2",
    "max_parallel_workers": "4",
    "max_parallel_maintenance_workers": "2",
    "jit": "off",
    "wal_compression": "on",
}


@pytest.mark.parametrize(
    ("inp", "expected"),
    [
        (TuningInput(15, "web", 1 * GIB, 1), SMALL_WEB_15),
        (TuningInput(17, "oltp", 64 * GIB, 16, storage="nvme"), LARGE_OLTP_17),
        (TuningInput(18, "dw", 64 * GIB, 16, storage="hdd"), LARGE_DW_18_HDD),
        (TuningInput(13, "desktop", 1 * GIB, 1), SMALL_DESKTOP_13),
        (TuningInput(16, "mixed", 8 * GIB, 8, storage="san"), MEDIUM_MIXED_16_SAN),
        (TuningInput(14, "web", 16 * GIB, 4, os="windows"), MEDIUM_WEB_14_WINDOWS),
    ],
    ids=["small-web-15", "large-oltp-17", "large-dw-18", "desktop-13", "mixed-16", "win-14"],
)
def test_pgtune_whole_config(inp, expected):
    result = pgtune(inp)
    assert result.as_dict() == expected
    assert list(result.as_dict()) == list(expected)  # PGTune's order
    assert all(s.source == "pgtune" for s in result.settings)
    # without container limits, tune() keeps every PGTune value and source
    full = tune(inp)
    assert [s for s in full.settings if s.source == "pgtune"] == list(result.settings)


def test_explicit_connections_change_work_mem():
    result = pgtune(TuningInput(15, "web", 16 * GIB, 4, connections=50))
    assert result.get("max_connections") == "50"
    # (16GB-4GB)kB / ((50+4)*3) = 77672.2
    assert result.get("work_mem") == "77672kB"


def test_warnings_reach_the_result():
    assert pgtune(TuningInput(18, "web", 4 * GIB, 4)).warnings == (LZ4, URING)
    assert "low memory" in pgtune(TuningInput(15, "web", 128 * MIB, 1)).warnings[0]


# --------------------------------------------------------------------------------------
# pgsteady layer
# --------------------------------------------------------------------------------------

PGSTEADY_NAMES = {
    "shared_preload_libraries",
    "password_encryption",
    "idle_in_transaction_session_timeout",
    "log_min_duration_statement",
    "log_checkpoints",
    "log_connections",
    "log_disconnections",
    "log_lock_waits",
    "log_temp_files",
    "log_autovacuum_min_duration",
    "log_line_prefix",
}


@pytest.mark.parametrize("db_type", t.DB_TYPES)
def test_pgsteady_additions_for_each_type(db_type):
    result = tune(TuningInput(15, db_type, 4 * GIB, 2))
    extra = {s.name: s for s in result.settings if s.source == "pgsteady"}
    assert set(extra) >= PGSTEADY_NAMES
    assert extra["shared_preload_libraries"].value == "pg_stat_statements"
    assert extra["password_encryption"].value == "scram-sha-256"
    # spills from 10MB: with a container's small work_mem every spill would flood the log
    assert extra["log_temp_files"].value == "10MB"
    assert extra["log_connections"].value == "on"  # the audit trail stays
    assert all(s.comment and "\n" not in s.comment for s in extra.values())
    names = [s.name for s in result.settings]
    assert len(names) == len(set(names))  # no setting twice


def test_pgsteady_autovacuum_sizing():
    small = tune(TuningInput(15, "web", 1 * GIB, 1)).as_dict()
    # 1GB / (8 * 3 workers) = 42.7MB, below maintenance_work_mem (64MB)
    assert small["autovacuum_work_mem"] == "42MB"
    assert small["autovacuum_vacuum_cost_limit"] == "1000"
    large = tune(TuningInput(17, "oltp", 64 * GIB, 16, storage="hdd"))
    # PGTune's own autovacuum_work_mem (2GB) wins; no cost limit on spinning disks
    assert large.get("autovacuum_work_mem") == "2GB"
    assert next(s for s in large.settings if s.name == "autovacuum_work_mem").source == "pgtune"
    assert large.get("autovacuum_vacuum_cost_limit") is None


def test_container_memory_limit_sizes_for_the_limit():
    inp = TuningInput(15, "web", 16 * GIB, 8, memory_limit=2 * GIB, cpu_limit=1.5)
    result = tune(inp)
    # 2048MiB - 64MiB - 200*2MiB = 1584MiB (no share kept for the page cache)
    assert result.memory_basis == 1584 * MIB
    assert result.cpu_basis == 2
    values = result.as_dict()
    assert values["shared_buffers"] == "396MB"
    assert values["effective_cache_size"] == "1188MB"
    assert values["maintenance_work_mem"] == "99MB"
    assert values["autovacuum_work_mem"] == "66MB"
    # 2048 - 464 reserve - 9/8*396 shared - 99 maintenance - 3*66 autovacuum = 841.5MiB
    # over (200 connections + 8 parallel workers) * 5 units = 828.5kB (PGTune: 4MB floor)
    assert values["work_mem"] == "828kB"
    wm = next(s for s in result.settings if s.name == "work_mem")
    assert wm.source == "pgsteady" and "5 x work_mem" in wm.comment
    assert values["huge_pages"] == "off"
    assert "max_worker_processes" not in values  # 2 CPUs: PGTune sets no parallel workers
    sb = next(s for s in result.settings if s.name == "shared_buffers")
    assert sb.source == "pgsteady"
    assert "4GB" in sb.comment and "container memory limit" in sb.comment
    unchanged = next(s for s in result.settings if s.name == "max_wal_size")
    assert unchanged.source == "pgtune"
    # everything Postgres sizes from memory fits well inside the limit
    assert parse_size(values["shared_buffers"]) < 2 * GIB // 4


def test_container_cpu_limit_only():
    result = tune(TuningInput(15, "web", 16 * GIB, 16, cpu_limit=3.2))
    assert result.cpu_basis == 4
    mwp = next(s for s in result.settings if s.name == "max_worker_processes")
    assert (mwp.value, mwp.source) == ("4", "pgsteady")
    assert "CPU limit 3.2" in mwp.comment
    assert next(s for s in result.settings if s.name == "shared_buffers").source == "pgtune"


def test_limits_above_the_host_are_reported_not_used():
    inp = TuningInput(15, "web", 4 * GIB, 2, memory_limit=8 * GIB, cpu_limit=4)
    result = tune(inp)
    assert result.memory_basis == 4 * GIB and result.cpu_basis == 2
    assert any("above host RAM" in w for w in result.warnings)
    assert any("above the host's 2 CPUs" in w for w in result.warnings)
    assert [s for s in result.settings if s.source == "pgtune"] == list(
        pgtune(TuningInput(15, "web", 4 * GIB, 2)).settings
    )


def test_limit_equal_to_ram_is_plain_pgtune():
    result = tune(TuningInput(15, "web", 4 * GIB, 2, memory_limit=4 * GIB))
    assert result.memory_basis == 4 * GIB and not any("above" in w for w in result.warnings)


def test_too_many_connections_for_the_limit_warns():
    result = tune(TuningInput(15, "oltp", 8 * GIB, 2, memory_limit=1 * GIB))
    # 1024 - 64 - 600 - 51.2 < 512: clamp at half the limit
    assert result.memory_basis == 512 * MIB
    assert any("max_connections 300" in w for w in result.warnings)


def test_desktop_wal_level_warning():
    assert any("wal_level = minimal" in w for w in tune(TuningInput(15, "desktop", GIB)).warnings)


def test_tuned_settings_helper():
    values = tuned_settings(pg_version=15, db_type="web", ram=4 * GIB, cpus=2)
    assert values["shared_buffers"] == "1GB"
    assert values["password_encryption"] == "scram-sha-256"


def test_setting_is_frozen():
    s = Setting("a", "b")
    with pytest.raises(AttributeError):
        s.name = "c"  # type: ignore[misc]


# --------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "param"),
    [
        ({"pg_version": 12}, "pg_version"),
        ({"pg_version": 19}, "pg_version"),
        ({"pg_version": "15"}, "pg_version"),
        ({"db_type": "analytics"}, "db_type"),
        ({"ram": 0}, "ram"),
        ({"ram": 16}, "ram"),
        ({"ram": 1.5 * GIB}, "ram"),
        ({"cpus": 0}, "cpus"),
        ({"cpus": -1}, "cpus"),
        ({"connections": 0}, "connections"),
        ({"connections": 300000}, "connections"),
        ({"storage": "tape"}, "storage"),
        ({"os": "bsd"}, "os"),
        ({"memory_limit": 0}, "memory_limit"),
        ({"cpu_limit": 0}, "cpu_limit"),
        ({"cpu_limit": -1.0}, "cpu_limit"),
        ({"cpu_limit": float("nan")}, "cpu_limit"),
    ],
)
def test_bad_input_raises_tuning_error(changes, param):
    base = {"pg_version": 15, "db_type": "web", "ram": 4 * GIB, "cpus": 2}
    with pytest.raises(TuningError) as err:
        tune(TuningInput(**{**base, **changes}))
    message = str(err.value)
    assert message.startswith(f"{param}: invalid value {changes[param]!r}")
    assert "expected" in message
    assert isinstance(err.value, ValueError)


# --------------------------------------------------------------------------------------
# Properties
# --------------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    version=st.sampled_from(t.PG_VERSIONS),
    db_type=st.sampled_from(t.DB_TYPES),
    ram_mb=st.integers(min_value=256, max_value=1024 * 1024),
    cpus=st.integers(min_value=1, max_value=256),
    limit_pct=st.one_of(st.none(), st.integers(min_value=10, max_value=150)),
)
def test_properties(version, db_type, ram_mb, cpus, limit_pct):
    ram = ram_mb * MIB
    limit = None if limit_pct is None else max(MIB, ram * limit_pct // 100)
    result = tune(TuningInput(version, db_type, ram, cpus, memory_limit=limit))
    values = result.as_dict()
    budget = min(ram, limit) if limit else ram
    assert parse_size(values["shared_buffers"]) <= budget // 4
    if limit is None or limit >= ram:
        assert parse_size(values["work_mem"]) >= 4 * MIB
    else:
        assert parse_size(values["work_mem"]) >= t.MIN_WORK_MEM_KB * 1024
        assert_worst_case_fits(result, limit)
    assert parse_size(values["maintenance_work_mem"]) <= 8 * GIB
    assert 32 * 1024 <= parse_size(values["wal_buffers"]) <= 16 * MIB
    assert result.memory_basis <= ram
    if limit is None or limit >= ram:
        assert [s for s in result.settings if s.source == "pgtune"] == list(
            pgtune(TuningInput(version, db_type, ram, cpus)).settings
        )
    assert all(not math.isnan(float(v)) for v in [values["checkpoint_completion_target"]])


def assert_worst_case_fits(result, limit):
    """Every connection and parallel worker at 5 x work_mem, one maintenance_work_mem and
    every autovacuum worker fit the limit, unless work_mem is at the server's floor (then
    a warning says so)."""
    v = result.as_dict()
    conns = int(v["max_connections"])
    work_mem = parse_size(v["work_mem"])
    if work_mem <= t.MIN_WORK_MEM_KB * 1024:
        assert any("leaves no work memory" in w for w in result.warnings)
        return
    workers = int(v.get("autovacuum_max_workers", "3"))
    autovacuum = parse_size(v.get("autovacuum_work_mem", v["maintenance_work_mem"]))
    parallel = int(v.get("max_parallel_workers", "8"))
    total = (
        64 * MIB
        + 2 * MIB * conns
        + parse_size(v["shared_buffers"]) * 9 / 8
        + parse_size(v["maintenance_work_mem"])
        + workers * autovacuum
        + (conns + parallel) * 5 * work_mem
    )
    assert total <= limit


@pytest.mark.parametrize("limit_gb", [1, 2, 4, 8, 16])
@pytest.mark.parametrize("connections", [20, 100, 200, 500])
def test_worst_case_memory_fits_the_container_limit(limit_gb, connections):
    """Issue 19: PGTune's 4MB floor put 200 connections x 5 x 4MB above a 2GB limit (the
    bench's worst-case workload OOM-killed the postmaster); the budget keeps it inside."""
    result = tune(TuningInput(17, "web", 64 * GIB, 8, connections=connections,
                              memory_limit=limit_gb * GIB))  # fmt: skip
    assert_worst_case_fits(result, limit_gb * GIB)


@pytest.mark.parametrize("db_type", t.DB_TYPES)
def test_work_mem_is_never_above_pgtune_for_the_basis(db_type):
    for conns in (5, 50, 300):
        inp = TuningInput(17, db_type, 64 * GIB, 8, connections=conns, memory_limit=16 * GIB)
        limited = tune(inp)
        core = pgtune(TuningInput(17, db_type, limited.memory_basis, 8, connections=conns))
        assert parse_size(limited.get("work_mem")) <= parse_size(core.get("work_mem"))
