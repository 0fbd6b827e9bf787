"""bench.memory: the pure parts of the worst-case memory workload."""

import pytest

from bench import memory

OOM_CONTROL_V1 = "oom_kill_disable 0\nunder_oom 0\noom_kill 5\n"
EVENTS_V2 = "low 0\nhigh 0\nmax 12\noom 2\noom_kill 2\noom_group_kill 0\n"
STAT_V1 = "cache 352735232\nrss 13713408\nrss_huge 0\nshmem 19079168\nmapped_file 1\n"
STAT_V2 = "anon 1000\nfile 999999\nkernel 5\nshmem 24\n"
LOG = """\
2026-11-30 04:40:01.1 UTC [1] LOG:  server process (PID 77) was terminated by signal 9: Killed
2026-11-30 04:40:01.1 UTC [1] DETAIL:  Failed process was running: SELECT count(*) ...
2026-11-30 04:40:01.2 UTC [1] LOG:  terminating any other active server processes
2026-11-30 04:41:09.0 UTC [1] LOG:  autovacuum worker (PID 90) was terminated by signal 9: Killed
2026-11-30 04:42:00.0 UTC [1] LOG:  server process (PID 91) was terminated by signal 15
"""


def test_oom_kill_counter_of_cgroup_v1_and_v2():
    assert memory.oom_kill_count(OOM_CONTROL_V1) == 5
    assert memory.oom_kill_count(EVENTS_V2) == 2
    with pytest.raises(ValueError, match="no oom_kill"):
        memory.oom_kill_count("oom_kill_disable 0\nunder_oom 0\n")


def test_resident_bytes_leave_out_the_page_cache():
    assert memory.resident_bytes(STAT_V1) == 13713408 + 19079168
    assert memory.resident_bytes(STAT_V2) == 1024
    with pytest.raises(ValueError, match="no rss/anon or shmem"):
        memory.resident_bytes("cache 5\n")


def test_signal9_lines_count_sigkilled_server_processes_only():
    assert memory.signal9_lines(LOG) == 2
    assert memory.signal9_lines("") == 0


def test_counter_sums_across_a_reset():
    c = memory.Counter(last=3)
    assert c.see(3) == 0
    assert c.see(5) == 2
    assert c.see(1) == 3  # the container restarted: a new cgroup counting from 0
    assert c.see(4) == 6


def test_parse_kb_reads_show_output():
    assert memory.parse_kb("4MB") == 4096
    assert memory.parse_kb("862kB") == 862
    assert memory.parse_kb("1GB") == 1024**2
    with pytest.raises(ValueError, match="expected a size"):
        memory.parse_kb("4 megs")


def test_rows_overflow_every_node():
    for work_mem_kb in (64, 832, 4096, 30295):
        rows = memory.rows_needed(work_mem_kb, 2.0)
        hash_mem = work_mem_kb * 1024 * 2.0
        # half as many groups as rows, at the smallest bytes per hashed key
        assert rows // 2 * memory.BYTES_PER_HASHED_KEY > hash_mem
    assert memory.rows_needed(64, 1.0) == 10_000  # a floor keeps tiny settings busy
    assert memory.work_units(2.0) == 5.0


def test_query_sorts_hashes_and_parks_at_the_barrier():
    sql = memory.query("bench_rows", "k", 1000)
    assert "ORDER BY o" in sql and "GROUP BY 1" in sql and "JOIN" in sql
    assert "WHERE k <= 1000" in sql and "k % 500" in sql
    assert f"pg_advisory_xact_lock_shared({memory.BARRIER_KEY})" in sql
    with pytest.raises(ValueError, match="plain lower-case names"):
        memory.query("rows; DROP TABLE x", "k", 10)


def test_allowed_clients_respects_the_role_limit():
    assert memory.allowed_clients(200, 3, -1) == 197
    assert memory.allowed_clients(200, 3, 50) == 50
    assert memory.allowed_clients(100, 3, 500) == 97


def _run(config, killed, kills, peak):
    return {"config": config, "killed": killed, "oom_kills": kills, "signal9": kills,
            "peak_bytes": peak}  # fmt: skip


def test_summarize_per_configuration():
    runs = [
        _run("H", True, 3, 0),
        _run("C", False, 0, 600),
        _run("H", True, 2, 1000),
        _run("C", False, 0, 800),
    ]
    out = memory.summarize(runs, limit=1000)
    assert list(out) == ["H", "C"]
    assert out["H"]["runs"] == 2 and out["H"]["runs_killed"] == 2 and out["H"]["oom_kills"] == 5
    assert out["C"]["runs_killed"] == 0 and out["C"]["oom_kills"] == 0
    assert out["C"]["peak_of_limit"]["max"] == 0.8
    assert out["H"]["peak_of_limit"]["n"] == 1  # a run killed before any sample has no peak


def _memory_part():
    runs = [
        {**_run("H", True, 4, 0), "round": 0, "clients": 196, "work_mem_kb": 30295,
         "arrived_at_peak": 0, "container_restarts": 1},
        {**_run("C", False, 0, 1_200_000_000), "round": 0, "clients": 196, "work_mem_kb": 828,
         "arrived_at_peak": 196, "container_restarts": 0},
    ]  # fmt: skip
    summary = memory.summarize(runs, 2 * 1024**3)
    return {
        "configs": {k: {"name": n, "key": key, "settings": {"work_mem": w}} for k, n, key, w in
                    (("H", "PGTune host", "pgtune_host_sized", "30295kB"),
                     ("C", "pgsteady", "pgsteady", "828kB"))},
        "limit_bytes": 2 * 1024**3,
        "runs": runs,
        "results": summary,
        "oom_kills": {"pgtune_host_sized": 4, "pgsteady": 0},
        "workload": {"query_units": "Sort + HashAggregate + Hash join", "rounds": 1,
                     "hold_seconds": 3.0, "maintenance": "CREATE INDEX"},
    }  # fmt: skip


def test_page_shows_oom_kills_per_configuration_and_the_headlines():
    from bench import headlines, report
    from tests.unit.test_bench_report import results, tuning

    part = _memory_part()
    tun = {**tuning(), "memory": part, "oom_kills": part["oom_kills"]}
    res = headlines.with_headlines(results(tuning=tun))
    assert res["headlines"]["oom_kills_pgsteady"] == 0
    assert res["headlines"]["oom_kills_pgtune_host_sized"] == 4
    page = report.render(res)
    assert "### Worst-case memory workload: OOM kills per configuration" in page
    assert "| H: PGTune host | 1 | 1 | 4 | 4 | 0/1 | – |" in page
    assert "| C: pgsteady | 1 | 0 | 0 | 0 | 1/1 | 56% |" in page
    assert "postmaster restarted by Docker" in page
    assert "Worst-case memory workload, OOM kills: pgtune host sized 4, pgsteady 0" in page


def test_tuning_goal_says_met_or_by_how_much_it_is_missed():
    from bench import report, stats

    b, c, d = [100.0, 100.0], [88.0, 90.0], [97.0, 99.0]
    missed = {"C/B": stats.ratio_summary(c, b), "D/B": stats.ratio_summary(d, b),
              "C/D": stats.ratio_summary(c, d), "tps": {"D": stats.summary(d, 1)}}  # fmt: skip
    met = {"C/B": stats.ratio_summary(b, c)}
    lines = report._tuning_goal({"results": {"read_only": missed, "tpcb_like": met}})
    assert lines[0].startswith(
        "Goal pgsteady ≥ 1.00× PGTune core, read-only: 0.89×, missed by 11%."
    )
    assert "with / without pg_stat_statements, C/D = 0.91×" in lines[0]
    assert "D/B = 0.98×" in lines[0]
    assert lines[1].startswith("Goal pgsteady ≥ 1.00× PGTune core, tpcb-like: 1.12×, met.")
    assert "Met on the median only" not in lines[1]  # both rounds above 1.00
