"""bench.report and bench.parsing: the page written from a run's results."""

import pytest

from bench import config, merge, report, stats
from bench.parsing import parse_pgbench

PGBENCH_OUTPUT = """\
pgbench (17.12 (Debian 17.12-0+deb13u1))
transaction type: <builtin: select only>
scaling factor: 70
number of clients: 4
latency average = 0.075 ms
initial connection time = 3.411 ms
tps = 53188.141772 (without initial connection time)
"""


def test_parse_pgbench():
    assert parse_pgbench(PGBENCH_OUTPUT) == {"tps": 53188.141772, "latency_ms": 0.075}
    with pytest.raises(ValueError, match="no tps line"):
        parse_pgbench("pgbench: error: connection refused")


def results(**parts):
    base = {
        "started": "2026-11-28 18:00 UTC",
        "argv": "",
        "total_seconds": 900.0,
        "config": config.BenchConfig().as_dict(),
        "machine": {"os": "Debian 12", "cpus": 2},
        "versions": {"postgres": "17.12"},
        "load": {"start": [1.0, 1.5, 2.0], "end": [3.0, 2.5, 2.0]},
    }
    return {**base, **parts}


RECOVERY = {
    "seconds": stats.summary([1.1, 1.2, 1.5]),
    "spacing_seconds": 12.0,
    "slow_trials": [],
    "old_promise_seconds": 30.0,
    "within_old_promise": 3,
    "p95_vs_promise": 0.05,
    "max_vs_promise": 0.05,
}


def tuning():
    a, b, c = [100.0, 110.0], [150.0, 140.0], [160.0, 170.0]
    r = {
        "tps": {k: stats.summary(v) for k, v in zip("ABC", (a, b, c), strict=True)},
        "B/A": stats.ratio_summary(b, a),
        "C/A": stats.ratio_summary(c, a),
        "C/B": stats.ratio_summary(c, b),
    }
    return {
        "configs": {k: {"name": k, "settings": {"shared_buffers": v}} for k, v in
                    (("A", "128MB"), ("B", "512MB"), ("C", "368MB"))},
        "results": {"read_only": r, "tpcb_like": r},
        "deployed_conf_restored": True,
        "pgbench": {"where": "inside", "clients": 4, "threads": 2, "seconds": 30,
                    "warmup_seconds": 5, "rounds": 2},
    }  # fmt: skip


BACKUPS = {
    "database_bytes": 1_100_000_000,
    "dump_bytes": {"tool": 20_000_000, "bare": 20_000_000},
    "backup_seconds": {"tool": stats.summary([9.0, 9.5]), "bare": stats.summary([4.5, 4.4])},
    "tool_vs_bare": stats.ratio_summary([9.0, 9.5], [4.5, 4.4]),
    "restore_seconds": {"1": stats.summary([15.0, 14.0]), "2": stats.summary([8.0, 8.5])},
    "restore_speedup": {"1/2": stats.ratio_summary([15.0, 14.0], [8.0, 8.5])},
    "drill_seconds": stats.summary([10.5, 11.0]),
}


def converge():
    run = {"seconds": 12.0, "changed": 30, "changed_operations": []}
    noop = {"seconds": 3.0, "changed": 1, "changed_operations": ["Apply init_db.sql"]}
    return {
        "first_converge": {"runs": [run], "seconds": stats.summary([12.0])},
        "noop_converge": {"runs": [noop], "seconds": stats.summary([3.0])},
        "serial_local_noop": {"1": stats.summary([3.0]), "10": stats.summary([30.0])},
        "parallel_noop": {
            "1": {"seconds": stats.summary([4.0]), "changed": [0], "per_host_seconds": 4.0}
        },
        "verify": {"available": False, "note": "pgsteady.verify does not exist"},
    }


def test_full_page_has_every_section_and_the_headline_ratios():
    page = report.render(
        results(recovery=RECOVERY, tuning=tuning(), backups=BACKUPS, converge=converge())
    )
    for heading in ("## Headlines", "## Recovery", "## Tuning", "## Backups", "## Converge",
                    "## Commands", "## Reproduce"):  # fmt: skip
        assert heading in page
    assert "p50 1.20 s" in page and "< 30 s" in page
    assert "1.39× (1.27–1.50)" in page  # B/A read-only, paired per round
    assert "Restore --jobs 2 runs at 1.76× (1.65–1.88) the speed of --jobs 1" in page
    assert "More jobs were slower" not in page
    assert "Apply init_db.sql" in page  # a re-converge that changes something is named
    assert "make verify: not measured" in page
    assert "1.0 / 1.5 / 2.0" in page and "3.0 / 2.5 / 2.0" in page


def test_partial_run_renders_only_what_ran_and_names_failures():
    page = report.render(
        results(
            recovery=RECOVERY,
            errors={"tuning": "RuntimeError: boom"},
            retried={"recovery": "RuntimeError: docker down\ndetails"},
        )
    )
    assert "## Recovery" in page and "## Backups" not in page
    assert "Failed: RuntimeError: boom" in page
    assert "recovery: RuntimeError: docker down" in page and "details" not in page


def test_backups_section_says_whether_the_goal_is_met_and_by_how_much_it_is_missed():
    missed = report.render(results(backups=BACKUPS))
    assert "goal ≤ 1.15× (issue 19): missed by 0.93×" in missed
    fast = {**BACKUPS, "tool_vs_bare": stats.ratio_summary([4.6, 4.4], [4.5, 4.4])}
    assert "goal ≤ 1.15× (issue 19): met." in report.render(results(backups=fast))


def test_backups_section_names_the_tool_s_compression_and_the_same_compression_ratio():
    zstd = {
        **BACKUPS,
        "compression": {"tool": "zstd", "bare": "gzip"},
        "dump_bytes": {"tool": 6 * 1024**2, "bare": 19 * 1024**2, "bare_same": 6 * 1024**2},
        "backup_seconds": {**BACKUPS["backup_seconds"], "bare_same": stats.summary([7.0, 7.6])},
        "tool_vs_bare_same": stats.ratio_summary([9.0, 9.5], [7.0, 7.6]),
    }
    page = report.render(results(backups=zstd))
    assert "dump: 6 MiB (zstd; the bare pg_dump -Fc's, gzip: 19 MiB)" in page
    assert "| bare pg_dump -Fc --compress=zstd via docker exec | 7.30 s |" in page
    assert "Tool / bare dump with the same compression (zstd): 1.27× (1.25–1.29)" in page
    plain = report.render(results(backups=BACKUPS))  # figures from before zstd: no such lines
    assert "| bare pg_dump -Fc --compress" not in plain and "same compression" not in plain


def test_fmt_ratio_single_round():
    assert report.fmt_ratio(stats.ratio_summary([2.0], [1.0])) == "2.00× (one round)"


def pitr(exact=5):
    targets = [
        {"target": f"2026-11-29 18:53:1{i}.000000+00", "expected": i,
         "found": list(range(1, i + 1)), "exact": i <= exact, "seconds": 3.0}
        for i in range(1, 6)
    ]  # fmt: skip
    return {
        "image": "pgsteady/postgres:17-debian-x", "postgres": "17.12",
        "pgbackrest": "pgBackRest 2.55.1",
        "scale": 20, "clients": 4, "threads": 2, "seconds": 20, "rounds": 3,
        "order": "alternated", "archive_settings": {"archive_timeout": "60s"},
        "tps": {"archiving": stats.summary([3000.0, 3100.0, 3200.0]),
                "no_archiving": stats.summary([3200.0, 3300.0, 3250.0])},
        "archiving_vs_not": stats.ratio_summary([3000.0, 3100.0, 3200.0], [3200.0, 3300.0, 3250.0]),
        "database_bytes": 336_000_000, "backup_seconds": 2.7, "restore_seconds": 1.75,
        "restore_mb_per_s": 183.1, "restore_to_ready_seconds": 3.5, "restored_accounts": 2_000_000,
        "pitr": {"markers": 12, "marker_gap_seconds": 0.3, "background_load": "pgbench",
                 "seed": 42, "targets": targets, "exact": exact, "n": 5,
                 "seconds": stats.summary([3.0] * 5)},
    }  # fmt: skip


def test_pitr_section_puts_the_ratio_restore_rate_and_targets_side_by_side():
    page = report.render(results(pitr=pitr()))
    assert "## pgBackRest: cost of WAL archiving, restore rate, PITR correctness" in page
    assert "| 3100 (3000–3200) | 3250 (3200–3300) | 0.94× (0.94–0.98) |" in page
    assert "with archiving / without 0.94× (0.94–0.98)" in page  # headline
    assert "320 MB database: 183.1 MB/s (1.75 s)" in page
    assert "PITR to 5 random times: 5/5 exact" in page
    assert page.count("| yes |") == 5
    assert "pgbench -n -c 4 -j 2 -T 20 postgres" in page  # its command, with this run's sizes
    assert "A `--quick` run" not in page
    assert "## Recovery" not in page and "Stacks: converged" not in page  # no data part ran


def test_pitr_section_names_a_wrong_target_and_a_quick_run():
    res = results(pitr=pitr(exact=3))
    res["config"] = {**res["config"], "quick": True}
    page = report.render(res)
    assert "PITR to 5 random times: 3/5 exact" in page and page.count("| NO |") == 2
    assert "A `--quick` run (small sizes); the full `make bench` runs scale 20" in page


def test_carried_sections_say_which_run_measured_them():
    old = results(recovery=RECOVERY, tuning=tuning())
    old["config"] = {**old["config"], "scale": 70}
    old["machine"] = {**old["machine"], "kernel": "6.1-old", "disk_free_gib": 70}
    new = results(pitr=pitr(), started="2026-11-29 19:00 UTC", argv="--only pitr --quick")
    new["config"] = {**new["config"], "parts": ["pitr"], "scale": 20, "quick": True}
    new["machine"] = {**new["machine"], "kernel": "6.1-new", "disk_free_gib": 60}
    page = report.render(merge.merge(old, new))
    carried = (
        "Measured by an earlier run (`python -m bench`, 2026-11-28 18:00 UTC, load 1.0 / 1.5 / "
        "2.0 at its start; the machine then: kernel 6.1-old); not re-run on 2026-11-29 19:00 UTC."
    )
    assert page.count(carried) == 2  # recovery and tuning, not pitr
    assert page.index("## Recovery") < page.index(carried) < page.index("3 trials")
    assert "keep their earlier figures and say when they were measured: recovery, tuning" in page
    assert "holds pgbench scale 70." in page  # the data stack of the run that measured it
    assert "`python -m bench --only pitr --quick`) on 2026-11-29 19:00 UTC" in page


#: A pooler part as bench.pooler records it (figures of a run on this machine).
POOLER = {
    "added_latency_ms_p50": -0.014,
    "connect_ms": {
        "direct": {
            "max": 44.711,
            "mean": 39.532,
            "min": 34.724,
            "n": 3,
            "p50": 39.162,
            "p95": 44.156,
        },
        "pooler": {
            "max": 25.213,
            "mean": 21.31,
            "min": 17.914,
            "n": 3,
            "p50": 20.802,
            "p95": 24.772,
        },
    },
    "connect_per_transaction_tps": {
        "direct": {
            "max": 56.592,
            "mean": 50.349,
            "min": 44.182,
            "n": 3,
            "p50": 50.274,
            "p95": 55.96,
        },
        "pooler": {
            "max": 108.912,
            "mean": 93.847,
            "min": 77.943,
            "n": 3,
            "p50": 94.687,
            "p95": 107.49,
        },
    },
    "default_pool_size": 91,
    "errors": 0,
    "first_error": None,
    "peak_server_connections": 91,
    "pooler_clients_served": 1000,
    "seconds": 8.9,
    "select_only_latency_ms": {
        "direct": {"max": 1.081, "mean": 0.994, "min": 0.946, "n": 3, "p50": 0.956, "p95": 1.069},
        "pooler": {"max": 1.029, "mean": 0.958, "min": 0.903, "n": 3, "p50": 0.942, "p95": 1.02},
    },
    "select_only_latency_ratio_pooler_to_direct": {
        "max": 1.076,
        "median": 0.955,
        "min": 0.871,
        "n": 3,
        "ratios": [0.871, 0.955, 1.076],
    },
}


def test_pooler_section_puts_both_paths_side_by_side_and_the_thousand_clients():
    measured = POOLER
    page = report.render(results(pooler=measured))
    section = page.split("## Connection pooling (PgBouncer)", 1)[1].split("\n## ", 1)[0]
    assert "| `pgbench -S`, 8 clients held: latency |" in section
    assert f"{measured['pooler_clients_served']} clients held at once" in section
    assert f"at most {measured['peak_server_connections']} server connections" in section
    assert f"default_pool_size {measured['default_pool_size']}" in section
    assert "## Connection pooling" not in report.render(results(backups=BACKUPS))


def test_converge_section_judges_the_ssh_goal_on_the_largest_inventory():
    con = converge()
    page = report.render(results(converge=con))
    assert "(issue 19): missed by 1.00 s (4.00 s per host with 1 host in one inventory)" in page
    con["parallel_noop"]["10"] = {
        "seconds": stats.summary([13.0]), "changed": [0] * 10, "per_host_seconds": 1.3,
        "per_host_cpu_seconds": 0.75,
    }  # fmt: skip
    page = report.render(results(converge=con))
    assert "(issue 19): met (1.30 s per host with 10 hosts in one inventory)" in page
    assert "0.75 s of CPU per host" in page and "about 80 hosts' no-op converges" in page


def test_backups_section_explains_a_restore_that_more_jobs_made_slower():
    slow = {**BACKUPS, "restore_speedup": {"1/2": stats.ratio_summary([15.0, 14.0], [17.0, 16.5])}}
    page = report.render(results(backups=slow))
    assert "runs at 0.86× (0.85–0.88) the speed of --jobs 1" in page
    assert "More jobs were slower here" in page and "pgbench_accounts" in page
