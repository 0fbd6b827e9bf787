"""bench.report and bench.parsing: the page written from a run's results."""

import pytest

from bench import config, report, stats
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
    assert "Restore --jobs 2 is 1.76× (1.65–1.88) faster than --jobs 1" in page
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


def test_fmt_ratio_single_round():
    assert report.fmt_ratio(stats.ratio_summary([2.0], [1.0])) == "2.00× (one round)"
