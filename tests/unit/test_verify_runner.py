"""pgsteady.verify: inventory → testinfra adapter, fix lines, schedule periods, results."""

from __future__ import annotations

import shlex
from datetime import timedelta
from pathlib import Path

import pytest

from pgsteady.inventory import InventoryHost, load_inventory
from pgsteady.settings import HostFacts
from pgsteady.verify import (
    BACKUP_GRACE,
    CheckFailed,
    CheckResult,
    Fixes,
    VerifyContext,
    backup_deadline,
    check,
    check_name,
    fix_line,
    fix_prefix,
    merge_junit,
    pytest_command,
    ssh_config,
    summary_rows,
)
from pgsteady.verify import (
    max_gap as schedule_max_gap,
)

SSH_HOST = InventoryHost(
    "db1.example.internal",
    {
        "ssh_user": "deploy",
        "ssh_port": 2222,
        "ssh_key": "/keys/id",
        "ssh_known_hosts_file": "/keys/known",
        "ssh_strict_host_key_checking": "yes",
        "_sudo": True,
        "app_dir": "/srv/pg",
    },
)
LOCAL = InventoryHost("@local", {"app_dir": "/srv/pg"})


# --- inventory → testinfra ---------------------------------------------------------------


def test_local_host_runs_testinfra_locally() -> None:
    cmd = pytest_command(LOCAL, "/tmp/cfg", None)
    assert "--hosts=local://" in cmd
    assert not any(a.startswith("--ssh-config") for a in cmd)
    assert fix_prefix(LOCAL) == ()


def test_ssh_host_gets_spec_config_and_junit() -> None:
    cmd = pytest_command(SSH_HOST, "/tmp/cfg", "/tmp/out.xml")
    assert "--hosts=ssh://deploy@db1.example.internal:2222?sudo=true" in cmd
    assert "--ssh-config=/tmp/cfg" in cmd
    assert "--junitxml=/tmp/out.xml" in cmd
    assert "junit_suite_name=db1.example.internal" in cmd


def test_ssh_config_carries_key_port_and_known_hosts() -> None:
    text = ssh_config([LOCAL, SSH_HOST])
    assert text.startswith("Host db1.example.internal\n")
    for line in (
        "User deploy",
        "Port 2222",
        "IdentityFile /keys/id",
        "IdentitiesOnly yes",
        "UserKnownHostsFile /keys/known",
        "StrictHostKeyChecking yes",
        "BatchMode yes",
    ):
        assert f"  {line}\n" in text
    assert "@local" not in text
    assert "ControlPath" not in text
    assert "  ControlPath /run/x/cm-%C\n" in ssh_config([SSH_HOST], control_dir="/run/x")


def test_inventory_file_to_spec(tmp_path: Path) -> None:
    inv = tmp_path / "inv.py"
    inv.write_text(
        "hosts = [('10.0.0.5', {'ssh_user': 'root', 'ssh_port': 22, 'compose_project': 'x'})]\n"
    )
    [host] = load_inventory(inv, cwd=tmp_path)
    assert host.testinfra_spec() == "ssh://root@10.0.0.5:22"
    assert host.data["compose_project"] == "x"


def test_context_round_trips_and_builds_the_same_settings() -> None:
    facts = HostFacts(ram_mb=4096, cpus=2, has_systemd=True)
    ctx = VerifyContext("db1", "inventory/x.py", {"app_dir": "/srv/pg"}, facts, ("ssh", "db1"))
    again = VerifyContext.load(ctx.dump())
    assert again == ctx
    assert again.settings == ctx.settings
    assert again.settings.host_ram_mb == 4096 and again.settings.host_has_systemd


# --- fix lines ---------------------------------------------------------------------------


def test_check_raises_with_what_and_fix() -> None:
    check(True, "never shown")
    with pytest.raises(CheckFailed) as err:
        check(0, "mode is 0644", "chmod 600 /x")
    assert (err.value.what, err.value.fix) == ("mode is 0644", "chmod 600 /x")
    assert isinstance(err.value, AssertionError)


def test_fixes_local_and_remote() -> None:
    local = Fixes("inventory/local.py")
    assert local.deploy == "make deploy INVENTORY=inventory/local.py"
    assert local.on_host("chmod 600 /a b") == "chmod 600 /a b"
    remote = Fixes("inventory/production.py", fix_prefix(SSH_HOST))
    argv = shlex.split(remote.on_host("chown 1 /x && chmod 600 /x"))
    assert argv[:5] == ["ssh", "-p", "2222", "--", "deploy@db1.example.internal"]
    assert shlex.split(argv[5]) == ["sudo", "sh", "-c", "chown 1 /x && chmod 600 /x"]
    plain = Fixes("inv.py", ("ssh", "db2"))
    assert plain.on_host("a && b") == "ssh db2 'a && b'"


def test_fix_line_is_one_line() -> None:
    r = CheckResult("db1", "security", "secret_files", "failed", "a\n  b", "chmod 600 /x")
    assert fix_line(r) == "FAIL [db1] security/secret_files: a b -- fix: chmod 600 /x"


@pytest.mark.parametrize(
    ("path", "function", "params", "expected"),
    [
        ("tests/verify/test_security.py", "test_hba_no_trust", None, ("security", "hba_no_trust")),
        (
            "/r/tests/verify/test_postgres.py",
            "test_config_file_matches",
            {"_testinfra_host": object(), "name": "pg_hba.conf"},
            ("postgres", "config_file_matches[pg_hba.conf]"),
        ),
    ],
)
def test_check_names(path: str, function: str, params: dict | None, expected: tuple) -> None:
    assert check_name(path, function, params) == expected


def test_summary_rows_group_order_and_counts() -> None:
    results = [
        CheckResult("h", "backups", "a", "passed"),
        CheckResult("h", "host", "b", "failed"),
        CheckResult("h", "host", "c", "skipped"),
        CheckResult("h", "host", "d", "passed"),
    ]
    assert summary_rows(results) == [("h", "host", 1, 1, 1), ("h", "backups", 1, 0, 0)]


def test_merge_junit(tmp_path: Path) -> None:
    for name in ("a", "b"):
        (tmp_path / f"{name}.xml").write_text(
            f'<testsuites><testsuite name="{name}" tests="1"><testcase name="t"/>'
            "</testsuite></testsuites>"
        )
    merge_junit([str(tmp_path / "a.xml"), str(tmp_path / "b.xml")], str(tmp_path / "all.xml"))
    text = (tmp_path / "all.xml").read_text()
    assert text.count("<testsuite ") == 2 and 'name="b"' in text


# --- the backup schedule's period ----------------------------------------------------------


@pytest.mark.parametrize(
    ("schedule", "gap"),
    [
        ("15 2 * * *", timedelta(days=1)),
        ("@hourly", timedelta(hours=1)),
        ("*/15 * * * *", timedelta(minutes=15)),
        ("0 1,13 * * *", timedelta(hours=12)),
        ("0 1,5 * * *", timedelta(hours=20)),
        ("0 3 * * mon-fri", timedelta(days=3)),  # Friday 03:00 to Monday 03:00
        ("@weekly", timedelta(days=7)),
        ("@monthly", timedelta(days=31)),
        ("0 0 31 * *", timedelta(days=61)),  # Aug 31 → Oct 31 (September has no 31st)
        ("0 0 1 * 0", timedelta(days=7)),  # cron's OR: the 1st or every Sunday
        ("0 0 29 2 *", timedelta(days=4 * 365 + 1)),
        ("@yearly", timedelta(days=366)),
    ],
)
def test_schedule_max_gap(schedule: str, gap: timedelta) -> None:
    assert schedule_max_gap(schedule) == gap


def test_never_running_schedule_has_no_gap() -> None:
    assert schedule_max_gap("0 0 31 2 *") is None
    assert backup_deadline("0 0 31 2 *") is None


def test_deadline_adds_the_grace() -> None:
    assert backup_deadline("15 2 * * *") == timedelta(days=1) + BACKUP_GRACE
    assert timedelta(hours=1) == BACKUP_GRACE
