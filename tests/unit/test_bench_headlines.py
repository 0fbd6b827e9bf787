"""bench.headlines: the ``headlines`` object of benchmarks.json, from the parts' figures."""

import json

from test_bench_report import BACKUPS, RECOVERY, converge, results, tuning

from bench import headlines, merge, report, stats

ISSUE_KEYS = [
    "recovery_kill9_p95_s", "recovery_docker_kill_p95_s", "tuning_vs_pgtune_ro",
    "tuning_vs_pgtune_rw", "oom_kills_pgsteady", "oom_kills_pgtune_host_sized",
    "backup_overhead_ratio", "restore_parallel_speedup", "converge_noop_local_s",
    "converge_noop_ssh_per_host_s", "host_reboot_to_query_s", "pitr_rpo_s",
    "failover_p95_s", "switchover_write_gap_s", "pooler_clients_served",
]  # fmt: skip


def full_run():
    con = converge()
    con["parallel_noop"]["10"] = {
        "seconds": stats.summary([40.0]),
        "changed": [0],
        "per_host_seconds": 4.0,
    }
    con["parallel_noop"]["1"]["per_host_seconds"] = 7.5
    bak = {
        **BACKUPS,
        "restore_speedup": {
            "1/2": stats.ratio_summary([15.0, 14.0], [8.0, 8.5]),
            "1/4": stats.ratio_summary([15.0, 14.0], [6.0, 7.0]),
        },
    }
    return results(recovery=RECOVERY, tuning=tuning(), backups=bak, converge=con)


def test_exactly_the_issue_s_keys_in_its_order():
    assert list(headlines.compute(full_run())) == ISSUE_KEYS
    assert list(headlines.compute(results())) == ISSUE_KEYS


def test_each_figure_comes_from_its_part():
    h = headlines.compute(full_run())
    assert h["recovery_kill9_p95_s"] == RECOVERY["seconds"]["p95"]
    assert h["tuning_vs_pgtune_ro"] == tuning()["results"]["read_only"]["C/B"]["median"]
    assert h["tuning_vs_pgtune_rw"] == tuning()["results"]["tpcb_like"]["C/B"]["median"]
    assert h["backup_overhead_ratio"] == BACKUPS["tool_vs_bare"]["median"] == 2.08
    # the largest --jobs measured (1/4, not 1/2), and the largest inventory's per-host time
    assert h["restore_parallel_speedup"] == stats.ratio_summary([15.0, 14.0], [6.0, 7.0])["median"]
    assert h["converge_noop_ssh_per_host_s"] == 4.0
    assert h["converge_noop_local_s"] == 3.0


def test_nulls_where_a_capability_has_not_landed_or_a_part_did_not_run():
    h = headlines.compute(full_run())
    for key in ("recovery_docker_kill_p95_s", "oom_kills_pgsteady", "oom_kills_pgtune_host_sized",
                "host_reboot_to_query_s", "pitr_rpo_s", "failover_p95_s",
                "switchover_write_gap_s", "pooler_clients_served"):  # fmt: skip
        assert h[key] is None, key
        assert headlines.why_missing(full_run(), key), key
    only_recovery = results(recovery=RECOVERY, errors={"backups": "RuntimeError: boom"})
    h = headlines.compute(only_recovery)
    assert h["recovery_kill9_p95_s"] == RECOVERY["seconds"]["p95"]
    assert [k for k, v in h.items() if v is not None] == ["recovery_kill9_p95_s"]
    assert (
        headlines.why_missing(only_recovery, "backup_overhead_ratio") == "the backups part failed"
    )
    assert (
        headlines.why_missing(only_recovery, "tuning_vs_pgtune_ro") == "the tuning part did not run"
    )
    assert headlines.why_missing(only_recovery, "recovery_kill9_p95_s") is None


def test_figures_of_capabilities_as_they_land():
    res = full_run()
    res["recovery"] = {**RECOVERY, "docker_kill": {"seconds": stats.summary([3.0, 4.0, 9.0])}}
    res["pitr"] = {"host_loss": {"max_lost_seconds": 0.8}}
    res["pooler"] = {"pooler_clients_served": 1000}
    res["failover"] = {"failover_p95_seconds": 22.5, "switchover_write_gap_seconds": 4.2}
    h = headlines.compute(res)
    assert h["failover_p95_s"] == 22.5 and h["switchover_write_gap_s"] == 4.2
    assert h["recovery_docker_kill_p95_s"] == stats.summary([3.0, 4.0, 9.0])["p95"]
    assert h["pitr_rpo_s"] == 0.8 and h["pooler_clients_served"] == 1000


def test_a_partial_run_s_headlines_use_the_carried_parts_and_the_page_says_so():
    previous = headlines.with_headlines(full_run())
    backups_only = results(backups={**BACKUPS, "tool_vs_bare": stats.ratio_summary([4.0], [3.8])})
    backups_only["started"] = "2026-11-30 01:00 UTC"
    doc = headlines.with_headlines(merge.merge(previous, backups_only))
    assert next(iter(doc)) == "headlines"  # first in the file
    assert doc["headlines"]["backup_overhead_ratio"] == 1.053  # re-measured
    assert doc["headlines"]["recovery_kill9_p95_s"] == RECOVERY["seconds"]["p95"]  # carried
    assert json.loads(json.dumps(doc))["headlines"] == doc["headlines"]
    page = report.render(doc)
    top = page[: page.index("## Headlines")]
    assert "## Headline figures" in top
    assert "| `backup_overhead_ratio` | 1.05× |" in top and "backups, this run" in top
    assert "recovery, carried from 2026-11-28 18:00 UTC" in top
    assert "| `failover_p95_s` | null |" in top and "the failover part did not run" in top
