"""Validate ``backup_schedule`` and map it to a cron.d line and systemd OnCalendar values.

Accepted values:

* a 5-field cron expression ``MIN HOUR DOM MON DOW``; each field is ``*`` or a comma list
  of ``N``, ``A-B``, ``*/S`` and ``A-B/S``; MON takes ``jan``..``dec`` and DOW ``sun``..``sat``
  (case-insensitive; 0 and 7 are both Sunday). Names are turned into numbers in the cron
  line, because Debian's cron rejects ranges and lists of names.
* the shortcuts ``@hourly``, ``@daily`` (= ``@midnight``), ``@weekly``, ``@monthly``,
  ``@yearly`` (= ``@annually``), and the bare words ``hourly`` and ``daily``.

Mapping (cron's own meaning of the shortcuts; note systemd's ``weekly`` would be Monday):

==================  ===================  ==============================================
value               cron line            OnCalendar
==================  ===================  ==============================================
@hourly, hourly     ``0 * * * *``        ``*-*-* *:00:00``
@daily, daily       ``0 0 * * *``        ``*-*-* 00:00:00``
@weekly             ``0 0 * * 0``        ``Sun *-*-* 00:00:00``
@monthly            ``0 0 1 * *``        ``*-*-01 00:00:00``
@yearly             ``0 0 1 1 *``        ``*-01-01 00:00:00``
``30 2 * * *``      ``30 2 * * *``       ``*-*-* 02:30:00``
``*/15 * * * *``    ``*/15 * * * *``     ``*-*-* *:00,15,30,45:00``
``0 3 * * mon-fri`` ``0 3 * * 1-5``      ``Mon..Fri *-*-* 03:00:00``
``0 3 1 * sun``     ``0 3 1 * 0``        ``*-*-01 03:00:00`` and ``Sun *-*-* 03:00:00``
==================  ===================  ==============================================

Day-of-month and day-of-week: cron runs a job when EITHER matches if both fields are
restricted (neither starts with ``*``), but when both must match otherwise. systemd ANDs
all components, so the OR case is mapped to two OnCalendar values (a timer fires on
any of them); the list returned by ``on_calendar`` is meant for one ``OnCalendar=`` line
each. Restricted fields become explicit systemd lists with ranges (``1..5``), never the
``FIRST/S`` repetition form: systemd 252 was seen to skip the 00 hour of ``00/5`` when the
timer's previous elapse lies on the day before (checked with ``systemd-analyze calendar``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta

_SHORTCUTS = {
    "@hourly": "0 * * * *",
    "hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "daily": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
_MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
_DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()
    name_base: int = 0


_FIELDS = (
    _Field("minute", 0, 59),
    _Field("hour", 0, 23),
    _Field("day-of-month", 1, 31),
    _Field("month", 1, 12, tuple(_MONTHS), 1),
    _Field("day-of-week", 0, 7, tuple(_DAYS), 0),
)
_ACCEPTED = (
    "a 5-field cron expression 'MIN HOUR DOM MON DOW' (each field '*' or a comma list of "
    "N, A-B, */S, A-B/S; month names jan-dec, weekday names sun-sat), or one of "
    "@hourly, @daily, @weekly, @monthly, @yearly, hourly, daily"
)


class ScheduleError(ValueError):
    """An invalid schedule; the message names the key, the value and what is accepted."""


@dataclass(frozen=True)
class Schedule:
    """A validated schedule, ready for a cron.d line or a systemd timer."""

    value: str  # as given, whitespace normalized (safe in a one-line comment)
    cron: str  # the 5 cron fields, names turned into numbers
    on_calendar: tuple[str, ...]  # one OnCalendar= line each


@dataclass(frozen=True)
class _Parsed:
    text: str  # normalized cron text of the field (numbers, no names)
    values: tuple[int, ...]
    star: bool  # the field starts with '*' (cron's test for "unrestricted" days)
    full: bool  # every value of the field's range matches


def parse_schedule(value: object, key: str = "backup_schedule") -> Schedule:
    """Validate ``value`` and return its cron line and OnCalendar values.

    Raises ScheduleError naming ``key``, the bad value and what is accepted.
    """
    if not isinstance(value, str) or not value.strip():
        raise ScheduleError(f"{key}: {value!r} is not accepted; expected {_ACCEPTED}")
    text = " ".join(value.split())
    expression = _SHORTCUTS.get(text.lower(), text)
    if expression.startswith("@") or not expression[0].isprintable():
        raise ScheduleError(f"{key}: {value!r} is not accepted; expected {_ACCEPTED}")
    parts = expression.split(" ")
    if len(parts) != 5:
        raise ScheduleError(
            f"{key}: {value!r} has {len(parts)} fields, not 5; expected {_ACCEPTED}"
        )
    parsed = []
    for field, part in zip(_FIELDS, parts, strict=True):
        try:
            parsed.append(_parse_field(field, part))
        except ValueError as exc:
            raise ScheduleError(
                f"{key}: {value!r}: {field.name} field {part!r}: {exc}; expected {_ACCEPTED}"
            ) from None
    cron = " ".join(p.text for p in parsed)
    return Schedule(value=text, cron=cron, on_calendar=_on_calendar(parsed))


def _number(field: _Field, token: str) -> int:
    lowered = token.lower()
    if lowered in field.names:
        return field.names.index(lowered) + field.name_base
    if not re.fullmatch(r"\d{1,2}", token):
        allowed = f" or a name {field.names[0]}..{field.names[-1]}" if field.names else ""
        raise ValueError(f"{token!r} is not a number{allowed}")
    number = int(token)
    if not field.low <= number <= field.high:
        raise ValueError(f"{number} is outside {field.low}-{field.high}")
    return number


def _parse_field(field: _Field, part: str) -> _Parsed:
    values: set[int] = set()
    texts = []
    for item in part.split(","):
        match = re.fullmatch(r"([^/-]+)(?:-([^/-]+))?(?:/(\d{1,2}))?", item)
        if not match:
            raise ValueError(f"{item!r} is not N, A-B, */S or A-B/S")
        start_s, end_s, step_s = match.groups()
        step = int(step_s) if step_s else 1
        if step_s and step == 0:
            raise ValueError("a step of 0 is not allowed")
        if start_s == "*":
            if end_s:
                raise ValueError(f"{item!r}: '*' cannot start a range")
            start, end = field.low, field.high
            if field.name == "day-of-week":
                end = 6
            texts.append("*" if not step_s else f"*/{step}")
        else:
            start = _number(field, start_s)
            if end_s is None and step_s:
                raise ValueError(f"{item!r}: a step needs '*' or a range A-B before it")
            end = _number(field, end_s) if end_s else start
            if end < start:
                raise ValueError(f"{item!r}: range end {end} is before its start {start}")
            texts.append(f"{start}-{end}" if end_s else str(start))
            if step_s:
                texts[-1] += f"/{step}"
        values.update(range(start, end + 1, step))
    if field.name == "day-of-week" and 7 in values:
        values.discard(7)
        values.add(0)
    full = len(values) == (7 if field.name == "day-of-week" else field.high - field.low + 1)
    return _Parsed(",".join(texts), tuple(sorted(values)), part.startswith("*"), full)


def _systemd_list(parsed: _Parsed, low: int, width: int = 2) -> str:
    if parsed.full:
        return "*"
    return ",".join(
        f"{a:0{width}d}" if a == b else f"{a:0{width}d}..{b:0{width}d}"
        for a, b in _runs(parsed.values)
    )


def _runs(values: tuple[int, ...]) -> list[tuple[int, int]]:
    """Consecutive runs of sorted values as (first, last) pairs."""
    runs: list[tuple[int, int]] = []
    for v in values:
        if runs and v == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], v)
        else:
            runs.append((v, v))
    return runs


def _weekdays(parsed: _Parsed) -> str:
    days = parsed.values
    if parsed.full:
        return ""
    # Sunday is 0 in cron but ends the week in systemd ranges: order Mon..Sun.
    ordered = sorted(days, key=lambda d: (d + 6) % 7)
    runs = _runs(tuple((d + 6) % 7 for d in ordered))
    names = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
    text = ",".join(names[a] if a == b else f"{names[a]}..{names[b]}" for a, b in runs)
    return text + " "


def _on_calendar(parsed: list[_Parsed]) -> tuple[str, ...]:
    minute, hour, dom, month, dow = parsed
    time = f"{_systemd_list(hour, 0)}:{_systemd_list(minute, 0)}:00"
    months = _systemd_list(month, 1)
    days = _systemd_list(dom, 1)
    weekdays = _weekdays(dow)
    if not dom.star and not dow.star:
        # cron's OR: either the day of month or the weekday matches.
        return (f"*-{months}-{days} {time}", f"{weekdays}*-{months}-* {time}")
    return (f"{weekdays}*-{months}-{days} {time}",)


def validate_schedule(value: object, key: str = "backup_schedule") -> Schedule:
    """Settings' validator: the parsed Schedule, or ScheduleError (a ValueError)."""
    return parse_schedule(value, key)


def max_gap(schedule: str) -> timedelta | None:
    """The longest time between two consecutive runs of a backup_schedule (None: never runs).

    Uses the schedule module's own cron parser, with cron's day rule: when day-of-month
    and day-of-week are both restricted a day matches either, otherwise both.
    """
    parts = parse_schedule(schedule).cron.split(" ")
    minute, hour, dom, month, dow = (
        _parse_field(f, p) for f, p in zip(_FIELDS, parts, strict=True)
    )
    times = sorted(h * 60 + m for h in hour.values for m in minute.values)
    gap = max((b - a for a, b in zip(times, times[1:], strict=False)), default=0)
    previous: date | None = None
    day = date(2000, 1, 1)  # nine years: every kind of month, leap years included
    while day.year < 2009:
        dom_ok, dow_ok = day.day in dom.values, (day.weekday() + 1) % 7 in dow.values
        either = not dom.star and not dow.star
        if day.month in month.values and ((dom_ok or dow_ok) if either else dom_ok and dow_ok):
            if previous is not None:
                gap = max(gap, (day - previous).days * 1440 + times[0] - times[-1])
            previous = day
        day += timedelta(days=1)
    return timedelta(minutes=gap) if previous is not None else None
