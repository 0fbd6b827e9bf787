"""Chaos fixtures: converged e2e stacks, a small-disk stack and the session's report.

``PGSTEADY_CHAOS=full`` (``make chaos``) runs every trial and writes docs/reliability.md;
otherwise a CI-sized subset runs and writes its figures under /tmp/pgsteady-chaos/.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from harness import CI_REPORT_DIR, FULL, REPO, Results, machine_facts
from smalldisk import SmallDiskStack

from tests.support.stack import Stack

INTRO_FULL = """# Reliability: measured recovery and zero loss

Written by `make chaos` (`PGSTEADY_CHAOS=full pytest -q -s tests/chaos`); do not edit by
hand, re-run it. Every fault is injected into a stack converged by the real
`pyinfra` CLI (`tests/support/stack.py`: Postgres 17 image built from Debian packages,
`restart: always`, healthcheck every 2 s, 1 GB / 1 CPU limits, the cron watchdog).

During every fault a writer commits one row per transaction with increasing ids on its
own connection (reconnecting with backoff) and records each id whose `COMMIT` returned.
After recovery every acknowledged id must be in the table: **lost** counts acknowledged
ids that are missing, and zero is the only pass. Commits whose outcome is unknown (the
connection died during `COMMIT`) are counted apart; in brackets, how many of those did
commit. Recovery is measured from the fault to the first successful query on a new
connection, unless the row says otherwise. Trials of one fault are spaced by more than
10 s of container uptime, because Docker resets its restart backoff only then; the crash
loop row shows what happens without that spacing."""

OUTRO_FULL = """## What this means for operators

- **Crashes are cheap, crash loops are not.** A single crash of the postmaster costs about
  a second: Docker restarts the container after 100 ms and Postgres replays its WAL. But
  Docker doubles the delay after each crash that follows a start by less than 10 s, up to
  about a minute, so a server that keeps crashing (bad config, full disk, OOM at start)
  answers less and less often. Look at `docker inspect -f '{{.RestartCount}}'` and the
  container log, not only at whether it is up.
- **`docker kill` and `docker stop` are manual stops.** Docker does not apply the restart
  policy to them; only the pgsteady watchdog (cron every minute, or the systemd timer;
  each run watches Docker's events for 57 s) brings the container back, within seconds
  plus the start time. `pgsteady-ctl down`
  leaves a marker so the watchdog respects a deliberate stop.
- **A query that exceeds the memory limit gets a process OOM-killed**, usually its own
  backend: the postmaster then resets every session (crash recovery) and all clients of
  that server see a dropped connection. The kernel may pick the postmaster instead (the
  bench's worst-case workload saw it with a 4MB `work_mem`): then Docker restarts the
  container. pgsteady's tuning keeps every connection's worst case (5 x `work_mem`)
  inside `postgres_memory_limit` (docs/architecture.md, Memory model); raise `work_mem`
  only together with fewer connections or a larger limit.
- **A full data filesystem never lost an acknowledged commit**, but when WAL cannot grow
  Postgres PANICs, and recovery itself needs space, so the container crash-loops (with the
  backoff above) until space is freed. Alert on free space well before it runs out.
- **Acknowledged means durable.** No fault lost an id whose COMMIT had returned. Commits
  whose connection died during COMMIT may or may not have committed: applications must
  treat them as unknown (check by key) rather than retry blindly.
- **dockerd restarts** stop Postgres cleanly (fast shutdown) and `restart: always` starts
  it again with the daemon. Here dockerd runs without an init system; the suite sends it
  SIGTERM and starts the same command line again (see `test_zz_dockerd_restart`)."""

INTRO_CI = """# pgsteady chaos: CI subset

Figures of the CI-sized subset (`PGSTEADY_CHAOS` unset). The full run writes
docs/reliability.md."""


@pytest.fixture(scope="session")
def results() -> Iterator[Results]:
    """Rows of the reliability table, written when the session ends."""
    collected = Results()
    yield collected
    if not collected.rows:
        return
    if FULL:
        collected.write(
            REPO / "docs" / "reliability.md",
            INTRO_FULL,
            OUTRO_FULL,
            raw_path=CI_REPORT_DIR / "reliability-full.json",
        )
    else:
        collected.write(CI_REPORT_DIR / "reliability-ci.md", INTRO_CI)


def deploy_or_fail(stack: Stack) -> None:
    result = stack.deploy()
    if result.returncode != 0:
        stack.destroy()
        pytest.fail(f"deploy failed:\n{result.output[-4000:]}")


@pytest.fixture(scope="session")
def main_stack(results: Results) -> Iterator[Stack]:
    """One converged stack shared by the process-level faults."""
    stack = Stack()
    deploy_or_fail(stack)
    results.facts = machine_facts(stack)
    yield stack
    stack.destroy()


@pytest.fixture
def oom_stack() -> Iterator[Stack]:
    """A stack whose container may use only 256 MB (50 connections: what 256 MB holds)."""
    stack = Stack(data={"postgres_memory_limit": "256MB", "postgres_max_connections": 50})
    deploy_or_fail(stack)
    yield stack
    stack.destroy()


@pytest.fixture
def small_disk_stack() -> Iterator[SmallDiskStack]:
    stack = SmallDiskStack()
    try:
        stack.prepare()
        deploy_or_fail(stack)
        yield stack
    finally:
        stack.destroy()
