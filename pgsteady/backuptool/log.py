"""Progress to stderr, each run's outcome also to syslog; the tool's UTC clock."""

from __future__ import annotations

import sys
import syslog
from datetime import datetime, timezone

UTC = timezone.utc  # noqa: UP017 - the host may run Python < 3.11


def now_utc() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


class Log:
    """Progress to stderr; the run's outcome also to syslog."""

    def __init__(self, ident: str = "pgsteady-backup") -> None:
        syslog.openlog(ident, syslog.LOG_PID, syslog.LOG_DAEMON)

    def info(self, message: str, to_syslog: bool = False) -> None:
        print(f"{datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ} {message}", file=sys.stderr, flush=True)
        if to_syslog:
            syslog.syslog(syslog.LOG_INFO, message)

    def warning(self, message: str) -> None:
        print(
            f"{datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ} WARNING {message}", file=sys.stderr, flush=True
        )
        syslog.syslog(syslog.LOG_WARNING, message)

    def error(self, message: str) -> None:
        print(
            f"{datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ} ERROR {message}", file=sys.stderr, flush=True
        )
        syslog.syslog(syslog.LOG_ERR, message)
