"""Backup file naming and daily/weekly/monthly retention (pure, stdlib-only).

Part of the backup tool that runs on the host (see the package doc), where only the
Python 3 standard library is available: stdlib-only, compatible with Python 3.8.

Layout, after prodrigestivill/docker-postgres-backup-local (all times UTC)::

    last/DB-YYYYmmdd-HHMMSS.SUFFIX   one file per run
    daily/DB-YYYYmmdd.SUFFIX         hard link to the newest run of that day
    weekly/DB-GGGGVV.SUFFIX          ... of that ISO week (ISO year + ISO week number)
    monthly/DB-YYYYmm.SUFFIX         ... of that month
    <tier>/DB-latest.SUFFIX          symlink to the newest file of the tier

Retention counts calendar periods back from the clock, the current period included:

==========  =======================================================================
tier        an entry is kept when ...
==========  =======================================================================
last        it is younger than ``keep_last_hours`` (default 24, prodrigestivill's
            BACKUP_KEEP_MINS=1440)
daily       its day is one of the ``keep_days`` most recent calendar days
weekly      its ISO week is one of the ``keep_weeks`` most recent ISO weeks
monthly     its month is one of the ``keep_months`` most recent months
==========  =======================================================================

So 7/4/6 keeps 7 daily, 4 weekly and 6 monthly backups in steady state, as the
prodrigestivill README describes the knobs (its ``find -mtime +N`` keeps one more).
The ages come from the names, not from mtimes, so retention is testable with an
injected clock and robust to copies that reset mtimes. In every tier the newest entry
of a database is never removed, whatever its age. ``keep_weeks=0`` / ``keep_months=0``
disable a tier (no links are made and existing ones are removed).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta

TIERS = ("last", "daily", "weekly", "monthly")
LATEST = "latest"
_STAMP_RE = {
    "last": r"(\d{8}-\d{6})",
    "daily": r"(\d{8})",
    "weekly": r"(\d{6})",
    "monthly": r"(\d{6})",
}


@dataclass(frozen=True)
class Policy:
    """How many periods of each tier to keep."""

    keep_days: int = 7
    keep_weeks: int = 4
    keep_months: int = 6
    keep_last_hours: int = 24

    def enabled(self, tier: str) -> bool:
        """Whether backups are linked into ``tier`` at all."""
        return {"weekly": self.keep_weeks, "monthly": self.keep_months}.get(tier, 1) > 0


def validate_policy(
    keep_days: object = 7,
    keep_weeks: object = 4,
    keep_months: object = 6,
    keep_last_hours: object = 24,
    prefix: str = "backup_",
) -> Policy:
    """Return a Policy or raise ValueError listing every bad value.

    keep_days and keep_last_hours must be integers >= 1 (the newest daily backup must
    survive); keep_weeks and keep_months integers >= 0 (0 disables the tier).
    """
    errors = []
    values = {
        "keep_days": (keep_days, 1),
        "keep_weeks": (keep_weeks, 0),
        "keep_months": (keep_months, 0),
        "keep_last_hours": (keep_last_hours, 1),
    }
    for name, (value, minimum) in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            errors.append(
                f"{prefix}{name}: {value!r} is not accepted; expected an integer >= {minimum}"
            )
    if errors:
        raise ValueError("; ".join(errors))
    return Policy(keep_days, keep_weeks, keep_months, keep_last_hours)  # type: ignore[arg-type]


def names_for(db: str, when: datetime, suffix: str) -> dict[str, str]:
    """File names of one backup of ``db`` taken at ``when`` (UTC), per tier."""
    iso_year, iso_week, _ = when.isocalendar()
    return {
        "last": f"{db}-{when:%Y%m%d-%H%M%S}{suffix}",
        "daily": f"{db}-{when:%Y%m%d}{suffix}",
        "weekly": f"{db}-{iso_year:04d}{iso_week:02d}{suffix}",
        "monthly": f"{db}-{when:%Y%m}{suffix}",
    }


def latest_name(db: str, suffix: str) -> str:
    """Name of the per-tier ``latest`` symlink of ``db``."""
    return f"{db}-{LATEST}{suffix}"


def parse_stamp(tier: str, name: str, db: str, suffix: str) -> str | None:
    """The time stamp part of a backup name of ``db`` in ``tier``, or None if it is not one.

    Sidecars (``.sha256``, ``.manifest.json``), temp files and ``latest`` links give None.
    """
    pattern = "^" + re.escape(db) + "-" + _STAMP_RE[tier] + re.escape(suffix) + "$"
    match = re.match(pattern, name)
    return match.group(1) if match else None


def _age_in_periods(tier: str, stamp: str, now: datetime) -> float:
    """How many periods (hours for last, else days/weeks/months) ``stamp`` lies before now."""
    if tier == "last":
        taken = datetime.strptime(stamp, "%Y%m%d-%H%M%S").replace(tzinfo=now.tzinfo)
        return (now - taken).total_seconds() / 3600
    today = now.date()
    if tier == "daily":
        return (today - datetime.strptime(stamp, "%Y%m%d").date()).days
    if tier == "weekly":
        monday = _iso_monday(int(stamp[:4]), int(stamp[4:]))
        this_monday = today - timedelta(days=today.weekday())
        return (this_monday - monday).days // 7
    return (today.year * 12 + today.month) - (int(stamp[:4]) * 12 + int(stamp[4:]))


def _iso_monday(iso_year: int, iso_week: int) -> date:
    """Monday of an ISO week (date.fromisocalendar exists only from Python 3.8)."""
    jan4 = date(iso_year, 1, 4)
    return jan4 - timedelta(days=jan4.weekday()) + timedelta(weeks=iso_week - 1)


def _limit(tier: str, policy: Policy) -> int:
    return {
        "last": policy.keep_last_hours,
        "daily": policy.keep_days,
        "weekly": policy.keep_weeks,
        "monthly": policy.keep_months,
    }[tier]


def expired(
    tier: str, names: list[str], db: str, suffix: str, now: datetime, policy: Policy
) -> list[str]:
    """Backup names of ``db`` in one tier directory that retention removes, oldest first.

    ``names`` is the directory listing; entries that are not backups of ``db`` are
    ignored. The newest backup of ``db`` in the tier is never returned.
    """
    stamped = sorted(
        (stamp, name)
        for name in names
        if (stamp := parse_stamp(tier, name, db, suffix)) is not None
    )
    if not stamped:
        return []
    limit = _limit(tier, policy)
    doomed = []
    for stamp, name in stamped[:-1]:
        age = _age_in_periods(tier, stamp, now)
        if limit == 0 or age >= limit:
            doomed.append(name)
    if limit == 0 and tier != "last":
        doomed.append(stamped[-1][1])  # a disabled tier keeps nothing
    return doomed
