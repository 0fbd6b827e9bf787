"""Anonymous Docker volumes a test session leaves behind.

A container started without a named volume for a path its image declares (``VOLUME``,
e.g. the Postgres image's data directory), or with ``-v /path``, gets an anonymous volume,
which ``docker rm`` without ``-v`` (and ``compose down`` without ``-v``) leaves dangling.
The engine is shared with other sessions, so the check compares sets: only a volume
absent when the session started and dangling at its end counts, named in the report.
`make test` runs three sessions at once (scripts/run_tests.py), so a volume found dangling is
read again after a pause: one the other session is removing right then is not a leak.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time

#: Docker names an anonymous volume with 64 hex digits.
ANONYMOUS = re.compile(r"^[0-9a-f]{64}$")


def _volumes(*filters: str) -> set[str] | None:
    docker = shutil.which("docker")
    if docker is None:
        return None
    try:
        proc = subprocess.run(
            [docker, "volume", "ls", "-q", *filters],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return set(proc.stdout.split()) if proc.returncode == 0 else None


def snapshot() -> set[str] | None:
    """Every volume the engine has now (None: no reachable engine)."""
    return _volumes()


def leaked(before: set[str] | None, settle_s: float = 15.0) -> list[str]:
    """Anonymous volumes dangling now, and still ``settle_s`` later, that were not there
    at ``before``, sorted."""
    if before is None:
        return []
    found = _dangling_since(before) or set()
    if found and settle_s > 0:
        time.sleep(settle_s)
        again = _dangling_since(before)
        if again is not None:  # a failed re-read keeps what the first read found
            found &= again
    return sorted(found)


def _dangling_since(before: set[str]) -> set[str] | None:
    dangling = _volumes("--filter", "dangling=true")
    if dangling is None:
        return None
    return {v for v in dangling - before if ANONYMOUS.match(v)}
