"""The Postgres container's health probe (pgsteady.stack.healthprobe) against a real
server in the Debian-built image: healthy only while the postmaster accepts TCP
connections, never fooled by a stale postmaster.pid, and silent in the server log.

One container per module (entrypoint ``sleep``, docker-init reaping as in the stack);
Postgres is started and stopped in it with pg_ctl as the image's postgres user, at the
PGDATA the stack uses.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest
from debian_images import DOCKER_CLI, debian_image_or_skip, engine_or_skip

from pgsteady.stack.healthprobe import SCRIPT
from pgsteady.stack.layout import PGDATA

pytestmark = pytest.mark.docker

LOG = "/tmp/server.log"
BIN = "/usr/lib/postgresql/17/bin"


def sh(name: str, script: str, user: str = "postgres", check: bool = True) -> str:
    proc = subprocess.run(
        [DOCKER_CLI, "exec", "-u", user, name, "sh", "-c", script],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    if check and proc.returncode != 0:
        raise AssertionError(f"{script!r} failed: {proc.stdout}{proc.stderr}")
    return proc.stdout


def probe(name: str) -> tuple[int, str]:
    """The probe as Docker runs it: sh -c as the container's root."""
    proc = subprocess.run(
        [DOCKER_CLI, "exec", "-u", "root", name, "sh", "-c", SCRIPT],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    return proc.returncode, proc.stderr


def pg_ctl(name: str, args: str) -> str:
    return sh(name, f"{BIN}/pg_ctl -D {PGDATA} -l {LOG} {args}")


@pytest.fixture(scope="module")
def box() -> Iterator[str]:
    client = engine_or_skip()
    image = debian_image_or_skip(client, 17)
    name = f"pgsteady-probe-{uuid.uuid4().hex[:8]}"
    subprocess.run(
        [DOCKER_CLI, "run", "-d", "--init", "--name", name, "--entrypoint", "sleep", image, "inf"],
        check=True, capture_output=True,
    )  # fmt: skip
    try:
        sh(name, f"mkdir -p {PGDATA} && chmod 700 {PGDATA}", user="root")
        sh(name, f"chown postgres {PGDATA}", user="root")
        sh(name, f"{BIN}/initdb -D {PGDATA} -A trust -U postgres >/dev/null")
        yield name
    finally:
        subprocess.run([DOCKER_CLI, "rm", "-f", "-v", name], capture_output=True)


def start_serving(name: str) -> None:
    pg_ctl(name, '-w -o "-c listen_addresses=127.0.0.1 -c log_connections=on" start')


def test_no_server_and_socket_only_server_are_unhealthy(box: str) -> None:
    rc, why = probe(box)
    assert rc == 1 and "no postmaster.pid" in why
    # The entrypoint's init-time server listens on the Unix socket only.
    pg_ctl(box, "-w -o \"-c listen_addresses=''\" start")
    try:
        rc, why = probe(box)
        assert rc == 1 and "nothing listens on TCP port 5432" in why
    finally:
        pg_ctl(box, "-w -m fast stop")


def test_serving_is_healthy_and_probes_are_not_logged_but_clients_are(box: str) -> None:
    start_serving(box)
    try:
        for _ in range(5):
            assert probe(box) == (0, "")
        log = sh(box, f"cat {LOG}")
        assert "connection received" not in log
        # A real client's connection is still logged.
        sh(box, f"{BIN}/psql -h 127.0.0.1 -U postgres -Atc 'select 1'")
        assert "connection received: host=127.0.0.1" in sh(box, f"cat {LOG}")
    finally:
        pg_ctl(box, "-w -m fast stop")


def test_shutdown_in_progress_is_unhealthy(box: str) -> None:
    start_serving(box)
    session = subprocess.Popen(
        [DOCKER_CLI, "exec", "-u", "postgres", box,
         f"{BIN}/psql", "-h", "127.0.0.1", "-U", "postgres", "-c", "select pg_sleep(20)"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        time.sleep(1)
        pg_ctl(box, "-m smart --no-wait stop")  # waits for the session: status 'stopping'
        time.sleep(1)
        rc, why = probe(box)
        assert rc == 1 and "postmaster status 'stopping'" in why
    finally:
        pg_ctl(box, "-w -m fast stop")
        session.wait(timeout=30)


def test_startup_in_progress_is_unhealthy(box: str) -> None:
    # Archive recovery whose restore_command takes 30 s per file: the server is 'starting'.
    sh(box, f"touch {PGDATA}/recovery.signal")
    opts = "-c listen_addresses=127.0.0.1 -c hot_standby=off -c restore_command='sleep 30; false'"
    pg_ctl(box, f'--no-wait -o "{opts}" start')
    try:
        deadline = time.monotonic() + 30
        while "starting" not in sh(box, f"sed -n 8p {PGDATA}/postmaster.pid", check=False):
            assert time.monotonic() < deadline, "the server never reported 'starting'"
            time.sleep(0.2)
        rc, why = probe(box)
        assert rc == 1 and "postmaster status 'starting'" in why
    finally:
        pg_ctl(box, "-m immediate stop")
        sh(box, f"rm -f {PGDATA}/recovery.signal")


def test_stale_postmaster_pid_is_unhealthy(box: str) -> None:
    start_serving(box)
    pid = sh(box, f"sed -n 1p {PGDATA}/postmaster.pid").strip()
    sh(box, f"kill -9 {pid}")
    deadline = time.monotonic() + 20
    while sh(box, f"kill -0 {pid} 2>/dev/null && echo alive", check=False):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    # The killed server's file still says 'ready'.
    assert sh(box, f"sed -n 8p {PGDATA}/postmaster.pid").strip() == "ready"
    rc, why = probe(box)
    assert rc == 1 and f"postmaster PID {pid} is not running" in why
    # A live process named postgres under that file's PID slot did not create its segment.
    sh(box, "cp /bin/sleep /tmp/postgres", user="root")
    sh(box, "nohup /tmp/postgres 60 >/dev/null 2>&1 &")
    other = sh(box, "pidof postgres").split()[0]
    sh(box, f"sed -i 1s/.*/{other}/ {PGDATA}/postmaster.pid")
    rc, why = probe(box)
    assert rc == 1 and "(stale file)" in why
    sh(box, f"kill {other}", check=False)
    # A symlink in the file's place is not followed (the postgres uid owns PGDATA).
    sh(box, f"mv {PGDATA}/postmaster.pid /tmp/pid && ln -s /tmp/pid {PGDATA}/postmaster.pid")
    rc, why = probe(box)
    assert rc == 1 and "postmaster.pid is not a regular file" in why
    sh(box, f"rm {PGDATA}/postmaster.pid")
    # A real start rewrites the file and turns healthy again.
    sh(box, f"rm -f {PGDATA}/postmaster.pid")
    start_serving(box)
    try:
        assert probe(box) == (0, "")
    finally:
        pg_ctl(box, "-w -m fast stop")


def test_a_wall_clock_step_does_not_make_a_serving_postmaster_unhealthy(box: str) -> None:
    """NTP stepping the clock (or a VM resumed from a pause) moves the kernel's boot time,
    so a start time recorded in postmaster.pid then disagrees with the process's. A CI
    machine stepped 24 s once and left the serving container unhealthy for good; here the
    file's start time is moved back an hour, as a step forward would look to the probe."""
    start_serving(box)
    try:
        started = int(sh(box, f"sed -n 3p {PGDATA}/postmaster.pid"))
        sh(box, f"sed -i 3s/.*/{started - 3600}/ {PGDATA}/postmaster.pid")
        assert probe(box) == (0, "")
    finally:
        pg_ctl(box, "-w -m fast stop")


def test_a_live_postmaster_whose_file_names_another_segment_is_unhealthy(box: str) -> None:
    """The file's PID is live, named postgres and listening, but line 7 names a segment it
    did not create (a copied or stale file): not healthy, and healthy again once the
    server's own line is back. A port that is not digits is refused the same way."""
    start_serving(box)
    try:
        line = sh(box, f"sed -n 7p {PGDATA}/postmaster.pid").rstrip("\n")
        key, shmid = line.split()
        sh(box, f"sed -i '7s/.*/{key} {int(shmid) + 1000}/' {PGDATA}/postmaster.pid")
        rc, why = probe(box)
        assert rc == 1 and f"segment {int(shmid) + 1000} (stale file)" in why, why
        sh(box, f"sed -i '7s/.*/{line}/' {PGDATA}/postmaster.pid")
        assert probe(box) == (0, "")
        # the port (line 4) is used only as digits
        port = sh(box, f"sed -n 4p {PGDATA}/postmaster.pid").strip()
        sh(box, f"sed -i '4s/.*/{port}x/' {PGDATA}/postmaster.pid")
        rc, why = probe(box)
        assert rc == 1 and f"bad port '{port}x'" in why, why
        sh(box, f"sed -i '4s/.*/{port}/' {PGDATA}/postmaster.pid")
        assert probe(box) == (0, "")
    finally:
        pg_ctl(box, "-w -m fast stop")


def test_the_limit_a_server_that_answers_no_client_still_passes(box: str) -> None:
    """What the probe cannot see (docs/reliability.md, A hung but listening server): a
    session holding pg_authid exclusively makes every new connection wait in its start-up,
    so pg_isready gets no answer, yet the postmaster is alive, ready and listening: the
    probe passes. A postmaster stopped by a signal, by contrast, is caught (its state)."""
    start_serving(box)
    try:
        holder = subprocess.Popen(
            [DOCKER_CLI, "exec", "-u", "postgres", box, f"{BIN}/psql", "-X", "-h", "127.0.0.1",
             "-c", "BEGIN", "-c", "LOCK pg_catalog.pg_authid IN ACCESS EXCLUSIVE MODE",
             "-c", "SELECT pg_catalog.pg_sleep(20)"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            time.sleep(2)
            ready = sh(box, f"{BIN}/pg_isready -h 127.0.0.1 -t 3; echo rc=$?", check=False)
            assert "rc=0" not in ready, ready
            assert probe(box) == (0, "")
        finally:
            holder.kill()
            holder.wait()
            sh(box, f"{BIN}/psql -X -h 127.0.0.1 -Atc 'SELECT 1'", check=False)
        pid = sh(box, f"sed -n 1p {PGDATA}/postmaster.pid").strip()
        sh(box, f"kill -STOP {pid}")
        try:
            rc, why = probe(box)
            assert rc == 1 and f"postmaster PID {pid} is in state T" in why, why
        finally:
            sh(box, f"kill -CONT {pid}")
        assert probe(box) == (0, "")
    finally:
        pg_ctl(box, "-w -m fast stop")
