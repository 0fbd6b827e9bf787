"""pgsteady-ctl against a real Docker engine and docker-compose: the watchdog and the
trust checks (issue 11, items 2 and 9).

Each test runs the shipped files/bin/pgsteady-ctl with its own ctl.env, compose file and
state directory, on a tiny image made here from the host's own sh/sleep/true (no
registry needed). The container plays the part of Postgres: what matters is its state.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import shutil
import signal
import subprocess
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from backup_env import install_tool

REPO = Path(__file__).resolve().parents[2]
CTL = REPO / "files" / "bin" / "pgsteady-ctl"
DOCKER = "/usr/bin/docker" if Path("/usr/bin/docker").exists() else "docker"
COMPOSE = shutil.which("docker-compose")
TINY = "pgsteady-test/ctl-tiny:1"

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="pgsteady-ctl runs as root"),
    pytest.mark.skipif(COMPOSE is None, reason="docker-compose is not installed"),
]


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([DOCKER, *args], capture_output=True, text=True, check=check)


def _libraries(binary: str) -> list[str]:
    out = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True).stdout
    paths = []
    for line in out.splitlines():
        parts = line.split()
        path = parts[2] if "=>" in parts and len(parts) > 2 else parts[0]
        if path.startswith("/"):
            paths.append(path)
    return paths


@pytest.fixture(scope="module")
def tiny_image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An image holding only /bin/sh, sleep and true (and their libraries)."""
    tar_path = tmp_path_factory.mktemp("tiny") / "rootfs.tar"
    binaries = {"/bin/sh": shutil.which("dash") or "/bin/sh"}
    for name in ("sleep", "true"):
        binaries[f"/bin/{name}"] = shutil.which(name) or f"/bin/{name}"
    members = dict(binaries)
    for source in binaries.values():
        members.update({lib: lib for lib in _libraries(source)})
    with tarfile.open(tar_path, "w") as tar:
        for inside, source in members.items():
            tar.add(os.path.realpath(source), arcname=inside)
    subprocess.run(
        [DOCKER, "import", str(tar_path), TINY], capture_output=True, check=True, timeout=120
    )
    yield TINY
    docker("rmi", "-f", TINY, check=False)


@dataclass
class CtlStack:
    """One compose project run by pgsteady-ctl, with its own ctl.env and state dir."""

    dir: Path
    image: str

    def __post_init__(self) -> None:
        self.project = "ctl" + secrets.token_hex(3)
        self.container = f"{self.project}-postgres"
        self.env = self.dir / "etc" / "ctl.env"
        self.state = self.dir / "state"
        self.compose_file = self.dir / "docker-compose.yml"
        self.hook_log = self.dir / "hook.log"
        for d in (self.env.parent, self.state):
            d.mkdir(mode=0o700)

    def write(
        self,
        command: list[str],
        restart: str = "always",
        backoff: int = 60,
        backoff_max: int = 3600,
        on_failure: str = "",
        extra: dict | None = None,
    ) -> None:
        service = {
            "image": self.image,
            "container_name": self.container,
            "command": command,
            "restart": restart,
            "stop_grace_period": "1s",
            "healthcheck": {
                "test": ["CMD", "/bin/true"],
                "interval": "1s",
                "timeout": "1s",
                "retries": 1,
            },
        }
        services = {"postgres": service, **(extra or {})}
        self.compose_file.write_text(yaml.safe_dump({"services": services}))
        self.compose_file.chmod(0o640)
        values = {
            "PGSTEADY_PROJECT": self.project,
            "PGSTEADY_CONTAINER": self.container,
            "PGSTEADY_COMPOSE": COMPOSE,
            "PGSTEADY_COMPOSE_FILE": str(self.compose_file),
            "PGSTEADY_HEALTHY_TIMEOUT": "60",
            "PGSTEADY_STATE_DIR": str(self.state),
            "PGSTEADY_RESTART_POLICY": restart,
            "PGSTEADY_WATCHDOG_BACKOFF": str(backoff),
            "PGSTEADY_WATCHDOG_BACKOFF_MAX": str(backoff_max),
            "PGSTEADY_WATCHDOG_ON_FAILURE": on_failure,
        }
        text = "".join(f"{k}='{v}'\n" for k, v in values.items())
        self.env.write_text(text)
        self.env.chmod(0o600)

    def ctl(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["sh", str(CTL), "-e", str(self.env), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def popen_ctl(self, *args: str) -> subprocess.Popen[str]:
        """pgsteady-ctl in a session of its own (see :func:`stop_ctl`)."""
        return subprocess.Popen(
            ["sh", str(CTL), "-e", str(self.env), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )

    def compose(self, *args: str) -> None:
        subprocess.run(
            [COMPOSE, "-p", self.project, "-f", str(self.compose_file), *args],
            capture_output=True,
            check=True,
            timeout=120,
        )

    def status(self) -> str:
        res = docker("inspect", "-f", "{{.State.Status}}", self.container, check=False)
        return res.stdout.strip()

    def started_at(self) -> str:
        return docker("inspect", "-f", "{{.State.StartedAt}}", self.container).stdout.strip()

    def wait_status(self, want: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while self.status() != want:
            assert time.monotonic() < deadline, f"{self.container} is {self.status()}, not {want}"
            time.sleep(0.2)

    def wait_health(self, want: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        fmt = "{{if .State.Health}}{{.State.Health.Status}}{{end}}"
        while docker("inspect", "-f", fmt, self.container).stdout.strip() != want:
            assert time.monotonic() < deadline, f"{self.container} is not {want}"
            time.sleep(0.2)

    def watchdog_state(self) -> dict:
        return json.loads((self.state / "watchdog.json").read_text())

    def destroy(self) -> None:
        docker("unpause", self.container, check=False)
        docker("rm", "-f", "-v", self.container, check=False)
        docker("rm", "-f", "-v", f"{self.project}-sidecar", check=False)
        docker("network", "rm", f"{self.project}_default", check=False)


@pytest.fixture
def stack(tmp_path: Path, tiny_image: str) -> Iterator[CtlStack]:
    st = CtlStack(tmp_path, tiny_image)
    yield st
    st.destroy()


# --- the watchdog (item 9) ------------------------------------------------------------


def test_watchdog_leaves_a_paused_container_alone(stack: CtlStack) -> None:
    stack.write(["sleep", "600"])
    up = stack.ctl("up")
    assert up.returncode == 0, up.stderr
    docker("pause", stack.container)
    run = stack.ctl("watchdog")
    assert run.returncode == 0, run.stderr
    assert "starting it" not in run.stderr
    assert stack.status() == "paused"
    state = stack.watchdog_state()
    assert state["action"] == "none" and state["reason"].startswith("paused: left alone"), state


def test_watchdog_honours_restart_policy_no(stack: CtlStack) -> None:
    stack.write(["sh", "-c", "exit 3"], restart="no")
    stack.compose("up", "-d")
    stack.wait_status("exited")
    before = stack.started_at()
    for _ in range(2):
        run = stack.ctl("watchdog")
        assert run.returncode == 0, run.stderr
    assert stack.status() == "exited"
    assert stack.started_at() == before, "the watchdog started a container with policy no"
    state = stack.watchdog_state()
    assert state["restart_policy"] == "no" and state["action"] == "none", state


def test_watchdog_backs_off_a_crash_loop_and_reports_it(stack: CtlStack) -> None:
    """exit 0 under on-failure: Docker leaves it down, so only the watchdog starts it."""
    hook = f'echo "$PGSTEADY_EVENT $PGSTEADY_ATTEMPTS $PGSTEADY_CONTAINER" >> {stack.hook_log}'
    stack.write(["sh", "-c", "exit 0"], restart="on-failure", backoff=2, backoff_max=8,
                on_failure=hook)  # fmt: skip
    stack.compose("up", "-d")
    stack.wait_status("exited")
    starts: list[float] = []
    reports = 0
    deadline = time.monotonic() + 26
    while time.monotonic() < deadline:
        began = time.monotonic()
        run = stack.ctl("watchdog")
        assert run.returncode == 0, run.stderr
        if "starting it" in run.stderr:
            starts.append(began)
            stack.wait_status("exited")  # the start did not stay up
        reports += run.stderr.count("crash loop")
        time.sleep(0.3)
    gaps = [round(b - a, 1) for a, b in zip(starts, starts[1:], strict=False)]
    # Waits of 2, 4, 8, 8 s: each the backoff (whole seconds of `date +%s`: up to 1 s
    # early), at most a poll and a compose call late.
    assert len(starts) >= 5, (starts, gaps)
    for i, gap in enumerate(gaps):
        want = min(8, 2 * 2**i)
        assert want - 1 <= gap <= want + 3, (i, gaps)
    hook_lines = stack.hook_log.read_text().splitlines()
    # From the third start on each start is a crash-loop report; each report runs the hook once.
    assert reports == len(starts) - 2, (reports, starts)
    assert hook_lines == [
        f"watchdog-crash-loop {n} {stack.container}" for n in range(3, len(starts) + 1)
    ]
    state = stack.watchdog_state()
    assert state["crash_loop"] is True and state["attempts"] == len(starts), state
    assert state["next_attempt"] > state["updated"], state


def test_watchdog_reports_docker_restarting_a_crash_loop(stack: CtlStack) -> None:
    """Policy always: Docker restarts the crashing container itself; the watchdog does not
    start it too, but reports the loop once RestartCount has grown by 3, then at 6, 12 ..."""
    hook = f'echo "$PGSTEADY_EVENT" >> {stack.hook_log}'
    stack.write(["sh", "-c", "exit 1"], restart="always", on_failure=hook)
    stack.compose("up", "-d")
    deadline = time.monotonic() + 12
    while time.monotonic() < deadline:
        run = stack.ctl("watchdog")
        assert run.returncode == 0, run.stderr
        time.sleep(0.3)
    count = int(docker("inspect", "-f", "{{.RestartCount}}", stack.container).stdout)
    assert count >= 4, count
    lines = stack.hook_log.read_text().splitlines()
    want = 1 + (count >= 6) + (count >= 12)
    assert len(lines) in (want - 1, want) and lines, (count, lines)  # the last may be pending
    assert set(lines) == {"watchdog-crash-loop"}
    state = stack.watchdog_state()
    assert state["crash_loop"] is True and state["docker_restarts_reported"] >= 3, state


def test_watchdog_resets_once_the_container_stays_up(stack: CtlStack) -> None:
    stack.write(["sleep", "600"], backoff=30, backoff_max=60)
    stack.compose("up", "-d")
    docker("kill", stack.container)
    stack.wait_status("exited")
    run = stack.ctl("watchdog")
    assert "starting it" in run.stderr, run.stderr
    assert stack.watchdog_state()["attempts"] == 1
    stack.wait_status("running")
    deadline = time.monotonic() + 30
    while docker("inspect", "-f", "{{.State.Health.Status}}", stack.container).stdout.strip() != (
        "healthy"
    ):
        assert time.monotonic() < deadline
        time.sleep(0.3)
    stack.ctl("watchdog")
    state = stack.watchdog_state()
    assert state["attempts"] == 0 and state["crash_loop"] is False, state
    # Killed again right away: started at once, not held back by the old backoff.
    docker("kill", stack.container)
    stack.wait_status("exited")
    assert "starting it" in stack.ctl("watchdog").stderr


def _lock_held(lock: Path) -> bool:
    return subprocess.run(["flock", "-n", str(lock), "true"]).returncode != 0


def test_watchdog_and_up_share_one_lock(stack: CtlStack) -> None:
    stack.write(["sleep", "600"])
    stack.compose("up", "-d")
    docker("stop", "-t", "1", stack.container)
    stack.wait_status("exited")
    lock = stack.state / "ctl.lock"
    # The test holds the lock itself (flock(2) on its own descriptor) and releases it by
    # closing that descriptor: a `flock FILE sleep N` holder passes the descriptor on to
    # its sleep, which kept the lock for all N seconds after the holder was killed.
    holder = lock.open("a")
    fcntl.flock(holder, fcntl.LOCK_EX)
    up: subprocess.Popen[str] | None = None
    try:
        assert _lock_held(lock), "the test could not take the lock"
        run = stack.ctl("watchdog")
        assert run.returncode == 0, run.stderr
        assert "holds" in run.stderr and "starting it" not in run.stderr, run.stderr
        assert stack.status() == "exited"
        up = stack.popen_ctl("up")
        time.sleep(3)
        assert up.poll() is None, "up ran while another command held the lock"
        assert stack.status() == "exited"
    finally:
        holder.close()
    assert up is not None
    out, err = up.communicate(timeout=120)
    assert up.returncode == 0, err
    assert stack.status() == "running"


# --- the watching watchdog (issue 19, item 3) -----------------------------------------


def _session(pid: int) -> list[int]:
    """The processes of the session ``pid`` leads (``timeout`` moves its command into a
    process group of its own, so the leader's group alone misses it)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == pid:  # after the command: state, ppid, pgrp, session
            found.append(int(stat.parent.name))
    return found


def stop_ctl(proc: subprocess.Popen[str]) -> tuple[str, str]:
    """End a pgsteady-ctl this test started as systemd ends a job: SIGTERM to every
    process of its session. A SIGTERM to ``sh`` alone leaves a watcher's ``docker events``
    holding the output pipes until its --watch period ends (the test waited it out)."""
    for pid in _session(proc.pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    return proc.communicate(timeout=60)


def _wait_watching(stack: CtlStack, watcher: subprocess.Popen[str]) -> None:
    """Until the watcher's first check has written its state (it then watches events)."""
    deadline = time.monotonic() + 30
    while not (stack.state / "watchdog.json").exists():
        assert watcher.poll() is None, watcher.communicate()
        assert time.monotonic() < deadline, "the watcher wrote no state"
        time.sleep(0.1)
    time.sleep(
        1
    )  # past `docker events`' start (the events are replayed from the job's start anyway)


def test_watching_watchdog_starts_a_killed_container_within_seconds(stack: CtlStack) -> None:
    """`watchdog --watch` (the scheduled form) sees `docker kill` through Docker's events
    and starts the container at once, not at the next minute; it holds the shared lock
    only while it checks, and a second watcher of the same stack does not start."""
    stack.write(["sleep", "600"])
    stack.compose("up", "-d")
    stack.wait_status("running")
    # healthy, so that the check at the start runs what it runs for a healthy server
    # (arm_archive_timeout once changed the watcher's own variables and ended the watch)
    stack.wait_health("healthy")
    watcher = stack.popen_ctl("watchdog", "--watch", "40")
    try:
        _wait_watching(stack, watcher)
        assert not _lock_held(stack.state / "ctl.lock"), "the watcher holds the shared lock"
        before = stack.started_at()
        killed_at = time.monotonic()
        docker("kill", stack.container)
        deadline = killed_at + 30  # generous for a loaded CI host; the figure is printed
        while not (stack.status() == "running" and stack.started_at() != before):
            assert time.monotonic() < deadline, f"not started again: {stack.status()}"
            time.sleep(0.1)
        took = time.monotonic() - killed_at
        print(f"docker kill -> running again (watching watchdog): {took:.2f} s")
        state = stack.watchdog_state()
        assert state["action"] == "started" and state["attempts"] == 1, state
        second = stack.ctl("watchdog", "--watch", "5", timeout=60)
        assert second.returncode == 0, second.stderr
        assert "still watching" in second.stderr, second.stderr
        assert watcher.poll() is None, "the first watcher stopped early"
        # Killed again after 10 s up: that start was good, no crash-loop backoff.
        time.sleep(max(0.0, killed_at + 12 - time.monotonic()))
        before = stack.started_at()
        docker("kill", stack.container)
        deadline = time.monotonic() + 30
        while not (stack.status() == "running" and stack.started_at() != before):
            assert time.monotonic() < deadline, f"held back: {stack.watchdog_state()}"
            time.sleep(0.1)
        assert stack.watchdog_state()["attempts"] == 1, stack.watchdog_state()
    finally:
        stop_ctl(watcher)


def test_watching_watchdog_leaves_a_deliberate_stop_alone(stack: CtlStack) -> None:
    """`pgsteady-ctl down` while a watcher watches: the container's death wakes the
    watcher, which finds the .stopped marker; it stays down across several watchers; `up`
    clears the marker and the next kill is undone again."""
    stack.write(["sleep", "600"])
    stack.compose("up", "-d")
    stack.wait_status("running")
    watcher = stack.popen_ctl("watchdog", "--watch", "8")
    _wait_watching(stack, watcher)
    down = stack.ctl("down")
    assert down.returncode == 0, down.stderr
    _, err = watcher.communicate(timeout=60)
    assert watcher.returncode == 0, err
    assert "docker event die" in err, err  # it was woken, and left the stop alone
    for _ in range(3):
        run = stack.ctl("watchdog", "--watch", "2", timeout=60)
        assert run.returncode == 0, run.stderr
        docker("kill", stack.container, check=False)
    assert stack.status() == "exited"
    assert stack.ctl("up").returncode == 0
    watcher = stack.popen_ctl("watchdog", "--watch", "15")
    try:
        _wait_watching(stack, watcher)
        docker("kill", stack.container)
        stack.wait_status("running", timeout=30)
    finally:
        stop_ctl(watcher)


def test_watching_watchdog_does_not_watch_under_restart_policy_no(stack: CtlStack) -> None:
    stack.write(["sleep", "600"], restart="no")
    stack.compose("up", "-d")
    started = time.monotonic()
    run = stack.ctl("watchdog", "--watch", "30", timeout=60)
    assert run.returncode == 0, run.stderr
    assert time.monotonic() - started < 20, "it watched a stack whose policy is no"
    docker("kill", stack.container)
    assert stack.ctl("watchdog", "--watch", "2", timeout=60).returncode == 0
    assert stack.status() == "exited"


# --- a service switched off -------------------------------------------------------------


def test_up_removes_a_dropped_service_with_its_anonymous_volume(stack: CtlStack) -> None:
    """A sidecar (a pooler or exporter switched off) that the compose file no longer has
    goes with its anonymous volume; compose's own --remove-orphans would leave it dangling.
    The Postgres container stays as it was, and a container of the same compose project
    name that is not pgsteady's (no io.pgsteady.project label) keeps its volume."""
    sidecar = {
        "image": stack.image,
        "container_name": f"{stack.project}-sidecar",
        "command": ["sleep", "600"],
        "volumes": ["/scratch"],
        "labels": {"io.pgsteady.project": stack.project},
    }
    stack.write(["sleep", "600"], extra={"sidecar": sidecar})
    up = stack.ctl("up")
    assert up.returncode == 0, up.stderr
    volume = _anonymous_volume(sidecar["container_name"], "/scratch")
    postgres_started = stack.started_at()
    foreign = f"{stack.project}-foreign"
    docker(
        "run", "-d", "--name", foreign, "-v", "/keep",
        "--label", f"com.docker.compose.project={stack.project}",
        "--label", "com.docker.compose.service=foreign", stack.image, "sleep", "600",
    )  # fmt: skip
    foreign_volume = _anonymous_volume(foreign, "/keep")
    try:
        stack.write(["sleep", "600"])
        up = stack.ctl("up")
        assert up.returncode == 0, up.stderr
        assert "service sidecar is no longer in the compose file" in up.stderr, up.stderr
        assert docker("inspect", sidecar["container_name"], check=False).returncode != 0
        assert docker("volume", "inspect", volume, check=False).returncode != 0, "volume left"
        assert stack.status() == "running" and stack.started_at() == postgres_started
        assert "service foreign" not in up.stderr, up.stderr
        assert docker("volume", "inspect", foreign_volume, check=False).returncode == 0
    finally:
        docker("rm", "-f", "-v", foreign, check=False)
        docker("volume", "rm", "-f", foreign_volume, volume, check=False)


def _anonymous_volume(container: str, destination: str) -> str:
    mounts = json.loads(docker("inspect", "-f", "{{json .Mounts}}", container).stdout)
    (name,) = [m["Name"] for m in mounts if m["Destination"] == destination]
    return name


# --- trust checks (item 2) ------------------------------------------------------------


def test_ctl_refuses_an_env_file_another_uid_could_write(stack: CtlStack) -> None:
    stack.write(["sleep", "600"])
    assert stack.ctl("status").returncode == 0

    os.chown(stack.env, 999, 999)
    run = stack.ctl("status")
    assert run.returncode == 2 and "refusing" in run.stderr and "uid 999" in run.stderr, run
    os.chown(stack.env, 0, 0)

    stack.env.chmod(0o620)
    run = stack.ctl("watchdog")
    assert run.returncode == 2 and "lets group or others write" in run.stderr, run
    stack.env.chmod(0o600)

    stack.env.parent.chmod(0o777)
    run = stack.ctl("status")
    assert run.returncode == 2 and str(stack.env.parent) in run.stderr, run
    stack.env.parent.chmod(0o700)

    link = stack.dir / "etc" / "link.env"
    link.symlink_to(stack.env)
    run = subprocess.run(
        ["sh", str(CTL), "-e", str(link), "status"], capture_output=True, text=True
    )
    assert run.returncode == 2 and "symbolic link" in run.stderr, run

    os.chown(stack.compose_file, 999, 999)
    run = stack.ctl("up")
    assert run.returncode == 2 and str(stack.compose_file) in run.stderr, run
    assert stack.status() == "", "compose ran with a compose file another uid owns"


def test_backup_tool_refuses_a_config_another_uid_could_write(tmp_path: Path) -> None:
    """files/backup/pgsteady-backup checks its config and its own modules before using them."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    install_tool(bin_dir)
    marker = tmp_path / "ran"
    config = tmp_path / "backup.json"
    config.write_text(
        json.dumps(
            {
                "container": "none-such",
                "databases": ["app"],
                "backup_dir": str(tmp_path / "backups"),
                "keep_days": 1,
                "keep_weeks": 0,
                "keep_months": 0,
                "docker": f"/bin/sh -c 'touch {marker}'",
                "on_failure_command": f"touch {marker}",
                "compose_project": "x",
            }
        )
    )
    config.chmod(0o600)
    os.chown(config, 999, 999)

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["python3", str(bin_dir / "pgsteady-backup"), "backup", "--config", str(config)],
            capture_output=True,
            text=True,
            timeout=60,
        )

    res = run()
    assert res.returncode == 2 and "refusing" in res.stderr and "uid 999" in res.stderr, res
    assert not marker.exists(), "root ran a command from a config uid 999 owns"
    os.chown(config, 0, 0)
    (bin_dir / "backuptool.zip").chmod(0o666)
    res = run()
    assert res.returncode == 2 and "backuptool.zip" in res.stderr, res
    assert not marker.exists()
    # the backup directory root restores from, and its parents, are checked too
    (bin_dir / "backuptool.zip").chmod(0o644)
    shelf = tmp_path / "shared"
    shelf.mkdir()
    shelf.chmod(0o777)  # a parent another uid may write: it could swap the backups dir
    (shelf / "backups").mkdir(mode=0o700)
    cfg = json.loads(config.read_text())
    cfg["backup_dir"] = str(shelf / "backups")
    config.write_text(json.dumps(cfg))
    res = run()
    assert res.returncode == 2 and "backup directory" in res.stderr, res
    assert str(shelf) in res.stderr and not marker.exists()
    shelf.chmod(0o755)
    res = run()  # trusted now: the tool runs (and fails on the missing container)
    assert "refusing" not in res.stderr, res
