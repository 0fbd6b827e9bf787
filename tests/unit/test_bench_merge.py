"""bench.merge: a run of some parts keeps the other parts' earlier figures."""

from bench import config
from bench.merge import merge, part_config


def doc(started: str, parts: tuple[str, ...], **results):
    return {
        "started": started,
        "argv": "--only " + ",".join(parts),
        "config": {**config.BenchConfig().as_dict(), "parts": list(parts)},
        "machine": {"kernel": started},
        "versions": {"pyinfra": "3.10.0"},
        "load": {"start": [1.0, 1.0, 1.0], "end": [1.0, 1.0, 1.0]},
        "total_seconds": 60.0,
        **results,
    }


FULL = doc(
    "day 1",
    config.PARTS,
    recovery={"r": 1},
    tuning={"t": 1},
    backups={"b": 1},
    converge={"c": 1},
    pitr={"p": 1},
    pooler={"q": 1},
    failover={"f": 1},
    failover_lab={"l": 1},
    host_reboot={"h": 1},
    upgrade={"u": 1},
    data_stack={"scale": 70},
    versions={"pyinfra": "3.10.0", "postgres": "17.1"},
    part_seconds={p: 10.0 for p in config.PARTS},
    retried={"tuning": "docker restarted"},
)


def test_a_run_of_one_part_replaces_it_and_keeps_the_others():
    pitr_run = doc("day 2", ("pitr",), pitr={"p": 2}, part_seconds={"pitr": 5.0})
    out = merge(FULL, pitr_run)
    assert out["pitr"] == {"p": 2} and out["started"] == "day 2"
    assert [out[p] for p in ("recovery", "tuning", "backups", "converge", "pooler")] == [
        {"r": 1}, {"t": 1}, {"b": 1}, {"c": 1}, {"q": 1}
    ]  # fmt: skip
    assert out["part_seconds"] == {"pitr": 5.0, "recovery": 10.0, "tuning": 10.0,
                                   "backups": 10.0, "converge": 10.0,
                                   "pooler": 10.0, "upgrade": 10.0, "failover": 10.0,
                                   "failover_lab": 10.0, "host_reboot": 10.0}  # fmt: skip
    assert out["retried"] == {"tuning": "docker restarted"}
    assert set(out["carried"]) == {"recovery", "tuning", "backups", "converge", "pooler",
                                   "upgrade", "failover", "failover_lab",
                                   "host_reboot"}  # fmt: skip
    assert out["carried"]["tuning"]["started"] == "day 1"
    assert out["carried"]["tuning"]["machine"] == {"kernel": "day 1"}
    assert out["data_stack"] == {"scale": 70}  # the carried data parts' stack
    assert out["versions"]["postgres"] == "17.1"
    assert "carried" not in pitr_run and "recovery" not in pitr_run  # inputs untouched
    keys = list(out)
    assert keys[: len(FULL)] == list(FULL) and keys[-1] == "carried"  # a readable file diff


def test_carried_parts_keep_the_run_that_measured_them_over_several_merges():
    second = merge(FULL, doc("day 2", ("pitr",), pitr={"p": 2}))
    third = merge(second, doc("day 3", ("recovery",), recovery={"r": 3}))
    assert third["recovery"] == {"r": 3} and "recovery" not in third["carried"]
    assert third["carried"]["pitr"]["started"] == "day 2"
    assert third["carried"]["tuning"]["started"] == "day 1"
    assert part_config(third, "pitr")["parts"] == ["pitr"]
    assert part_config(third, "recovery")["parts"] == ["recovery"]


def test_a_failed_part_replaces_the_earlier_figures_with_its_failure():
    out = merge(FULL, doc("day 2", ("pitr",), errors={"pitr": "RuntimeError: boom"}))
    assert "pitr" not in out and out["errors"] == {"pitr": "RuntimeError: boom"}
    assert out["tuning"] == {"t": 1}


def test_an_interrupted_run_keeps_the_parts_it_never_reached():
    out = merge(FULL, doc("day 2", config.PARTS, recovery={"r": 2}))
    assert out["recovery"] == {"r": 2} and out["pitr"] == {"p": 1}
    assert set(out["carried"]) == {"tuning", "backups", "converge", "pitr", "pooler",
                                   "upgrade", "failover", "failover_lab",
                                   "host_reboot"}  # fmt: skip


def test_a_full_run_or_no_previous_document_carries_nothing():
    full_again = doc("day 2", config.PARTS, **{p: {"new": 1} for p in config.PARTS})
    out = merge(FULL, full_again)
    assert "carried" not in out and out["tuning"] == {"new": 1}
    assert "postgres" not in out["versions"]  # nothing carried: this run's versions only
    assert merge(None, full_again) == full_again
