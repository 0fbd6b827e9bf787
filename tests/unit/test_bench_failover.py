"""bench.failover: the plan of clusters, the per-kind figures, the headline figures and the
page's section, from trial records shaped as pgsteady.lab.failover_trial writes them."""

import pytest

from bench import failover


def trial(kind, seconds, gap, lost=(), split=(), probe_lost=(), whole=True, tl=(1, 2)):
    return {
        "kind": kind, "seconds": seconds, "longest_gap_seconds": gap, "lost": list(lost),
        "acked": 100, "unknown": 1, "split_brain": list(split), "probe_lost": list(probe_lost),
        "whole_again": whole, "timeline_before": tl[0], "timeline_after": tl[1],
    }  # fmt: skip


def test_the_tight_profile_runs_only_the_kinds_its_timings_decide():
    p = failover.plan("default,tight", "async,sync")
    assert [(prof, mode) for prof, mode, _ in p] == [
        ("default", "async"), ("default", "sync"), ("tight", "async"), ("tight", "sync")
    ]  # fmt: skip
    assert len(p[0][2]) == 6 and p[2][2] == failover.TIGHT_KINDS
    assert failover.plan("tight", "sync", "postmaster_kill,switchover") == [
        ("tight", "sync", ("switchover",))
    ]
    with pytest.raises(ValueError, match="'lazy'"):
        failover.plan("lazy", "async")
    with pytest.raises(ValueError, match="'semi'"):
        failover.plan("default", "semi")


def test_kind_summary_counts_loss_and_split_brain_per_trial():
    k = failover.kind_summary([
        trial("primary_pause", 21.0, 20.0),
        trial("primary_pause", 23.0, 22.0, lost=[7, 8], split=["m1", "m2"], probe_lost=["m1:4"]),
        trial("primary_pause", None, 150.0, whole=False, tl=(2, 2)),
    ])  # fmt: skip
    assert k["trials"] == 3 and k["whole_again"] == 2
    assert k["seconds"]["n"] == 2 and k["seconds"]["max"] == 23.0  # the recovered ones
    assert k["longest_gap_seconds"]["max"] == 150.0
    assert k["lost_per_trial"] == [0, 2, 0] and k["lost_total"] == 2
    assert k["split_brain_trials"] == 1 and k["probe_lost_per_trial"] == [0, 1, 0]
    assert k["new_timeline_trials"] == 2


def runs():
    def run(profile, mode, kinds):
        return {
            "profile": profile, "timings": {"ttl": 24, "loop_wait": 4, "retry_timeout": 10},
            "synchronous_mode": mode == "sync", "minutes": 3.0,
            "load": {"start": [5.0, 4.0, 3.0], "end": [6.0, 5.0, 4.0]},
            "kinds": {k: failover.kind_summary(t) for k, t in kinds.items()},
        }  # fmt: skip

    return {
        "default/async": run("default", "async", {
            "primary_kill": [trial("primary_kill", 21.0, 21.0), trial("primary_kill", 25.0, 25.0)],
            "primary_pause": [trial("primary_pause", 22.0, 19.0, split=["m1", "m2"])],
            "switchover": [trial("switchover", 3.0, 2.5), trial("switchover", 4.0, 3.5)],
        }),
        "default/sync": run("default", "sync", {
            "primary_kill": [trial("primary_kill", 27.0, 27.0)],
            "switchover": [trial("switchover", 6.0, 6.5)],
        }),
        "tight/async": run("tight", "async", {
            "primary_kill": [trial("primary_kill", 19.0, 19.0)],
        }),
    }  # fmt: skip


def test_headlines_take_the_worst_p95_over_modes_and_primary_loss_kinds():
    h = failover.headline_figures(runs())
    assert h["failover_p95_seconds"] == 27.0  # sync's kill beats async's 24.8 and pause's 22
    assert h["failover_tight_p95_seconds"] == 19.0
    assert h["switchover_write_gap_seconds"] == 6.5
    assert h["switchover_tight_write_gap_seconds"] is None
    assert failover.headline_figures({})["failover_p95_seconds"] is None


def test_section_has_a_row_per_kind_the_load_and_each_goal_s_verdict():
    fo = {
        "where": "processes", "versions": {"patroni": "patroni 3.0.2"}, "trials_per_kind": 2,
        "runs": runs(), **failover.headline_figures(runs()),
    }  # fmt: skip
    page = "\n".join(failover.section(fo))
    assert "| default/async | 24/4/10 | `primary_pause` | 1/1 | 22.0 / 22.0 / 22.0 |" in page
    assert "| 0 | 1 | 0 |" in page  # no write lost, one split-brain trial, no probe row lost
    assert "load 5.0 / 4.0 / 3.0 at the start" in page
    assert "Lost primary, default timings: p95 27.0 s, goal ≤ 30 s: met" in page
    assert "Lost primary, tight timings: p95 19.0 s, goal ≤ 10 s: missed by 9.0 s" in page
    assert "Switchover write gap: p95 6.5 s, goal ≤ 5 s: missed by 1.5 s" in page
    assert "not yet the host lab" in page
