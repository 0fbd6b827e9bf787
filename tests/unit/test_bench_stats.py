"""bench.stats and bench.config: the pure parts of the benchmark runner."""

import pytest

from bench import config, stats


def test_percentile_interpolates_between_ranks():
    values = [5, 1, 4, 2, 3]
    assert stats.percentile(values, 0) == 1
    assert stats.percentile(values, 50) == 3
    assert stats.percentile(values, 100) == 5
    assert stats.percentile(values, 95) == pytest.approx(4.8)
    assert stats.percentile([1, 2], 50) == 1.5


def test_percentile_of_twenty_trials_p95_lies_between_the_two_slowest():
    values = list(range(1, 21))
    assert stats.percentile(values, 95) == pytest.approx(19.05)


def test_percentile_rejects_empty_and_out_of_range():
    with pytest.raises(ValueError):
        stats.percentile([], 50)
    with pytest.raises(ValueError):
        stats.percentile([1], 101)


def test_summary():
    s = stats.summary([1.0, 2.0, 3.0, 10.0])
    assert s == {"n": 4, "min": 1.0, "p50": 2.5, "p95": 8.95, "max": 10.0, "mean": 4.0}


def test_ratio_summary_pairs_rounds():
    r = stats.ratio_summary([110, 90, 120], [100, 100, 100])
    assert r["ratios"] == [1.1, 0.9, 1.2]
    assert (r["median"], r["min"], r["max"], r["n"]) == (1.1, 0.9, 1.2, 3)


def test_paired_ratios_need_equal_lengths_and_nonzero_denominators():
    with pytest.raises(ValueError):
        stats.paired_ratios([1, 2], [1])
    with pytest.raises(ValueError):
        stats.paired_ratios([1], [0])


def test_alternate_runs_a_b_c_a_b_c():
    assert stats.alternate(["A", "B", "C"], 2) == [
        (0, "A"), (0, "B"), (0, "C"), (1, "A"), (1, "B"), (1, "C"),
    ]  # fmt: skip
    with pytest.raises(ValueError):
        stats.alternate(["A"], 0)


def test_parse_parts_keeps_canonical_order_and_rejects_unknown():
    assert config.parse_parts("tuning, recovery") == ("recovery", "tuning")
    with pytest.raises(ValueError, match="tunning"):
        config.parse_parts("tunning")
    with pytest.raises(ValueError):
        config.parse_parts(",")


def test_from_args_presets_and_overrides(tmp_path):
    full = config.from_args([])
    assert full.recovery_trials == 20 and full.parts == config.PARTS and not full.quick
    quick = config.from_args(["--quick", "--only", "recovery", "--recovery-trials", "5"])
    assert quick.quick and quick.parts == ("recovery",)
    assert quick.recovery_trials == 5  # explicit beats --quick
    assert quick.scale == config.QUICK["scale"]
    custom = config.from_args(
        ["--restore-jobs", "1,4", "--no-use-sshd", "--out-dir", str(tmp_path)]
    )
    assert custom.restore_jobs == (1, 4) and custom.use_sshd is False
    assert custom.out_dir == tmp_path
    assert config.from_args(["--render-only"]).render_only


def test_full_run_fits_the_time_budget():
    """A rough lower bound of the default run's measured time stays within about 25 minutes
    (the rest: deploys, pgbench -i, backups, converges, restores)."""
    c = config.BenchConfig()
    tuning = c.tuning_rounds * 3 * (c.tuning_warmup + 2 * c.tuning_seconds)
    recovery = c.recovery_trials * c.recovery_spacing
    pitr = c.pitr_rounds * 2 * c.pitr_seconds
    assert tuning + recovery + pitr < 15 * 60
