"""Backups end to end: real cron makes a verified backup; make backup/restore/restore-drill."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.stack import REPO, Stack, docker

pytestmark = pytest.mark.timeout(900)

TABLES = {
    "customers": "SELECT g, 'name ' || g, now() FROM generate_series(1, 5000) g",
    "orders": "SELECT g, g % 5000 + 1, (g * 7) % 1000 FROM generate_series(1, 20000) g",
}


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    """A stack whose backup job runs every minute through the real cron."""
    s = Stack(data={"backup_schedule": "* * * * *", "postgres_restore_on_empty": True})
    result = s.deploy()
    if result.returncode != 0:
        s.destroy()
        pytest.fail(result.output[-4000:])
    yield s
    s.destroy()


def make(target: str, stack: Stack, **args: str) -> subprocess.CompletedProcess[str]:
    extra = [f"{k}={v}" for k, v in args.items()]
    return subprocess.run(
        ["make", "-s", target, f"INVENTORY={stack.inventory}", *extra],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )


def table_checksums(stack: Stack, db: str) -> dict[str, str]:
    return {
        t: stack.psql(f"SELECT md5(string_agg(x::text, ',' ORDER BY x::text)) FROM {t} x", db)
        for t in TABLES
    }


def status(stack: Stack) -> dict:
    return json.loads((stack.app_dir / "backups" / "status.json").read_text())


def test_cron_produces_a_verified_backup(stack: Stack) -> None:
    entry = f"/etc/cron.d/pgsteady-backup-{stack.name}"
    assert "* * * * * root /usr/bin/python3" in Path(entry).read_text()
    deadline = time.monotonic() + 150
    status_file = stack.app_dir / "backups" / "status.json"
    while not (status_file.exists() and status(stack).get("last_success")):
        assert time.monotonic() < deadline, "cron made no successful backup within 150 s"
        time.sleep(3)
    success = status(stack)["last_success"]
    assert success["size_bytes"] > 0
    backups = stack.app_dir / "backups"
    assert oct(backups.stat().st_mode & 0o777) == "0o700"
    dumps = sorted(p for p in (backups / "last").glob("app-*.dump") if not p.is_symlink())
    assert dumps, list(backups.rglob("*"))
    assert oct(dumps[-1].stat().st_mode & 0o777) == "0o600"
    assert (dumps[-1].parent / (dumps[-1].name + ".sha256")).exists()
    verify = make("backup", stack)  # an on-demand run next to the scheduled ones
    assert verify.returncode == 0, verify.stdout[-2000:] + verify.stderr[-2000:]


def test_round_trip_restore_into_a_new_database(stack: Stack) -> None:
    with stack.connect() as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE customers (id int PRIMARY KEY, name text, since timestamptz)")
        cur.execute("CREATE TABLE orders (id int PRIMARY KEY, customer int, cents int)")
        for table, select in TABLES.items():
            cur.execute(f"INSERT INTO {table} {select}")
    before = table_checksums(stack, "app")
    backup = make("backup", stack)
    assert backup.returncode == 0, backup.stdout[-2000:] + backup.stderr[-2000:]
    restore = make("restore", stack, TARGET_DB="app_copy")
    assert restore.returncode == 0, restore.stdout[-3000:] + restore.stderr[-2000:]
    assert table_checksums(stack, "app_copy") == before
    assert stack.psql("SELECT pg_catalog.pg_get_userbyid(datdba) FROM pg_database "
                      "WHERE datname = 'app_copy'") == "app"  # fmt: skip
    # Without FORCE an existing database is never overwritten.
    again = make("restore", stack, TARGET_DB="app")
    assert again.returncode != 0
    assert table_checksums(stack, "app") == before


def test_restore_drill_compares_row_counts(stack: Stack) -> None:
    drill = make("restore-drill", stack)
    assert drill.returncode == 0, drill.stdout[-3000:] + drill.stderr[-2000:]
    result = status(stack)["drill"]
    assert result["ok"] is True
    scratch = stack.psql(
        "SELECT count(*) FROM pg_database WHERE datname LIKE 'pgsteady\\_restore\\_%'"
    )
    assert scratch == "0"


def test_container_down_is_a_clear_error_and_the_next_run_works(stack: Stack) -> None:
    ctl = str(stack.app_dir / "bin" / "pgsteady-ctl")
    subprocess.run([ctl, "down"], check=True, capture_output=True)
    try:
        failed = make("backup", stack)
        assert failed.returncode != 0
        assert stack.container in failed.stdout + failed.stderr
        assert stack.container in status(stack)["last_error"]["message"]
    finally:
        subprocess.run([ctl, "up"], check=True, capture_output=True)
    ok = make("backup", stack)
    assert ok.returncode == 0, ok.stdout[-2000:] + ok.stderr[-2000:]
    assert status(stack)["last_run"]["ok"] is True


def test_a_corrupted_backup_is_caught_by_verify_and_the_drill(stack: Stack) -> None:
    last = stack.app_dir / "backups" / "last"
    newest = max(p for p in last.glob("app-*.dump") if not p.is_symlink())
    data = bytearray(newest.read_bytes())
    data[len(data) // 2] ^= 0xFF
    newest.write_bytes(bytes(data))
    tool = [
        "/usr/bin/python3", str(stack.app_dir / "bin" / "pgsteady-backup"), "verify",
        "--config", str(stack.app_dir / "etc" / "backup.json"),
    ]  # fmt: skip
    verify = subprocess.run(tool, capture_output=True, text=True)
    assert verify.returncode != 0
    assert "sha256" in verify.stdout + verify.stderr
    drill = make("restore-drill", stack)
    assert drill.returncode != 0
    assert status(stack)["drill"]["ok"] is False
    # A fresh backup makes the newest good again.
    assert make("backup", stack).returncode == 0
    assert subprocess.run(tool, capture_output=True).returncode == 0


def test_restore_on_empty_brings_the_data_back(stack: Stack) -> None:
    """Lose the data volume; the next converge starts from the newest backup."""
    before = table_checksums(stack, "app")
    backup = make("backup", stack)
    assert backup.returncode == 0, backup.stdout[-2000:] + backup.stderr[-2000:]
    (stack.app_dir / ".stopped").touch()  # keep the watchdog out of the way meanwhile
    docker("rm", "-f", "-v", stack.container)
    docker("volume", "rm", f"{stack.name}_pgdata")
    result = stack.deploy()
    assert result.returncode == 0, result.output[-4000:]
    assert table_checksums(stack, "app") == before
    logs = docker("logs", stack.container).stdout + docker("logs", stack.container).stderr
    # pgBackRest is on by default and the deploy took a first full backup: the entrypoint
    # prefers it (newest backup + the whole archive) over the pg_dump backups
    assert "restore-on-empty: restored from pgBackRest up to the end of its archive" in logs
    # The app role logs in with the current secret, and owns its database again.
    with stack.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM orders")
        assert cur.fetchone() == (20000,)


def test_a_converge_replaces_the_old_per_module_tool_and_the_next_changes_nothing(
    stack: Stack,
) -> None:
    """A host of the old layout (backup_tool.py, restore_tool.py, retention.py in bin/):
    one converge leaves only the wrapper and the zip, the tool runs from the zip, and a
    second converge uploads the same zip bytes again, i.e. changes nothing."""
    bin_dir = stack.app_dir / "bin"
    old = ("backup_tool.py", "restore_tool.py", "retention.py")
    for name in old:
        (bin_dir / name).write_text("raise SystemExit('the old module ran')\n")
        (bin_dir / name).chmod(0o644)
    zip_before = (bin_dir / "backuptool.zip").read_bytes()
    result = stack.deploy()
    assert result.returncode == 0, result.output[-4000:]
    assert not [name for name in old if (bin_dir / name).exists()]
    assert (bin_dir / "backuptool.zip").read_bytes() == zip_before
    again = stack.deploy()
    assert again.returncode == 0, again.output[-4000:]
    assert again.changed == 0, again.changed_operations()
    run = make("backup", stack)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
