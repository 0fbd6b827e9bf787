"""An isolated pgsteady stack on this machine, converged with the real pyinfra CLI.

Each Stack has its own app_dir, compose project, port and inventory file, so tests
can share one Docker engine. ``destroy()`` removes the container, volume, image alias
and files it created.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg2

from tests.support.ports import free_port

REPO = Path(__file__).resolve().parents[2]
PYINFRA = REPO / ".venv" / "bin" / "pyinfra"
DOCKER = "/usr/bin/docker" if Path("/usr/bin/docker").exists() else "docker"
ROOT = Path(os.environ.get("PGSTEADY_E2E_ROOT", "/tmp/pgsteady-e2e"))


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([DOCKER, *args], capture_output=True, text=True, check=check)


@dataclass
class DeployResult:
    """One pyinfra run: exit code, output and the Grand total row."""

    returncode: int
    output: str
    success: int = 0
    errors: int = 0
    no_change: int = 0
    seconds: float = 0.0

    @property
    def changed(self) -> int:
        """Operations that changed something (the Success column)."""
        return self.success

    def changed_operations(self) -> list[str]:
        """Names of the operations that reported a change."""
        names = []
        for line in self.output.splitlines():
            m = re.match(r"^\s{4}(\S.*?)\s{2,}1\s+1\s+-\s+-\s*$", line)
            if m:
                names.append(m.group(1))
        return names


def parse_grand_total(output: str) -> tuple[int, int, int]:
    """(success, errors, no_change) from pyinfra's results table; '-' counts as 0."""
    for line in output.splitlines():
        if line.strip().startswith("Grand total"):
            cols = line.split()[2:]
            nums = [0 if c == "-" else int(c) for c in cols]
            # Hosts, Success, Error, No Change
            return nums[1], nums[2], nums[3]
    raise AssertionError(f"no Grand total row in pyinfra output:\n{output[-3000:]}")


@dataclass
class Stack:
    """One isolated pgsteady deployment on @local."""

    name: str = field(default_factory=lambda: "pgse" + secrets.token_hex(3))
    port: int = field(default_factory=free_port)
    data: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.postgres_exporter_port = free_port()
        self.node_exporter_port = free_port()
        self.pgbouncer_port = free_port()
        self.dir = ROOT / self.name
        self.app_dir = self.dir / "app"
        self.inventory = self.dir / "inventory.py"
        self.dir.mkdir(parents=True, exist_ok=True)

    @property
    def container(self) -> str:
        return f"{self.name}-postgres"

    def host_data(self, **extra: Any) -> dict[str, Any]:
        data = {
            "app_dir": str(self.app_dir),
            "compose_project": self.name,
            "postgres_port": self.port,
            # Parallel stacks never share an exporter port (metrics_enabled by default).
            "postgres_exporter_port": self.postgres_exporter_port,
            "node_exporter_port": self.node_exporter_port,
            "pgbouncer_port": self.pgbouncer_port,  # pgbouncer_enabled by default
            "postgres_image_source": "debian",
            "postgres_memory_limit": "1GB",
            "postgres_cpus": 1,
            "healthcheck_interval": "2s",
            "healthcheck_start_period": "30s",
            "backup_schedule": "15 2 * * *",
        }
        data.update(self.data)
        data.update(extra)
        return data

    def write_inventory(self, **extra: Any) -> Path:
        data = self.host_data(**extra)
        self.inventory.write_text(f"hosts = [('@local', {data!r})]\n")
        return self.inventory

    def deploy(self, *args: str, deploy_file: str = "deploy.py", **extra: Any) -> DeployResult:
        """Run ``pyinfra -y INVENTORY deploy.py`` from the repository, as operators do."""
        self.write_inventory(**extra)
        started = time.monotonic()
        proc = subprocess.run(
            [str(PYINFRA), "-y", *args, str(self.inventory), deploy_file],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=1200,
        )
        output = proc.stdout + proc.stderr
        result = DeployResult(proc.returncode, output, seconds=time.monotonic() - started)
        if proc.returncode == 0:
            result.success, result.errors, result.no_change = parse_grand_total(output)
        return result

    # --- looking at the running stack ----------------------------------------------
    def inspect(self) -> dict[str, Any]:
        return json.loads(docker("inspect", self.container).stdout)[0]

    def secret(self, name: str) -> str:
        return (self.app_dir / "secrets" / name).read_text().strip()

    @property
    def ca_file(self) -> Path:
        return self.app_dir / "tls" / "ca.crt"

    def connect(self, user: str = "app", dbname: str = "app", timeout: int = 3):
        """The app role over TCP and TLS, verifying the server as the README says (the
        superuser may not log in over TCP: use :meth:`psql`)."""
        return psycopg2.connect(
            host="127.0.0.1",
            port=self.port,
            user=user,
            password=self.secret(f"{user}_password" if user != "app" else "app_password"),
            dbname=dbname,
            connect_timeout=timeout,
            sslmode="verify-full",
            sslrootcert=str(self.ca_file),
        )

    def psql(self, sql: str, db: str = "postgres") -> str:
        """Run SQL as the superuser inside the container; stripped unaligned output."""
        proc = docker(
            "exec", "-u", "postgres", self.container, "psql", "-X", "-A", "-t", "-q",
            "-v", "ON_ERROR_STOP=1", "-d", db, "-c", sql,
        )  # fmt: skip
        return proc.stdout.strip()

    def postmaster_start(self) -> str:
        return self.psql("SELECT pg_postmaster_start_time()")

    def wait_until_accepting(self, timeout: float = 120) -> float:
        """Seconds until a real query over TCP succeeds (the app's view of 'up')."""
        started = time.monotonic()
        deadline = started + timeout
        while True:
            try:
                with self.connect(timeout=1) as conn, conn.cursor() as cur:
                    cur.execute("SELECT 1")
                return time.monotonic() - started
            except psycopg2.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def wait_healthy(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.inspect()["State"]
            if state.get("Running") and state.get("Health", {}).get("Status") == "healthy":
                return
            time.sleep(0.5)
        raise AssertionError(f"{self.container} not healthy: {self.inspect()['State']}")

    def host_pid(self) -> int:
        """The postmaster's PID on the host: PID 1 inside the container, or its only child
        when an init runs as PID 1 (``init: true``, which pgBackRest archiving needs)."""
        pid = int(self.inspect()["State"]["Pid"])
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            return pid
        if cmdline.startswith(b"/sbin/docker-init") and children:
            return int(children[0])
        return pid

    # --- cleanup ------------------------------------------------------------------
    def scheduled_files(self) -> list[Path]:
        """This stack's cron.d entries (the watchdog and backup jobs)."""
        return sorted(Path("/etc/cron.d").glob(f"pgsteady-*-{self.name}"))

    def stop_watchdog(self) -> None:
        """Keep the watchdog away: the .stopped marker of a deliberate stop (a watcher of
        this minute, already running, honours it), then no more jobs."""
        if self.app_dir.is_dir():
            (self.app_dir / ".stopped").touch()
        for cron in self.scheduled_files():
            cron.unlink()

    def destroy(self) -> None:
        # The watchdog first: it would otherwise bring the container back.
        self.stop_watchdog()
        # A chaos test may have restarted dockerd: wait for it rather than leak the stack.
        deadline = time.monotonic() + 90
        while docker("info", check=False).returncode != 0 and time.monotonic() < deadline:
            time.sleep(1)
        docker("rm", "-f", "-v", self.container, check=False)
        for exporter in ("postgres-exporter", "node-exporter", "pgbouncer"):
            docker("rm", "-f", "-v", f"{self.name}-{exporter}", check=False)
        docker("volume", "rm", "-f", f"{self.name}_pgdata", check=False)
        docker("volume", "rm", "-f", f"{self.name}_pgrun", check=False)
        # A side-by-side point-in-time restore (make restore-pitr) left by a failed test.
        docker("rm", "-f", "-v", f"{self.container}-pitr", check=False)
        docker("volume", "rm", "-f", f"{self.container}-pitr", check=False)
        docker("network", "rm", f"{self.name}_default", check=False)
        docker("rmi", f"pgsteady/{self.name}-postgres:17", check=False)
        docker("rmi", f"pgsteady/{self.name}-postgres:15", check=False)
        shutil.rmtree(self.dir, ignore_errors=True)

    def exists_anywhere(self) -> list[str]:
        """What of this stack exists on the host (for 'nothing was created' checks)."""
        found = []
        if self.app_dir.exists():
            found.append(f"directory {self.app_dir}")
        if docker("inspect", self.container, check=False).returncode == 0:
            found.append(f"container {self.container}")
        if docker("volume", "inspect", f"{self.name}_pgdata", check=False).returncode == 0:
            found.append(f"volume {self.name}_pgdata")
        found += [str(p) for p in self.scheduled_files()]
        return found
