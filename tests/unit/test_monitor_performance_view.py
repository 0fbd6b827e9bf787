"""monitor.performance: parsing the section, the text view, the key and the flag."""

from __future__ import annotations

import json

from rich.console import Console

from pgsteady.inventory import InventoryHost
from pgsteady.monitor import view
from pgsteady.monitor.__main__ import parse_args
from pgsteady.monitor.collect import Target
from pgsteady.monitor.live import Monitor
from pgsteady.monitor.model import HostStatus
from pgsteady.monitor.performance import Performance, parse


def statement(query: str, calls: int, total: float, temp: int = 0) -> dict:
    return {"queryid": "-42", "user": "app", "query": query, "calls": calls,
            "total_ms": total, "mean_ms": total / calls, "rows": calls,
            "temp_blks_written": temp}  # fmt: skip


HEAVY = statement("SELECT [bold]x[/bold] FROM t WHERE id = $1", 3, 2400.5)
SORT = statement("SELECT md5(g::text) FROM generate_series($1, $2) g ORDER BY 1", 1, 90.0, 700)
OUTPUT = {
    "db": {"database": "app", "stats": {"blks_hit": 900, "blks_read": 100, "temp_files": 2,
                                        "temp_bytes": 5734400, "stats_reset": None}},
    "statements": {"count": 7, "temp_blks_written": 700, "by_total_time": [HEAVY, SORT],
                   "by_calls": [HEAVY, SORT], "by_mean_time": [HEAVY, SORT],
                   "by_temp_blks_written": [SORT]},
}  # fmt: skip


def test_parse_the_section() -> None:
    p = parse({"rc": 0, "out": json.dumps(OUTPUT), "err": ""})
    assert p.available and p.statements_available and p.error is None
    assert p.cache_hit_ratio == 0.9 and p.block_accesses == 1000
    assert (p.temp_files, p.temp_bytes, p.statements_count) == (2, 5734400, 7)
    assert p.by_total_time[0].calls == 3 and p.by_total_time[0].total_ms == 2400.5
    assert [s.temp_blks_written for s in p.by_temp_blks_written] == [700]


def test_without_statements_and_on_failure() -> None:
    p = parse({"rc": 0, "out": json.dumps({**OUTPUT, "statements": None}), "err": ""})
    assert p.available and not p.statements_available and p.by_calls == []
    failed = parse({"rc": 2, "out": "", "err": 'psql: FATAL:  database "app" does not exist'})
    assert not failed.available and failed.error.endswith('database "app" does not exist')
    garbage = parse({"rc": 0, "out": "not json", "err": ""})
    assert not garbage.available and "unexpected psql output" in garbage.error


def render(host: HostStatus, performance: bool) -> str:
    console = Console(record=True, width=250)
    console.print(view.render_status([host], performance=performance))
    return console.export_text()


def test_text_view_shows_the_top_query_and_the_full_view_on_request() -> None:
    host = HostStatus("db1")
    host.postgres.up = True
    host.performance = parse({"rc": 0, "out": json.dumps(OUTPUT), "err": ""})
    short = render(host, performance=False)
    assert "cache hit 90.0% of 1000 accesses, 2 temp files" in short
    # query texts are shown literally, never as rich markup
    line = next(line for line in short.splitlines() if "top query" in line)
    assert "2.40 s in 3 calls: SELECT [bold]x[/bold] FROM t WHERE id = $1" in line
    assert "top statements by calls" not in short
    full = render(host, performance=True)
    for title in ("total time", "calls", "mean time", "temp blocks written"):
        assert f"top statements by {title}" in full
    assert "ORDER BY 1" in full and "700" in full


def test_unreadable_statements_are_said() -> None:
    host = HostStatus("db1")
    host.postgres.up = True
    host.performance = Performance(available=True, database="app")
    assert "pg_stat_statements not readable" in render(host, performance=True)


def test_the_p_key_and_the_flag() -> None:
    monitor = Monitor([Target(InventoryHost("@local", {}), None)], timeout=1)
    assert monitor.performance is False
    assert monitor.handle("p") and monitor.performance is True
    assert monitor.handle("P") and monitor.performance is False
    assert parse_args(["--performance"]).performance is True
    assert parse_args([]).performance is False
