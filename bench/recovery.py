"""Recovery: ``kill -9`` of the postmaster, then ``docker kill`` of the container → first
successful query over TCP.

The postmaster is killed from the host (its host PID from ``docker inspect``: PID 1
ignores signals sent from inside its own namespace). Docker's ``restart: always``
brings the container back; the trial ends when a new connection over the published
port runs a query on a server whose start time differs from the killed one's.

Trials are spaced by ``recovery_spacing`` seconds (> 10 s) of uptime and must find the
container healthy first: Docker doubles its restart delay after each crash unless the
container ran 10 s (see FINDINGS), so back-to-back kills measure Docker's backoff, not
pgsteady's recovery.

``docker kill`` is a manual stop to Docker: no restart policy applies, only pgsteady's
watchdog starts the container again (its minute job watches Docker's events for 57 s,
issue 19 item 3). Those trials record the second of the minute of each kill: a kill in
the last seconds of a minute waits for the next job. Spaced like the others, so that
each watchdog start counts as good (the container ran 10 s) and no backoff applies.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from typing import Any

import psycopg2

from bench import stats
from bench.config import BenchConfig
from bench.stacks import DOCKER, Stack

#: A spaced trial slower than this is reported as a crash-loop/backoff suspect.
SLOW_TRIAL = 5.0
#: Issue 19's goal for ``docker kill`` → serving again.
DOCKER_KILL_GOAL_P95 = 10.0


def _start_time(stack: Stack) -> str | None:
    """The postmaster start time over TCP, or None while the server does not answer."""
    try:
        conn = stack.connect(timeout=1)
    except psycopg2.OperationalError:
        return None
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_postmaster_start_time()::text")
            return cur.fetchone()[0]
    except psycopg2.Error:
        return None
    finally:
        conn.close()


def _wait_healthy(stack: Stack, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = stack.inspect()["State"]
        if state.get("Running") and (state.get("Health") or {}).get("Status") == "healthy":
            return
        time.sleep(0.25)
    raise RuntimeError(f"{stack.container} not healthy within {timeout:.0f} s")


def _until_new_server(
    stack: Stack, before: str, started: float, timeout: float, what: str
) -> float:
    """Seconds from ``started`` until a server other than ``before`` answers."""
    while True:
        now_start = _start_time(stack)
        elapsed = time.monotonic() - started
        if now_start is not None and now_start != before:
            return elapsed
        if elapsed > timeout:
            raise RuntimeError(f"no new server answered {timeout:.0f} s after {what}")
        time.sleep(0.02)


def trial(stack: Stack, timeout: float) -> dict[str, Any]:
    """One kill: seconds to the first query on the new server, and Docker's view."""
    before = _start_time(stack)
    if before is None:
        raise RuntimeError(f"{stack.container} does not answer before the kill")
    restarts = stack.inspect()["RestartCount"]
    pid = stack.host_pid()
    started = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    elapsed = _until_new_server(stack, before, started, timeout, "kill -9")
    info = stack.inspect()
    return {
        "seconds": round(elapsed, 3),
        "restart_count_delta": info["RestartCount"] - restarts,
        "new_pid": info["State"]["Pid"],
    }


def docker_kill_trial(stack: Stack, timeout: float) -> dict[str, Any]:
    """One ``docker kill``: seconds to the first query on the server the watchdog started."""
    before = _start_time(stack)
    if before is None:
        raise RuntimeError(f"{stack.container} does not answer before the kill")
    second = time.localtime().tm_sec
    started = time.monotonic()
    subprocess.run([DOCKER, "kill", stack.container], capture_output=True, check=True)
    elapsed = _until_new_server(stack, before, started, timeout, "docker kill")
    return {"seconds": round(elapsed, 3), "second_of_minute": second}


def run_docker_kill(stack: Stack, config: BenchConfig, log: Any = print) -> dict[str, Any]:
    """``recovery_trials`` spaced ``docker kill`` trials: the watchdog's recovery."""
    trials = []
    recovered = time.monotonic() - config.recovery_spacing
    for i in range(config.recovery_trials):
        time.sleep(max(0.0, config.recovery_spacing - (time.monotonic() - recovered)))
        _wait_healthy(stack, config.recovery_timeout)
        result = docker_kill_trial(stack, config.recovery_timeout)
        recovered = time.monotonic()
        trials.append(result)
        log(
            f"docker kill trial {i + 1}/{config.recovery_trials}: {result['seconds']:.3f} s"
            f" (killed at second {result['second_of_minute']})"
        )
    summary = stats.summary([t["seconds"] for t in trials])
    return {
        "trials": trials,
        "seconds": summary,
        "goal_p95_seconds": DOCKER_KILL_GOAL_P95,
        "meets_goal": summary["p95"] <= DOCKER_KILL_GOAL_P95,
    }


def run(stack: Stack, config: BenchConfig, log: Any = print) -> dict[str, Any]:
    """``recovery_trials`` spaced trials against the deployed ``stack``, for each fault."""
    trials = []
    recovered = time.monotonic() - config.recovery_spacing
    for i in range(config.recovery_trials):
        time.sleep(max(0.0, config.recovery_spacing - (time.monotonic() - recovered)))
        _wait_healthy(stack, config.recovery_timeout)
        result = trial(stack, config.recovery_timeout)
        recovered = time.monotonic()
        trials.append(result)
        log(f"recovery trial {i + 1}/{config.recovery_trials}: {result['seconds']:.3f} s")
    seconds = [t["seconds"] for t in trials]
    summary = stats.summary(seconds)
    promise = config.old_promise_seconds
    return {
        "trials": trials,
        "seconds": summary,
        "spacing_seconds": config.recovery_spacing,
        "slow_trials": [t for t in trials if t["seconds"] > SLOW_TRIAL],
        "old_promise_seconds": promise,
        "within_old_promise": sum(s < promise for s in seconds),
        "p95_vs_promise": round(summary["p95"] / promise, 4),
        "max_vs_promise": round(summary["max"] / promise, 4),
        "docker_kill": run_docker_kill(stack, config, log),
    }
