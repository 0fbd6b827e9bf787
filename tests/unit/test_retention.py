"""Retention over simulated days of backups, with an injected clock."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pgsteady.backuptool import backup, dump, layout, log, retention
from pgsteady.backuptool.retention import Policy

START = datetime(2024, 1, 1, 2, 0, tzinfo=UTC)  # a Monday, ISO week 2024-01
RUN_TIME = timedelta(minutes=5)


DEFAULT = Policy()
DAY = timedelta(days=1)


def simulate(days: int, policy: Policy = DEFAULT, every: timedelta = DAY):
    """Names left in each tier after ``days`` days of backups taken every ``every``."""
    tiers: dict[str, set[str]] = {tier: set() for tier in retention.TIERS}
    when = START
    while when < START + timedelta(days=days):
        for tier, name in retention.names_for("app", when, ".dump").items():
            if policy.enabled(tier):
                tiers[tier].add(name)
        now = when + RUN_TIME
        for tier in retention.TIERS:
            for name in retention.expired(tier, sorted(tiers[tier]), "app", ".dump", now, policy):
                tiers[tier].remove(name)
        when += every
    return tiers


def names(fmt_values: list[str], tier_suffix: str = ".dump") -> set[str]:
    return {f"app-{v}{tier_suffix}" for v in fmt_values}


def days(first: str, count: int) -> list[str]:
    start = datetime.strptime(first, "%Y%m%d")
    return [(start + timedelta(days=i)).strftime("%Y%m%d") for i in range(count)]


def test_after_1_day():
    assert simulate(1) == {
        "last": names(["20240101-020000"]),
        "daily": names(["20240101"]),
        "weekly": names(["202401"]),
        "monthly": names(["202401"]),
    }


def test_after_8_days():
    assert simulate(8) == {
        "last": names(["20240108-020000"]),
        "daily": names(days("20240102", 7)),
        "weekly": names(["202401", "202402"]),
        "monthly": names(["202401"]),
    }


def test_after_40_days():
    assert simulate(40) == {  # the 40th backup is taken on Friday 2024-02-09 (ISO week 6)
        "last": names(["20240209-020000"]),
        "daily": names(days("20240203", 7)),
        "weekly": names(["202403", "202404", "202405", "202406"]),
        "monthly": names(["202401", "202402"]),
    }


def test_after_400_days():
    assert simulate(400) == {  # the 400th is taken on Monday 2025-02-03 (ISO week 2025-06)
        "last": names(["20250203-020000"]),
        "daily": names(days("20250128", 7)),
        "weekly": names(["202503", "202504", "202505", "202506"]),
        "monthly": names(["202409", "202410", "202411", "202412", "202501", "202502"]),
    }


def test_iso_week_names_cross_the_year():
    # 2024-12-30 belongs to ISO week 2025-01
    when = datetime(2024, 12, 30, 2, 0, tzinfo=UTC)
    assert retention.names_for("app", when, ".dump")["weekly"] == "app-202501.dump"


def test_hourly_backups_keep_24_hours_in_last():
    tiers = simulate(3, every=timedelta(hours=1))
    assert len(tiers["last"]) == 24
    assert min(tiers["last"]) == "app-20240103-020000.dump"
    assert max(tiers["last"]) == "app-20240104-010000.dump"
    assert tiers["daily"] == names(days("20240101", 4))


def test_disabled_tiers_keep_nothing():
    tiers = simulate(40, Policy(keep_days=1, keep_weeks=0, keep_months=0))
    assert tiers == {
        "last": names(["20240209-020000"]),
        "daily": names(["20240209"]),
        "weekly": set(),
        "monthly": set(),
    }
    existing = ["app-202401.dump", "app-202402.dump"]
    now = START + timedelta(days=40)
    assert retention.expired("weekly", existing, "app", ".dump", now, Policy(keep_weeks=0)) == (
        existing
    )


def test_newest_survives_a_long_gap():
    present = ["app-20230101.dump", "app-20230102.dump"]
    now = datetime(2024, 6, 1, tzinfo=UTC)
    assert retention.expired("daily", present, "app", ".dump", now, Policy()) == [
        "app-20230101.dump"
    ]


def test_other_files_are_ignored():
    listing = [
        "app-latest.dump",
        "app-20240101.dump.sha256",
        "app-20240101.dump.manifest.json",
        ".tmp-app-20240101.dump",
        "apple-20200101.dump",
        "app-x-20200101.dump",
        "app-20200101.sql",
        "app-20200101.dump",
        "app-20240101.dump",
    ]
    now = datetime(2024, 1, 1, 12, tzinfo=UTC)
    assert retention.expired("daily", listing, "app", ".dump", now, Policy()) == [
        "app-20200101.dump"
    ]


stamps = st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1)).map(
    lambda d: d.replace(microsecond=0, tzinfo=UTC)
)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(stamps, min_size=1, max_size=30),
    st.integers(0, 1000),
    st.integers(1, 10),
    st.integers(0, 6),
    st.integers(0, 8),
)
def test_newest_is_never_removed(times, hours_later, keep_days, keep_weeks, keep_months):
    policy = Policy(keep_days, keep_weeks, keep_months)
    now = max(times) + timedelta(hours=hours_later)
    for tier in ("last", "daily"):
        present = sorted({retention.names_for("app", t, ".dump")[tier] for t in times})
        doomed = retention.expired(tier, present, "app", ".dump", now, policy)
        assert set(doomed) <= set(present)
        assert max(present) not in doomed


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"keep_days": 0}, "backup_keep_days: 0 is not accepted; expected an integer >= 1"),
        ({"keep_weeks": -1}, "backup_keep_weeks: -1"),
        ({"keep_months": "6"}, "backup_keep_months: '6'"),
        ({"keep_days": True}, "backup_keep_days: True"),
    ],
)
def test_validate_policy_names_key_and_value(kwargs, message):
    with pytest.raises(ValueError, match=message):
        retention.validate_policy(**kwargs)


def test_validate_policy_reports_every_error():
    with pytest.raises(ValueError) as err:
        retention.validate_policy(0, -1, -1)
    assert str(err.value).count("not accepted") == 3
    assert retention.validate_policy(1, 0, 0) == Policy(1, 0, 0)


# --- the same retention on a real directory tree, through the backup tool's functions ---


def fake_backup(backup_dir: str, when: datetime) -> dump.Made:
    name = retention.names_for("app", when, ".dump")["last"]
    path = os.path.join(backup_dir, "last", name)
    for ext, data in (("", b"dump"), (".sha256", b"x  y\n"), (".manifest.json", b"{}")):
        with open(path + ext, "wb") as fh:
            fh.write(data)
    return dump.Made(name, path, {})


def test_tree_after_40_days(tmp_path):
    backup_dir = str(tmp_path)
    layout.ensure_dirs(backup_dir)
    run_log = log.Log("pgsteady-backup-test")
    policy = Policy()
    for day in range(40):
        when = START + timedelta(days=day)
        made = fake_backup(backup_dir, when)
        backup.link_tiers(backup_dir, made, "app", ".dump", when, policy)
        backup.apply_retention(backup_dir, "app", ".dump", when + RUN_TIME, policy, run_log)
    expected = simulate(40)
    for tier in retention.TIERS:
        listing = set(os.listdir(tmp_path / tier))
        dumps = {n for n in listing if retention.parse_stamp(tier, n, "app", ".dump")}
        assert dumps == expected[tier], tier
        for name in dumps:  # every kept backup keeps its sidecars
            assert {name + ".sha256", name + ".manifest.json"} <= listing
        assert len(listing) == 3 * len(dumps) + 1  # + the latest symlink
        latest = tmp_path / tier / "app-latest.dump"
        assert os.readlink(latest) == max(dumps)
    newest = tmp_path / "last" / "app-20240209-020000.dump"
    assert os.stat(newest).st_nlink == 4  # last, daily, weekly, monthly share one inode
    assert os.stat(tmp_path / "last").st_mode & 0o777 == 0o700
