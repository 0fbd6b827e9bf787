"""make status / make monitor against a real converged stack, compared with direct queries."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.support.sshd import SSHD, Sshd
from tests.support.stack import REPO, Stack, docker, free_port

pytestmark = pytest.mark.timeout(600)
PYTHON = REPO / ".venv" / "bin" / "python"


def make_status(inventory: Path) -> subprocess.CompletedProcess[str]:
    """The real ``make status INVENTORY=... JSON=1`` (-s: no recipe echo; -o: never
    rebuild the virtualenv from inside a test)."""
    return subprocess.run(
        ["make", "-s", "-o", ".venv/.installed", "status", f"INVENTORY={inventory}", "JSON=1"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def monitor(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(PYTHON), "-m", "pgsteady.monitor", *args],
        cwd=REPO,
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "120"},
    )


def backup(stack: Stack) -> None:
    tool, config = stack.app_dir / "bin" / "pgsteady-backup", stack.app_dir / "etc/backup.json"
    subprocess.run(
        ["python3", str(tool), "backup", "--config", str(config)],
        check=True,
        capture_output=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def after_backup(shared_stack: Stack) -> Iterator[Stack]:
    """The e2e conftest's shared stack (no deploy of its own) with one backup taken;
    handed on running (the module's last test stops it)."""
    backup(shared_stack)
    yield shared_stack
    ctl = shared_stack.app_dir / "bin" / "pgsteady-ctl"
    subprocess.run(["sh", str(ctl), "up"], check=True, capture_output=True, timeout=600)
    shared_stack.wait_healthy()


def test_make_status_json_matches_direct_queries(after_backup: Stack) -> None:
    stack = after_backup
    proc = make_status(stack.inventory)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    doc = json.loads(proc.stdout)
    assert doc["schema"] == 1 and doc["ok"] is True
    (host,) = doc["hosts"]
    assert host["host"] == "@local" and host["status"] == "ok", host["problems"]
    assert host["settings"]["container"] == stack.container

    info = stack.inspect()
    c = host["container"]
    assert (c["state"], c["health"]) == ("running", "healthy")
    assert c["restart_count"] == info["RestartCount"]
    assert c["image"] == info["Config"]["Image"]

    pg = host["postgres"]
    assert pg["up"] and pg["version"] == stack.psql("SHOW server_version").split()[0]
    assert pg["version_num"] == int(stack.psql("SHOW server_version_num"))
    assert pg["connections"]["max"] == int(stack.psql("SHOW max_connections"))
    size = int(stack.psql("SELECT pg_database_size('app')"))
    assert abs(pg["databases"]["app"] - size) <= max(1 << 20, size // 10)
    assert set(pg["databases"]) == {"app", "postgres"}
    assert 0 < pg["cache_hit_ratio"] <= 1 and pg["waiting_locks"] == 0

    data = host["disks"]["data"]
    volume = json.loads(docker("volume", "inspect", f"{stack.name}_pgdata").stdout)[0]
    assert data["path"] == volume["Mountpoint"]
    free = shutil.disk_usage(volume["Mountpoint"]).free
    assert abs(data["free_bytes"] - free) <= max(200 << 20, free // 20)
    assert host["disks"]["backup"]["path"] == str(stack.app_dir / "backups")

    status = json.loads((stack.app_dir / "backups" / "status.json").read_text())
    b = host["backup"]
    assert b["status_found"] and b["last_run_ok"] is True
    recorded = datetime.fromisoformat(status["last_success"]["time"])
    assert datetime.fromisoformat(b["last_success_time"]) == recorded
    assert 0 <= b["last_success_age_seconds"] <= (datetime.now(UTC) - recorded).total_seconds() + 5
    assert b["last_success_size_bytes"] == status["last_success"]["size_bytes"]


def test_unreachable_host_is_reported_and_the_local_one_still_shown(after_backup: Stack) -> None:
    stack = after_backup
    inventory = stack.dir / "with-unreachable.py"
    local = stack.host_data()
    dead = {"ssh_port": free_port(), "ssh_connect_timeout": 2, "ssh_user": "nobody"}
    inventory.write_text(f"hosts = [('@local', {local!r}), ('127.0.0.1', {dead!r})]\n")

    proc = monitor("--inventory", str(inventory), "--json", "--timeout", "20")
    assert proc.returncode == 1, proc.stderr
    local_host, remote = json.loads(proc.stdout)["hosts"]
    assert local_host["status"] == "ok" and local_host["postgres"]["up"]
    assert remote["host"] == "127.0.0.1" and remote["status"] == "unreachable"
    assert "ssh failed" in remote["error"] and "refused" in remote["error"]

    table = monitor("--inventory", str(inventory))
    assert table.returncode == 1 and "Traceback" not in table.stderr
    assert "UNREACHABLE" in table.stdout and "Connection refused" in table.stdout
    assert stack.container in table.stdout


@pytest.mark.skipif(not Path(SSHD).exists(), reason="needs OpenSSH's sshd")
def test_status_over_ssh_matches_the_local_view(after_backup: Stack) -> None:
    stack = after_backup
    sshd = Sshd().start()
    try:
        inventory = stack.dir / "over-ssh.py"
        data = {**stack.host_data(), **sshd.host_data()}
        inventory.write_text(f"hosts = [('127.0.0.1', {data!r})]\n")
        over_ssh = monitor("--inventory", str(inventory), "--json")
        local = monitor("--inventory", str(stack.inventory), "--json")
    finally:
        sshd.stop()
    assert over_ssh.returncode == 0, over_ssh.stdout[-3000:] + over_ssh.stderr
    (remote,) = json.loads(over_ssh.stdout)["hosts"]
    (here,) = json.loads(local.stdout)["hosts"]
    assert remote["host"] == "127.0.0.1" and remote["status"] == "ok", remote["problems"]
    assert remote["postgres"]["version"] == here["postgres"]["version"]
    assert remote["postgres"]["databases"].keys() == here["postgres"]["databases"].keys()
    assert remote["container"]["started_at"] == here["container"]["started_at"]
    assert remote["backup"]["last_success_time"] == here["backup"]["last_success_time"]


def test_live_mode_renders_each_refresh_then_exits(after_backup: Stack) -> None:
    proc = monitor(
        "--inventory", str(after_backup.inventory), "--live", "--iterations", "2",
        "--interval", "1",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("pgsteady monitor · refresh #") == 2
    assert proc.stdout.count(after_backup.container) >= 2


def test_live_mode_quits_on_q_from_a_pipe(after_backup: Stack) -> None:
    proc = monitor("--inventory", str(after_backup.inventory), "--live", stdin="q\n")
    assert proc.returncode == 0 and proc.stdout.count("refresh #") == 1


def test_stopped_stack_makes_status_fail(after_backup: Stack) -> None:
    """Last in the module: it leaves the stack stopped (the fixture starts it again)."""
    ctl = after_backup.app_dir / "bin" / "pgsteady-ctl"
    subprocess.run(["sh", str(ctl), "down"], check=True, capture_output=True, timeout=120)
    proc = make_status(after_backup.inventory)
    assert proc.returncode != 0 and "Error 1" in proc.stderr  # make turns exit 1 into 2
    (host,) = json.loads(proc.stdout)["hosts"]
    assert host["status"] == "critical" and host["container"]["state"] == "exited"
    assert host["container"]["stopped_on_purpose"] is True
    assert host["postgres"]["up"] is False
    assert any("stopped on purpose" in p for p in host["problems"])


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
