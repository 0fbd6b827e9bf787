"""backup_schedule validation and its cron / OnCalendar mapping."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from datetime import datetime, timedelta

import pytest

from pgsteady.stack.schedule_syntax import ScheduleError, parse_schedule, validate_schedule


@pytest.mark.parametrize(
    "value, cron, on_calendar",
    [
        ("@hourly", "0 * * * *", ("*-*-* *:00:00",)),
        ("hourly", "0 * * * *", ("*-*-* *:00:00",)),
        ("@daily", "0 0 * * *", ("*-*-* 00:00:00",)),
        ("Daily", "0 0 * * *", ("*-*-* 00:00:00",)),
        ("@midnight", "0 0 * * *", ("*-*-* 00:00:00",)),
        ("@weekly", "0 0 * * 0", ("Sun *-*-* 00:00:00",)),
        ("@monthly", "0 0 1 * *", ("*-*-01 00:00:00",)),
        ("@yearly", "0 0 1 1 *", ("*-01-01 00:00:00",)),
        ("15 2 * * *", "15 2 * * *", ("*-*-* 02:15:00",)),
        ("  15   2 * *   * ", "15 2 * * *", ("*-*-* 02:15:00",)),
        ("*/15 * * * *", "*/15 * * * *", ("*-*-* *:00,15,30,45:00",)),
        ("0 */6 * * *", "0 */6 * * *", ("*-*-* 00,06,12,18:00:00",)),
        ("0 3 * * mon-fri", "0 3 * * 1-5", ("Mon..Fri *-*-* 03:00:00",)),
        ("0 3 * * MON,wed,5", "0 3 * * 1,3,5", ("Mon,Wed,Fri *-*-* 03:00:00",)),
        ("0 3 * * 7", "0 3 * * 7", ("Sun *-*-* 03:00:00",)),
        ("0 3 * * 0-6", "0 3 * * 0-6", ("*-*-* 03:00:00",)),
        ("0 3 * * 5-7", "0 3 * * 5-7", ("Fri..Sun *-*-* 03:00:00",)),
        ("30 1 * jan-mar,dec *", "30 1 * 1-3,12 *", ("*-01..03,12-* 01:30:00",)),
        ("0 0 1-10/3 * *", "0 0 1-10/3 * *", ("*-*-01,04,07,10 00:00:00",)),
        ("0,30 9-17 * * 1-5", "0,30 9-17 * * 1-5", ("Mon..Fri *-*-* 09..17:00,30:00",)),
        # cron ORs day-of-month and day-of-week when both are restricted
        ("0 3 1 * sun", "0 3 1 * 0", ("*-*-01 03:00:00", "Sun *-*-* 03:00:00")),
        # ... but ANDs them when one starts with '*'
        ("0 3 */10 * sun", "0 3 */10 * 0", ("Sun *-*-01,11,21,31 03:00:00",)),
    ],
)
def test_mapping(value, cron, on_calendar):
    schedule = parse_schedule(value)
    assert (schedule.cron, schedule.on_calendar) == (cron, on_calendar)
    assert validate_schedule(value) == schedule


@pytest.mark.parametrize(
    "value, detail",
    [
        ("", "expected a 5-field cron expression"),
        (None, "None is not accepted"),
        (15, "15 is not accepted"),
        ("@reboot", "'@reboot' is not accepted"),
        ("weekly", "has 1 fields, not 5"),
        ("0 3 * *", "has 4 fields, not 5"),
        ("0 3 * * * *", "has 6 fields, not 5"),
        ("60 3 * * *", "minute field '60': 60 is outside 0-59"),
        ("0 24 * * *", "hour field '24': 24 is outside 0-23"),
        ("0 3 0 * *", "day-of-month field '0': 0 is outside 1-31"),
        ("0 3 * 13 *", "month field '13': 13 is outside 1-12"),
        ("0 3 * * 8", "day-of-week field '8': 8 is outside 0-7"),
        ("0 3 * * fri-mon", "range end 1 is before its start 5"),
        ("*/0 * * * *", "a step of 0 is not allowed"),
        ("5/10 * * * *", "a step needs '*' or a range"),
        ("0 3 * * funday", "'funday' is not a number or a name sun..sat"),
        ("0 3 * foo *", "'foo' is not a number or a name jan..dec"),
        ("0 3 * * mon,", "'' is not N, A-B"),
        ("0 3 ? * *", "'?' is not a number"),
        ("0 3 L * *", "'L' is not a number"),
        ("*-5 3 * * *", "'*' cannot start a range"),
    ],
)
def test_rejects_with_key_value_and_accepted(value, detail):
    with pytest.raises(ScheduleError) as err:
        parse_schedule(value)
    message = str(err.value)
    assert message.startswith("backup_schedule: ")
    assert repr(value) in message
    assert detail in message
    assert "@daily" in message  # says what is accepted
    assert isinstance(err.value, ValueError)


# --- the OnCalendar values fire exactly when cron would (checked by systemd itself) ------

SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
BASE = datetime(2024, 1, 1, 0, 0)


def cron_matches(expression: str, start: datetime, count: int) -> list[datetime]:
    """Brute-force cron semantics, written independently of pgsteady.stack.schedule_syntax."""
    names = {
        "sun": 0,
        "mon": 1,
        "tue": 2,
        "wed": 3,
        "thu": 4,
        "fri": 5,
        "sat": 6,
        "jan": 1,
        "feb": 2,
        "mar": 3,
        "apr": 4,
        "may": 5,
        "jun": 6,
        "jul": 7,
        "aug": 8,
        "sep": 9,
        "oct": 10,
        "nov": 11,
        "dec": 12,
    }
    bounds = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 7)]

    def values(field: str, low: int, high: int) -> set[int]:
        out: set[int] = set()
        for item in field.split(","):
            rng, _, step = item.partition("/")
            if rng == "*":
                a, b = low, high
            else:
                a_s, _, b_s = rng.partition("-")
                a = int(names.get(a_s.lower(), a_s))
                b = int(names.get(b_s.lower(), b_s)) if b_s else a
            out.update(range(a, b + 1, int(step or 1)))
        return out

    fields = expression.split()
    sets = [values(f, lo, hi) for f, (lo, hi) in zip(fields, bounds, strict=True)]
    minute, hour, dom, month, dow = sets
    if 7 in dow:
        dow.add(0)
    either = not fields[2].startswith("*") and not fields[4].startswith("*")
    found: list[datetime] = []
    day = start
    while len(found) < count:
        cron_dow = (day.weekday() + 1) % 7
        in_dom, in_dow = day.day in dom, cron_dow in dow
        if day.month in month and ((in_dom or in_dow) if either else (in_dom and in_dow)):
            found += [day.replace(hour=h, minute=m) for h in sorted(hour) for m in sorted(minute)]
        day += timedelta(days=1)
    return found[:count]


def systemd_elapses(on_calendar: tuple[str, ...], count: int) -> list[datetime]:
    times: set[datetime] = set()
    for spec in on_calendar:
        out = subprocess.run(
            [
                SYSTEMD_ANALYZE,
                "calendar",
                f"--iterations={count}",
                f"--base-time={BASE - timedelta(seconds=1):%Y-%m-%d %H:%M:%S} UTC",
                spec,
            ],
            capture_output=True,
            text=True,
            check=True,
            env=dict(os.environ, TZ="UTC"),
        ).stdout
        for stamp in re.findall(r"(?:Next elapse|Iter\. #\d+): \w+ (\S+ \S+) UTC", out):
            times.add(datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S"))
    return sorted(times)[:count]


@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed")
@pytest.mark.parametrize(
    "value",
    [
        "15 2 * * *",
        "*/15 * * * *",
        "0 */6 * * *",
        "0 3 * * mon-fri",
        "0 3 * * 5-7",
        "0 3 1 * sun",
        "0 3 1,15 * 6",
        "0 3 */2 * sun",
        "0 3 1 * */2",
        "5,35 */5 * * *",
        "30 1 * jan-mar,dec *",
        "0 0 1-10/3 * *",
        "0 0 31 * *",
        "0 12 * feb-aug/2 1",
        "0 0 13 * 5",
        "@weekly",
        "@monthly",
        "@hourly",
        "0 0 29 2 *",
    ],
)
def test_on_calendar_fires_when_cron_does(value):
    schedule = parse_schedule(value)
    count = 40
    expected = cron_matches(schedule.cron, BASE, count)
    assert systemd_elapses(schedule.on_calendar, count) == expected
