"""`make test`: tests/lab runs BESIDE the rest of the suite, in its own pytest session.

The lab's time is mostly spent waiting on its host containers (their own dockerd, systemd
and deploys over SSH), so running it alongside unit, integration, e2e and the chaos subset
shortens the whole run instead of adding to it. No test in either half restarts the shared
dockerd (only `make chaos`'s full mode does). Both halves must pass; the lab's output
follows the rest's, with its own exit status.

An interrupt (Ctrl-C, or SIGINT/SIGTERM to this process) reaches both sessions as ONE
SIGINT (each runs in its own process group, so a terminal's Ctrl-C is not delivered twice),
so each runs its fixtures' clean-up (the lab removes its host containers), and this waits
for both before it exits. Usage: run_tests.py PYTEST [pytest args for both halves...]
"""

from __future__ import annotations

import signal
import subprocess
import sys
import tempfile
from types import FrameType

REST = ["tests/unit", "tests/integration", "tests/e2e", "tests/chaos"]
LAB = ["tests/lab"]
#: pytest's exit status when it collected nothing (a -k that matches no lab test).
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
    """A half passed: status 0, or nothing collected because the caller's own arguments
    (PYTEST_ARGS, e.g. ``-k``) selected no test in it."""
    return status == 0 or (status == NO_TESTS and bool(extra_args))


def main(argv: list[str]) -> int:
    pytest, *args = argv
    with tempfile.TemporaryFile() as log:
        lab = subprocess.Popen(
            [pytest, "-q", "-p", "no:cacheprovider", "--durations=15", *LAB, *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            process_group=0,
        )
        rest = subprocess.Popen([pytest, "-q", "--durations=30", *REST, *args], process_group=0)
        rest_status, lab_status = _wait_all([rest, lab])
        sys.stdout.flush()
        print(f"\n=== tests/lab (its own session, run beside the above): exit status {lab_status}")
        sys.stdout.flush()
        log.seek(0)
        sys.stdout.buffer.write(log.read())
        sys.stdout.flush()
    return 0 if passed(rest_status, args) and passed(lab_status, args) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
