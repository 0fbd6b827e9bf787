"""`make test`: three pytest sessions run side by side, each over its own directories.

Much of the suite's time is spent waiting (containers starting, Postgres recovering,
deploys over SSH, the lab's systemd hosts), yet on this 2-core machine the sessions
together are CPU-bound, so they are balanced to end close together: 32, 37 and 28 min,
38 min in all (2026-11-30). The chaos subset runs before the lab, not after: the lab's
session-scoped cluster (three systemd hosts) lives until its session ends, and chaos's
recovery figures should not share the CPUs with it. The split is by directory, so a
test file never runs beside itself, and every test already keeps to its own names,
ports and directories on the shared Docker engine (the suite's rule). No test restarts
the shared dockerd (only `make chaos`'s full mode does). Every session must pass, and
at least one must run a test.

- ``unit+integration``: pure logic, then real engines (Postgres, etcd, Patroni, HAProxy,
  PgBouncer, Prometheus) as processes and containers;
- ``e2e``: the real pyinfra CLI against @local stacks, make verify;
- ``chaos+lab``: the chaos subset, then systemd host containers over SSH (tests/lab).

The first session's output streams live; the others' follows it, each with its exit
status. An interrupt (Ctrl-C, or SIGINT/SIGTERM to this process) reaches every session
as ONE SIGINT (each runs in its own process group, so a terminal's Ctrl-C is not
delivered twice), so each runs its fixtures' clean-up (the lab removes its host
containers), and this waits for all before it exits.
Usage: run_tests.py PYTEST [pytest args for every session...]
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import tempfile
from types import FrameType
from typing import IO

#: Session name -> the directories it runs, in order. The first streams live.
SESSIONS: dict[str, list[str]] = {
    "unit+integration": ["tests/unit", "tests/integration"],
    "e2e": ["tests/e2e"],
    "chaos+lab": ["tests/chaos", "tests/lab"],
}
#: Per-session pytest options: how many slowest tests each reports, no shared cache
#: writes from the sessions that do not stream.
OPTIONS: dict[str, list[str]] = {
    "unit+integration": ["--durations=20"],
    "e2e": ["-p", "no:cacheprovider", "--durations=20"],
    "chaos+lab": ["-p", "no:cacheprovider", "--durations=15"],
}
#: pytest's exit status when it collected nothing (a -k that matches no test of a session).
NO_TESTS = 5


def _wait_all(procs: list[subprocess.Popen[bytes]]) -> list[int]:
    """Each process's exit status, forwarding SIGINT/SIGTERM to all of them as SIGINT
    (pytest's KeyboardInterrupt: it runs fixture finalizers) until every one has ended."""

    def forward(signum: int, frame: FrameType | None) -> None:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    return [p.wait() for p in procs]


def passed(status: int, extra_args: list[str]) -> bool:
    """A session passed: status 0, or nothing collected because the caller's own arguments
    (PYTEST_ARGS, e.g. ``-k``) selected no test in it."""
    return status == 0 or (status == NO_TESTS and bool(extra_args))


def main(argv: list[str]) -> int:
    pytest, *args = argv
    names = list(SESSIONS)
    with contextlib.ExitStack() as stack:
        logs: dict[str, IO[bytes]] = {
            n: stack.enter_context(tempfile.TemporaryFile()) for n in names[1:]
        }
        procs = []
        for name in reversed(names):  # the live one last: the others are already going
            out = logs.get(name)
            procs.append(
                subprocess.Popen(
                    [pytest, "-q", *OPTIONS[name], *SESSIONS[name], *args],
                    stdout=out,
                    stderr=subprocess.STDOUT if out is not None else None,
                    process_group=0,
                )
            )
        statuses = dict(zip(reversed(names), _wait_all(procs), strict=True))
        for name in names[1:]:
            sys.stdout.flush()
            print(f"\n=== {name} (its own session, run beside the above): exit status "
                  f"{statuses[name]}")  # fmt: skip
            sys.stdout.flush()
            logs[name].seek(0)
            sys.stdout.buffer.write(logs[name].read())
            sys.stdout.flush()
    print(f"\n=== {names[0]}: exit status {statuses[names[0]]}")
    return verdict(list(statuses.values()), args)


def verdict(statuses: list[int], extra_args: list[str]) -> int:
    """0 when every session passed and at least one ran a test (a mistyped ``-k`` that
    selects nothing anywhere is a failure, not a green run), else 1."""
    if not any(s == 0 for s in statuses):
        if all(s == NO_TESTS for s in statuses):
            print("=== no session ran a test: PYTEST_ARGS selected nothing")
        return 1
    return 0 if all(passed(s, extra_args) for s in statuses) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
