"""Memory sizes: parse human input to bytes, format kB values the way PGTune prints them.

Accepted input (case-insensitive, optional space between number and unit):

    "16GB", "512 MB", "40329kB", "1TB", "2g", "1.5GiB", "1048576", "1048576B"

Units are binary (1 kB = 1024 B), as in postgresql.conf and PGTune; the single-letter
Docker/compose forms ("2g") and IEC spellings ("GiB") mean the same. A bare integer is a
number of **bytes**: that is what the host facts and container limits report, and it keeps
"16" from silently meaning 16 GB. Fractions are allowed ("1.5GB") and rounded down to a
whole byte.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

KIB = 1024
MIB = 1024**2
GIB = 1024**3
TIB = 1024**4

_MULTIPLIERS = {"": 1, "k": KIB, "m": MIB, "g": GIB, "t": TIB}
_SIZE_RE = re.compile(r"^\s*(?P<num>\d+(?:\.\d+)?)\s*(?P<unit>[kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)

ACCEPTED = "a whole or decimal number with an optional unit B, kB, MB, GB or TB (e.g. 16GB)"


def parse_size(text: str | int) -> int:
    """Return the number of bytes in ``text`` (see module doc); ValueError if malformed."""
    if isinstance(text, bool):
        raise ValueError(f"invalid size {text!r}: expected {ACCEPTED}")
    if isinstance(text, int):
        if text < 0:
            raise ValueError(f"invalid size {text!r}: must not be negative")
        return text
    if not isinstance(text, str):
        raise ValueError(f"invalid size {text!r}: expected {ACCEPTED}")
    match = _SIZE_RE.match(text)
    if not match:
        raise ValueError(f"invalid size {text!r}: expected {ACCEPTED}")
    try:
        number = Decimal(match["num"])
    except InvalidOperation as exc:  # pragma: no cover - the regex already guarantees digits
        raise ValueError(f"invalid size {text!r}: expected {ACCEPTED}") from exc
    return int(number * _MULTIPLIERS[match["unit"].lower()])


def format_kb(kb: int) -> str:
    """Format a kB count like PGTune: GB or MB only when exact, otherwise kB ("40329kB")."""
    if kb % (1024 * 1024) == 0:
        return f"{kb // (1024 * 1024)}GB"
    if kb % 1024 == 0:
        return f"{kb // 1024}MB"
    return f"{kb}kB"


def format_bytes(n: int) -> str:
    """Format a byte count with the largest exact unit ("16GB", "1536MB", "3B")."""
    if n % 1024 == 0:
        return format_kb(n // 1024)
    return f"{n}B"


def human_duration(seconds: float | None) -> str:
    """The one duration format of verify, monitor and status: ``93784`` -> ``1d 2h``,
    ``125`` -> ``2m 5s``, ``5`` -> ``5s``; None -> ``-``; negative -> ``-2m 5s``."""
    if seconds is None:
        return "-"
    s = round(seconds)
    if s < 0:
        return "-" + human_duration(-s)
    for unit, size, sub, subsize in (("d", 86400, "h", 3600), ("h", 3600, "m", 60)):
        if s >= size:
            rest = (s % size) // subsize
            return f"{s // size}{unit} {rest}{sub}" if rest else f"{s // size}{unit}"
    return f"{s // 60}m {s % 60}s" if s >= 60 else f"{s}s"


def human_size(n: int) -> str:
    """Approximate, human-readable size for messages ("15.6GB"); not for config values."""
    for unit, size in (("TB", TIB), ("GB", GIB), ("MB", MIB), ("kB", KIB)):
        if n >= size:
            value = n / size
            return f"{value:.0f}{unit}" if value == int(value) else f"{value:.1f}{unit}"
    return f"{n}B"
