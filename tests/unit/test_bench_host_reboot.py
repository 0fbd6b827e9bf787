"""bench.host_reboot's pure parts: the fault order, the wait, the figures and the page."""

import time

import pytest

from bench import config, headlines, report
from bench.host_reboot import order, section, summarise, wait_for_query


def test_kinds_alternate_so_neither_always_goes_first():
    assert order(3) == ["reboot", "power_cycle", "power_cycle", "reboot", "reboot",
                        "power_cycle"]  # fmt: skip
    assert order(1) == ["reboot", "power_cycle"]
    assert order(0) == []


def test_wait_counts_from_the_fault_until_the_first_successful_query():
    answers = iter([False, False, True])
    since = time.monotonic() - 2.0  # the fault was issued 2 s ago
    took = wait_for_query(lambda: next(answers), since, timeout=30, pause=0.01)
    assert 2.0 <= took < 3.0


def test_wait_gives_up_after_its_timeout():
    with pytest.raises(RuntimeError, match="no successful query within 0 s"):
        wait_for_query(lambda: False, time.monotonic() - 1.0, timeout=0.5, pause=0.01)


def hr() -> dict:
    return {
        "where": "one lab host",
        "trials_per_kind": 3,
        "build_seconds": 412.0,
        "kinds": summarise({"reboot": [11.0, 9.5, 14.25], "power_cycle": [16.0, 18.5, 15.0]}),
        "load": {"start": [3.1, 2.0, 1.5], "end": [2.0, 2.0, 2.0]},
    }


def test_each_kind_keeps_its_trials_and_summary():
    kinds = hr()["kinds"]
    assert kinds["reboot"]["each"] == [11.0, 9.5, 14.25]
    assert kinds["reboot"]["p50"] == 11.0 and kinds["reboot"]["max"] == 14.25
    assert kinds["power_cycle"]["n"] == 3
    assert summarise({"reboot": [], "power_cycle": [1.0]}).keys() == {"power_cycle"}


def test_the_headline_is_the_median_reboot_and_the_page_has_every_trial():
    res = {"host_reboot": hr()}
    assert headlines.compute(res)["host_reboot_to_query_s"] == 11.0
    text = "\n".join(section(hr()))
    assert "| reboot | 3 | 11.0 s |" in text and "9.5, 14.2" in text
    assert "| power cycle | 3 | 16.0 s |" in text
    from tests.unit.test_bench_report import results

    page = report.render(results(host_reboot=hr()))
    assert "## Host reboot" in page and "| `host_reboot_to_query_s` | 11.0 s |" in page


def test_a_run_without_the_part_says_so():
    assert headlines.why_missing({}, "host_reboot_to_query_s") == "the host_reboot part did not run"
    assert config.QUICK["host_reboot_trials"] == 1 and config.BenchConfig().host_reboot_trials == 3
