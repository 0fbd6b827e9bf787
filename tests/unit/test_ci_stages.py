"""pgsteady.ci without hosts: SSH pinning, the deploy-state guard, secrets, JUnit, stages."""

from __future__ import annotations

import os
import stat
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from pgsteady import ci
from pgsteady.ca_store import load_or_create_ca
from pgsteady.inventory import InventoryHost


def ssh_host(tmp_path: Path, **data: object) -> InventoryHost:
    key = tmp_path / "id"
    key.write_text("key\n")
    key.chmod(0o600)
    known = tmp_path / "known_hosts"
    known.write_text("db1 ssh-ed25519 AAAA\n")
    base = {"ssh_key": str(key), "ssh_known_hosts_file": str(known)}
    return InventoryHost("db1.example", {**base, "ssh_strict_host_key_checking": "yes", **data})


def test_pinned_ssh_hosts_and_local_hosts_pass(tmp_path: Path) -> None:
    local = InventoryHost("@local", {})
    assert ci.ssh_problems([ssh_host(tmp_path), local]) == []


@pytest.mark.parametrize("checking", [None, "accept-new", "no", False])
def test_a_host_key_that_is_not_pinned_is_refused(tmp_path: Path, checking: object) -> None:
    (problem,) = ci.ssh_problems([ssh_host(tmp_path, ssh_strict_host_key_checking=checking)])
    assert problem.startswith(f"db1.example: ssh_strict_host_key_checking = {checking!r}")


def test_a_readable_key_or_missing_known_hosts_is_refused(tmp_path: Path) -> None:
    h = ssh_host(tmp_path, ssh_known_hosts_file=str(tmp_path / "absent"))
    (tmp_path / "id").chmod(0o644)
    problems = ci.ssh_problems([h])
    assert any("is mode 0644" in p and "0600" in p for p in problems), problems
    assert any("ssh_known_hosts_file" in p and "no such file" in p for p in problems), problems


def test_strict_checking_without_a_known_hosts_file_is_refused(tmp_path: Path) -> None:
    h = ssh_host(tmp_path)
    del h.data["ssh_known_hosts_file"]
    (problem,) = ci.ssh_problems([h])
    assert problem.startswith("db1.example: ssh_known_hosts_file is not set"), problem
    assert "~/.ssh/known_hosts" in problem


def test_state_directories_follow_the_deploy(tmp_path: Path) -> None:
    inventory = tmp_path / "staging.py"
    hosts = [InventoryHost("a", {}), InventoryHost("b", {"postgres_tls_ca_dir": "/srv/ca"})]
    assert ci.state_directories(inventory, hosts) == [
        tmp_path / ".pgsteady" / "staging",
        Path("/srv/ca"),
    ]


def test_new_deploy_state_is_found_and_undone(tmp_path: Path) -> None:
    state = tmp_path / ".pgsteady" / "inv"
    before = ci.snapshot([state])
    load_or_create_ca(state, "inv")  # what a dry run on a runner without the state does
    after = ci.snapshot([state])
    assert ci.state_changes(before, after) == [state / "ca.crt", state / "ca.key"]
    ci.undo_new(before, after)
    assert not (tmp_path / ".pgsteady").exists()


def test_restored_state_is_no_change_and_is_never_removed(tmp_path: Path) -> None:
    state = tmp_path / ".pgsteady" / "inv"
    load_or_create_ca(state, "inv")
    before = ci.snapshot([state])
    load_or_create_ca(state, "inv")
    assert ci.state_changes(before, ci.snapshot([state])) == []
    passphrase = state / "pgbackrest" / "backup1" / "main.pass"
    passphrase.parent.mkdir(parents=True)
    passphrase.write_text("x\n")
    after = ci.snapshot([state])
    assert ci.state_changes(before, after) == [passphrase]
    ci.undo_new(before, after)
    assert not passphrase.parent.exists() and (state / "ca.key").exists()


def test_secret_texts_become_private_files_for_the_run_only() -> None:
    env = {"PGSTEADY_SSH_PRIVATE_KEY": "-----BEGIN KEY-----\nabc\n", "PATH": "/bin"}
    with ci.secret_files(env):
        assert "PGSTEADY_SSH_PRIVATE_KEY" not in env  # children never see the text
        key = Path(env["PGSTEADY_SSH_KEY_FILE"])
        assert key.read_text() == "-----BEGIN KEY-----\nabc\n"
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
        assert stat.S_IMODE(key.parent.stat().st_mode) == 0o700
        assert key.parent.stat().st_uid == os.geteuid()
        assert "PGSTEADY_SSH_KNOWN_HOSTS_FILE" not in env
    assert not key.exists() and "PGSTEADY_SSH_KEY_FILE" not in env
    assert env == {"PATH": "/bin"}


def test_junit_gets_a_case_per_stage_beside_verify(tmp_path: Path) -> None:
    junit = tmp_path / "verify.xml"
    junit.write_text(
        '<testsuites><testsuite name="@local"><testcase name="x"/></testsuite></testsuites>'
    )
    run = ci.Run(
        [
            ci.StageResult("settings", "failed", "db1: postgres_port = 70000: too big\nmore"),
            ci.StageResult("deploy", "skipped", "an earlier stage failed"),
        ]
    )
    ci.add_junit_suite(junit, run)
    suites = {s.get("name"): s for s in ET.parse(junit).getroot().iter("testsuite")}
    assert set(suites) == {"@local", "pgsteady ci"}
    cases = {c.get("name"): c for c in suites["pgsteady ci"].iter("testcase")}
    failure = cases["settings"].find("failure")
    assert failure is not None and failure.get("message") == "db1: postgres_port = 70000: too big"
    assert cases["deploy"].find("skipped") is not None
    assert suites["pgsteady ci"].get("failures") == "1"


def test_the_first_failing_stage_stops_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    called = []

    def passes(self: ci.Pipeline) -> None:
        called.append("ok")

    def fails(self: ci.Pipeline) -> None:
        raise ci.StageFailed("db1: postgres_port = 70000")

    for name in ci.STAGES:
        monkeypatch.setattr(ci.Pipeline, "stage_" + name.replace("-", "_"), passes)
    monkeypatch.setattr(ci.Pipeline, "stage_settings", fails)
    run = ci.Pipeline(Path("inv.py"), None, False).execute()
    assert [(r.name, r.outcome) for r in run.results] == [
        ("ssh", "passed"),
        ("settings", "failed"),
        ("dry-run", "skipped"),
        ("state", "skipped"),
        ("deploy", "skipped"),
        ("verify", "skipped"),
    ]
    assert called == ["ok"] and run.failed is not None and run.failed.name == "settings"


def test_a_secret_in_a_refused_setting_reaches_neither_log_nor_junit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The real settings stage on @local (read-only facts), then the JUnit file and summary."""
    token = "SECRETTOKEN-9f8e7d"
    data = {
        "watchdog_on_failure_command": f"curl https://hooks.slack.com/services/T/B/{token}%20x",
        "postgres_port": 70000,
    }
    for name in set(ci.STAGES) - {"settings"}:
        monkeypatch.setattr(ci.Pipeline, "stage_" + name.replace("-", "_"), lambda self: None)
    pipeline = ci.Pipeline(tmp_path / "inv.py", None, False, [InventoryHost("@local", data)])
    junit = tmp_path / "ci.xml"
    assert ci.report(pipeline.execute(), junit) == 1
    shown = capsys.readouterr().out + junit.read_text()
    assert token not in shown
    assert "watchdog_on_failure_command = <redacted, " in shown
    assert "postgres_port = 70000" in shown
