"""Faults against converged stacks, each under a durable writer: measured recovery, zero loss.

The CI subset runs a few trials of each cheap fault; ``PGSTEADY_CHAOS=full`` runs them
all, restarts dockerd too, and writes docs/reliability.md.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import psycopg2
import pytest
from harness import (
    FULL,
    Check,
    FaultRow,
    Results,
    Writer,
    first_query_after,
    trials,
    wait_uptime,
)
from smalldisk import SmallDiskStack

from tests.support.stack import DOCKER, Stack, docker

pytestmark = pytest.mark.timeout(3600 if FULL else 600)


def _gone(pid: int, timeout: float = 10) -> None:
    """Wait until ``pid`` has left the process table (so a probe cannot reach it)."""
    deadline = time.monotonic() + timeout
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.005)


def _record(row: FaultRow, recovery: float, check: Check) -> None:
    row.add(recovery, check)
    assert not check.lost, f"{row.fault}: acknowledged ids lost: {check.lost[:20]}"


def test_kill_9_of_the_postmaster(main_stack: Stack, results: Results) -> None:
    row = results.row(
        "kill -9 of the postmaster (from the host)",
        "container exits 137; Docker's `restart: always` starts it again; clients see a "
        "dropped connection",
    )
    with Writer(main_stack) as writer:
        for _ in range(trials(20, 3)):
            wait_uptime(main_stack)
            writer.wait_for_commits()
            restarts = main_stack.inspect()["RestartCount"]
            pid = main_stack.host_pid()
            t0 = time.monotonic()
            os.kill(pid, signal.SIGKILL)
            _gone(pid)
            recovery = first_query_after(main_stack, t0)
            assert main_stack.inspect()["RestartCount"] == restarts + 1
            writer.wait_for_commits()
            _record(row, recovery, writer.verify())


def test_crash_loop_of_back_to_back_kills(main_stack: Stack, results: Results) -> None:
    row = results.row(
        "crash loop: kill -9 as soon as it answers again",
        "as above, but Docker doubles its restart delay after each crash (100 ms, 200 ms, "
        "...) and resets it only after 10 s of uptime",
    )
    with Writer(main_stack) as writer:
        wait_uptime(main_stack)
        writer.wait_for_commits()
        for _ in range(trials(8, 3)):
            pid = main_stack.host_pid()
            t0 = time.monotonic()
            os.kill(pid, signal.SIGKILL)
            _gone(pid)
            recovery = first_query_after(main_stack, t0)
            writer.wait_for_commits(1)
            _record(row, recovery, writer.verify())
    row.notes.append(
        "recovery of each kill in order: "
        + ", ".join(f"{v:.2f}" for v in row.recoveries)
        + " s: the delay grows with every crash that follows a start by less than 10 s."
    )


def test_docker_kill_is_undone_by_the_watchdog(main_stack: Stack, results: Results) -> None:
    row = results.row(
        "`docker kill` of the container",
        "Docker treats it as a manual stop and does not restart it; the pgsteady watchdog "
        "(cron, every minute: `pgsteady-ctl watchdog --watch`, which then watches Docker's "
        "events for 57 s) starts it",
    )
    seconds_into_minute = []
    # cron reads the new cron.d file at the next minute: wait for the first job's check.
    cron = Path(f"/etc/cron.d/pgsteady-watchdog-{main_stack.name}")
    state = main_stack.app_dir / "state" / "watchdog.json"
    deadline = time.monotonic() + 130
    while not (state.exists() and state.stat().st_mtime > cron.stat().st_mtime):
        assert time.monotonic() < deadline, "no watchdog job ran within two minutes"
        time.sleep(0.5)
    with Writer(main_stack) as writer:
        for _ in range(trials(5, 1)):
            wait_uptime(main_stack)
            writer.wait_for_commits()
            t0 = time.monotonic()
            seconds_into_minute.append(time.localtime().tm_sec)
            docker("kill", main_stack.container)
            assert main_stack.inspect()["State"]["Running"] is False
            recovery = first_query_after(main_stack, t0, timeout=150)
            # Seconds (the watcher wakes on the die event); the bound is for a loaded host.
            assert recovery < 60, "the watching watchdog did not start the container"
            writer.wait_for_commits()
            _record(row, recovery, writer.verify())
    row.notes.append(
        "the watchdog job of each minute watches Docker's events until second 57, so a "
        "kill is seen at once (a kill in the last ~3 s of a minute waits for the next "
        "job); recovery is then the container's start and Postgres's crash recovery "
        "(kills at second " + ", ".join(map(str, seconds_into_minute)) + ")."
    )


def test_pg_terminate_backend_under_load(main_stack: Stack, results: Results) -> None:
    row = results.row(
        "`pg_terminate_backend` of the writer's backend, under load",
        "client error (FATAL 57P01, terminating connection due to administrator command); "
        "the writer reconnects. Recovery: until the writer's next acknowledged commit",
    )
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            try:
                conn = main_stack.connect()
            except psycopg2.Error:
                time.sleep(0.1)
                continue
            try:
                with conn.cursor() as cur:
                    while not stop.is_set():
                        cur.execute("SELECT count(*) FROM chaos_writes")
                        cur.execute("SELECT sum(g) FROM generate_series(1, 200000) g")
            except psycopg2.Error:
                time.sleep(0.1)
            finally:
                conn.close()

    loaders = [threading.Thread(target=load, daemon=True) for _ in range(3)]
    with Writer(main_stack) as writer:
        for t in loaders:
            t.start()
        try:
            for _ in range(trials(10, 2)):
                wait_uptime(main_stack)
                writer.wait_for_commits()
                t0 = time.monotonic()
                killed = main_stack.psql(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE application_name = 'chaos-writer'"
                )
                assert killed == "1"
                recovery = writer.first_ack_after(t0)
                _record(row, recovery, writer.verify())
        finally:
            stop.set()
            for t in loaders:
                t.join(timeout=30)


OOM_QUERY = (
    "SET work_mem = '4GB'; SET hash_mem_multiplier = 1;"
    "SELECT count(*) FROM (SELECT g % 3000000 AS k, array_agg(repeat('x', 200))"
    " FROM generate_series(1, 20000000) g GROUP BY 1) s"
)


def test_container_memory_limit_hit_by_a_query(oom_stack: Stack, results: Results) -> None:
    row = results.row(
        "memory limit hit by a query (256 MB container, one hash aggregate of GBs)",
        "the kernel OOM-kills the backend inside the container's cgroup; the postmaster "
        "sees it die by signal 9 and runs crash recovery (all sessions reset); the "
        "container keeps running",
    )
    outcomes = []
    with Writer(oom_stack) as writer:
        for _ in range(trials(5, 1)):
            wait_uptime(oom_stack)
            writer.wait_for_commits()
            before = oom_stack.inspect()
            conn = oom_stack.connect()
            conn.autocommit = True
            with pytest.raises(psycopg2.OperationalError), conn.cursor() as cur:
                cur.execute(OOM_QUERY)
            t0 = time.monotonic()  # the client learns of the kill here
            conn.close()
            recovery = first_query_after(oom_stack, t0)
            after = oom_stack.inspect()
            restarted = after["RestartCount"] - before["RestartCount"]
            outcomes.append(
                "container restarted (OOMKilled)"
                if restarted
                else "backend killed, postmaster crash recovery"
            )
            writer.wait_for_commits()
            _record(row, recovery, writer.verify())
    logs = docker("logs", "--since", "30m", oom_stack.container).stderr
    assert "was terminated by signal 9" in logs
    row.notes.append(
        "outcome of each trial: " + "; ".join(outcomes) + ". Recovery is measured from the "
        "client's error (the moment of the kill) to the first successful query."
    )


def _fill(stack: SmallDiskStack, leave_mb: int = 24) -> str:
    """Put a ballast file on the data filesystem, then grow a table until writes fail."""
    st = os.statvfs(stack.mountpoint)
    free_mb = st.f_bavail * st.f_frsize // 2**20
    ballast = stack.mountpoint / "ballast"
    subprocess.run(
        ["dd", "if=/dev/zero", f"of={ballast}", "bs=1M", f"count={max(0, free_mb - leave_mb)}"],
        check=True,
        capture_output=True,
    )
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            with stack.connect() as conn, conn.cursor() as cur:
                cur.execute("CREATE TABLE IF NOT EXISTS chaos_filler (b text)")
                while True:
                    cur.execute(
                        "INSERT INTO chaos_filler SELECT repeat(md5(random()::text), 30)"
                        " FROM generate_series(1, 1000)"
                    )
                    conn.commit()
        except psycopg2.Error as exc:
            return str(exc).strip().splitlines()[0]
    raise AssertionError("the data filesystem never filled up")


def _fill_wal(stack: SmallDiskStack, leave_mb: int = 6) -> str:
    """Leave less room than one WAL segment, then force segment switches until WAL
    cannot grow (recycled segments are used up first)."""
    st = os.statvfs(stack.mountpoint)
    free_mb = st.f_bavail * st.f_frsize // 2**20
    subprocess.run(
        ["dd", "if=/dev/zero", f"of={stack.mountpoint / 'ballast'}", "bs=1M",
         f"count={max(0, free_mb - leave_mb)}"],
        check=True, capture_output=True,
    )  # fmt: skip
    # As the superuser on the container's socket (it may not log in over TCP): switch
    # segments until psql fails.
    loop = (
        'while psql -XAtq -v ON_ERROR_STOP=1 -d app -c "CREATE TABLE IF NOT EXISTS chaos_switch'
        ' (x int)" -c "INSERT INTO chaos_switch VALUES (1)" -c "SELECT pg_switch_wal()"'
        " >/dev/null; do :; done"
    )
    try:
        proc = subprocess.run(
            [DOCKER, "exec", "-u", "postgres", stack.container, "sh", "-c", loop],
            capture_output=True, text=True, timeout=180,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        proc = None
    if proc is not None:
        logs = docker("logs", "--tail", "200", stack.container).stderr.splitlines()
        full = [line.split("] ", 1)[-1] for line in logs if "No space left" in line]
        return full[-1] if full else (proc.stderr.strip().splitlines() or ["psql failed"])[-1]
    raise AssertionError("WAL never ran out of space")


def test_data_filesystem_full(small_disk_stack: SmallDiskStack, results: Results) -> None:
    stack = small_disk_stack
    row = results.row(
        f"data filesystem full ({stack.size_mb} MB tmpfs; freed by deleting a ballast file)",
        "client errors: `could not extend file` (ERROR) or `could not write to file "
        "pg_wal/...: No space left on device` (PANIC, then the container restarts and fails "
        "recovery until space is freed). Recovery: from freeing space to the writer's next "
        "commit",
    )
    observed = []
    with Writer(stack) as writer:
        for trial in range(trials(4, 1)):
            wait_uptime(stack)
            writer.wait_for_commits()
            restarts = stack.inspect()["RestartCount"]
            # Even trials fill a table file first (ERROR), odd ones WAL (PANIC).
            error = _fill(stack) if trial % 2 == 0 else _fill_wal(stack)
            fill_done = time.monotonic()
            # Give the writer time to hit the full disk too (or not: tiny rows may fit).
            while writer.last_error < fill_done and time.monotonic() < fill_done + 10:
                time.sleep(0.1)
            blocked = writer.last_error >= fill_done
            t0 = time.monotonic()
            (stack.mountpoint / "ballast").unlink()
            recovery = writer.first_ack_after(t0)
            first_query_after(stack, t0)
            crash_restarts = stack.inspect()["RestartCount"] - restarts
            observed.append(
                f"{error!r}; writer still failing after the fill: {'yes' if blocked else 'no'}; "
                f"container restarts while full: {crash_restarts}"
            )
            _record(row, recovery, writer.verify())
            with stack.connect() as conn, conn.cursor() as cur:
                cur.execute("TRUNCATE chaos_filler")
            stack.psql("CHECKPOINT")
    row.notes.append("per trial: " + " | ".join(observed))


# --------------------------------------------------------------------------------------
# dockerd restart: full mode only, last (the engine is shared with other tests)
# --------------------------------------------------------------------------------------


def _dockerd() -> tuple[int, list[str], str]:
    """PID, argv and log file of the running dockerd; skip unless it was started by hand."""
    out = subprocess.run(
        ["ps", "-o", "pid=,ppid=", "-C", "dockerd"], capture_output=True, text=True
    ).stdout.split()
    if len(out) != 2:
        pytest.skip(f"expected one dockerd process, found: {out}")
    pid = int(out[0])
    if Path("/run/systemd/system").exists():
        pytest.skip("dockerd is managed by systemd here; not restarting it by hand")
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").decode().split("\0")
    log = os.readlink(f"/proc/{pid}/fd/2")
    if not log.startswith("/"):
        log = "/var/log/dockerd.log"
    return pid, argv, log


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def _restart_dockerd() -> None:
    """SIGTERM the hand-started dockerd and start it again the same way, in the background."""
    pid, argv, log = _dockerd()
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 90
    while _alive(pid):
        assert time.monotonic() < deadline, "dockerd did not stop within 90 s"
        time.sleep(0.1)
    # `setsid -f` forks: dockerd is orphaned to PID 1 as before, not left as our child.
    with open(log, "ab") as out:
        subprocess.run(
            ["setsid", "-f", *argv], stdout=out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, cwd="/", check=True,
        )  # fmt: skip
    deadline = time.monotonic() + 120
    while subprocess.run([DOCKER, "info"], capture_output=True).returncode != 0:
        assert time.monotonic() < deadline, "dockerd did not answer within 120 s"
        time.sleep(0.2)


@pytest.mark.skipif(not FULL, reason="restarts the shared Docker engine: PGSTEADY_CHAOS=full")
def test_zz_dockerd_restart(main_stack: Stack, results: Results) -> None:
    row = results.row(
        "dockerd restart (SIGTERM, then started again)",
        "the daemon stops the container cleanly (SIGINT, fast shutdown); on start it starts "
        "again every container with `restart: always`",
    )
    with Writer(main_stack) as writer:
        for _ in range(trials(2, 0)):
            wait_uptime(main_stack)
            writer.wait_for_commits()
            t0 = time.monotonic()
            _restart_dockerd()
            recovery = first_query_after(main_stack, t0)
            writer.wait_for_commits()
            _record(row, recovery, writer.verify())
    row.notes.append(
        "dockerd runs here without an init system (started by hand, PPID 1): the test sends "
        "it SIGTERM, waits for it to exit and starts the same command line in the "
        "background with its log appended to the same file."
    )
