"""`make verify` end to end: green on a converged stack, and each fault caught by its check.

One stack (the e2e conftest's shared one). Each fault is injected, `make verify` must fail
exactly the matching checks (with their fix lines) while every other check keeps its
outcome, and the host is restored before the next fault. A final `make deploy` + `make verify` pass.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pgsteady.tls import Authority, issue_server_cert
from tests.support.stack import Stack, docker
from tests.support.verify_run import VerifyRun, make_deploy, make_verify

pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def stack(deployed: Stack) -> Stack:
    """A converged stack of its own (in a full run the shared one, kept beside other
    modules' stacks for many minutes, once never failed its archiving fault), with one
    backup taken as the nightly job would."""
    shared_stack = deployed
    app = shared_stack.app_dir
    backup = subprocess.run(
        [
            "python3",
            f"{app}/bin/pgsteady-backup",
            "backup",
            "--config",
            f"{app}/etc/backup.json",
        ],
        capture_output=True,
        text=True,
    )
    assert backup.returncode == 0, backup.stderr
    return shared_stack


@pytest.fixture(scope="module")
def baseline(stack: Stack) -> VerifyRun:
    run = make_verify(stack.inventory, stack.dir / "baseline.xml")
    assert run.returncode == 0, run.output[-4000:]
    return run


def test_verify_passes_on_a_converged_host(baseline: VerifyRun) -> None:
    assert baseline.total >= 30, baseline.output
    assert not baseline.failed
    assert baseline.junit_cases == baseline.total
    assert baseline.junit_failures == 0
    # The only skips allowed: no NTP client and no systemd to ask (as on the test machines),
    # the off-host repository's server and the cluster groups, which a single host does not
    # have (skipped as "not a cluster member", nothing else).
    allowed = {"host/time_synchronised", "pgbackrest/backup_hosts_server_reads_the_data_read_only"}
    cluster_groups = {"cluster", "etcd", "cluster_tls", "cluster_dcs"}
    single_host = {k for k, why in baseline.skipped.items() if k.split("/")[0] in cluster_groups
                   and why.startswith("not a cluster member")}  # fmt: skip
    assert set(baseline.skipped) - single_host <= allowed, baseline.skipped
    assert "pgsteady verify" in baseline.output  # the summary table


# --- faults ---------------------------------------------------------------------------------


def ctl(st: Stack, *args: str) -> None:
    proc = subprocess.run(
        [f"{st.app_dir}/bin/pgsteady-ctl", *args], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr


def sql(st: Stack, statement: str, db: str = "postgres") -> None:
    st.psql(statement, db=db)


@dataclass
class Fault:
    """How to break the host, which checks must fail, a fix-line fragment, how to undo it."""

    name: str
    expected: set[str]
    fix: str
    break_it: Callable[[Stack], object]
    undo: Callable[[Stack], object]
    allow_new_skips: bool = False


def _conf(st: Stack, name: str) -> Path:
    return st.app_dir / "config" / name


def _saved(st: Stack, key: str) -> Path:
    return st.dir / f"saved-{key}"


def _add_trust(st: Stack) -> None:
    hba = _conf(st, "pg_hba.conf")
    _saved(st, "hba").write_text(hba.read_text())
    hba.write_text(hba.read_text() + "host all all 10.99.0.0/16 trust\n")
    ctl(st, "apply-config")


def _restore_hba(st: Stack) -> None:
    _conf(st, "pg_hba.conf").write_text(_saved(st, "hba").read_text())
    ctl(st, "apply-config")


def _tls(st: Stack) -> tuple[Path, Path]:
    return st.app_dir / "tls" / "server.crt", st.app_dir / "tls" / "private" / "server.key"


def _expiring_cert(st: Stack) -> None:
    """A certificate from the inventory's CA with 5 days left, loaded by the server."""
    ca_dir = st.dir / ".pgsteady" / "inventory"
    ca = Authority((ca_dir / "ca.crt").read_bytes(), (ca_dir / "ca.key").read_bytes())
    cert_path, key_path = _tls(st)
    _saved(st, "crt").write_bytes(cert_path.read_bytes())
    _saved(st, "key").write_bytes(key_path.read_bytes())
    cert, key = issue_server_cert(ca, ["localhost", "127.0.0.1"], now=datetime.now(UTC), days=5)
    cert_path.write_bytes(cert)
    key_path.write_bytes(key)
    ctl(st, "apply-config")


def _restore_cert(st: Stack) -> None:
    cert_path, key_path = _tls(st)
    cert_path.write_bytes(_saved(st, "crt").read_bytes())
    key_path.write_bytes(_saved(st, "key").read_bytes())
    ctl(st, "apply-config")


def _status(st: Stack) -> Path:
    return st.app_dir / "backups" / "status.json"


def _make_stale(st: Stack) -> None:
    text = _status(st).read_text()
    _saved(st, "status").write_text(text)
    status = json.loads(text)
    old = datetime.now(UTC) - timedelta(days=3)
    status["last_success"]["time"] = old.isoformat()
    _status(st).write_text(json.dumps(status))


def _public_port(st: Stack) -> None:
    compose = st.app_dir / "docker-compose.yml"
    _saved(st, "compose").write_text(compose.read_text())
    compose.write_text(compose.read_text().replace(f"127.0.0.1:{st.port}:", f"0.0.0.0:{st.port}:"))
    ctl(st, "up")


def _restore_port(st: Stack) -> None:
    (st.app_dir / "docker-compose.yml").write_text(_saved(st, "compose").read_text())
    ctl(st, "up")


def _newest_dump(st: Stack) -> Path:
    return (st.app_dir / "backups" / "last" / "app-latest.dump").resolve()


def _flip_byte(st: Stack) -> None:
    path = _newest_dump(st)
    with path.open("r+b") as f:
        f.seek(100)
        byte = f.read(1)
        f.seek(100)
        f.write(bytes([byte[0] ^ 0xFF]))


def _chmod(path_of: Callable[[Stack], Path], mode: int) -> Callable[[Stack], None]:
    return lambda st: path_of(st).chmod(mode)


def _kill_repo(st: Stack) -> None:
    """The repository becomes unwritable; WAL is switched until an archive attempt fails."""
    (st.app_dir / "pgbackrest" / "repo1").chmod(0o000)
    query = "SELECT last_failed_time > coalesce(last_archived_time, 'epoch') FROM pg_stat_archiver"
    # An archive-push waits up to pgBackRest's archive-timeout (60 s) for the asynchronous
    # push before it reports the failure: a deadline, not a count of tries.
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        sql(st, "SELECT pg_switch_wal() FROM (SELECT txid_current()) AS t")
        if st.psql(query) == "t":
            return
        time.sleep(1)
    raise AssertionError("archiving never failed with the repository at mode 000")


def _revive_repo(st: Stack) -> None:
    (st.app_dir / "pgbackrest" / "repo1").chmod(0o750)
    ctl(st, "pgbackrest", "check")  # archives a new segment: the last attempt succeeded


SECRET = lambda st: st.app_dir / "secrets" / "app_password"  # noqa: E731
CONF = lambda st: _conf(st, "postgresql.conf")  # noqa: E731
BACKUPS = lambda st: st.app_dir / "backups"  # noqa: E731

FAULTS = [
    Fault(
        "container stopped (pgsteady-ctl down: the watchdog leaves it alone)",
        {"container/running", "container/healthy"},
        "pgsteady-ctl up",
        lambda st: ctl(st, "down"),
        lambda st: ctl(st, "up"),
        allow_new_skips=True,
    ),
    Fault(
        "secret chmod 644",
        {"security/secret_files"},
        "chmod 640",
        _chmod(SECRET, 0o644),
        _chmod(SECRET, 0o640),
    ),
    Fault(
        "trust rule in pg_hba.conf, reloaded",
        {
            "security/hba_no_trust",
            "security/hba_network_rules_scram",
            "postgres/config_file_matches[pg_hba.conf]",
            "hba/no_all_all_network_rule",
            "hba/app_roles_only_reach_their_database",
        },
        "make deploy INVENTORY=",
        _add_trust,
        _restore_hba,
    ),
    Fault(
        "server certificate expires in 5 days",
        {"tls/certificate_days_left"},
        "issues a new certificate",
        _expiring_cert,
        _restore_cert,
    ),
    Fault(
        "last backup stale",
        {"backups/last_success_recent"},
        "pgsteady-backup backup --config",
        _make_stale,
        lambda st: _status(st).write_text(_saved(st, "status").read_text()),
    ),
    Fault(
        "port published on 0.0.0.0",
        {"container/port_published", "container/compose_file_matches"},
        "make deploy INVENTORY=",
        _public_port,
        _restore_port,
    ),
    Fault(
        "app role superuser",
        {"security/app_roles_unprivileged", "security/one_superuser"},
        "NOSUPERUSER",
        lambda st: sql(st, "ALTER ROLE app SUPERUSER"),
        lambda st: sql(st, "ALTER ROLE app NOSUPERUSER"),
    ),
    Fault(
        "CREATE on schema public granted to PUBLIC",
        {"security/public_schema_create"},
        "REVOKE CREATE ON SCHEMA public FROM PUBLIC",
        lambda st: sql(st, "GRANT CREATE ON SCHEMA public TO PUBLIC", db="app"),
        lambda st: sql(st, "REVOKE CREATE ON SCHEMA public FROM PUBLIC", db="app"),
    ),
    Fault(
        "newest backup corrupted",
        {"backups/newest_backup_verifies"},
        "pgsteady-backup backup",
        _flip_byte,
        _flip_byte,
    ),
    Fault(
        "work_mem changed at runtime (ALTER SYSTEM + reload)",
        {"postgres/tuned_settings", "postgres/no_runtime_overrides"},
        "ALTER SYSTEM RESET ALL",
        lambda st: (sql(st, "ALTER SYSTEM SET work_mem = '64MB'"), ctl(st, "apply-config")),
        lambda st: (sql(st, "ALTER SYSTEM RESET ALL"), ctl(st, "apply-config")),
    ),
    Fault(
        "postgresql.conf chmod 644",
        {"security/config_not_world_readable"},
        "chmod o-rwx",
        _chmod(CONF, 0o644),
        _chmod(CONF, 0o640),
    ),
    Fault(
        "backup directory chmod 755",
        {"backups/backup_dir_private"},
        "chmod 700",
        _chmod(BACKUPS, 0o755),
        _chmod(BACKUPS, 0o700),
    ),
    Fault(
        "ctl.env (sourced by root) chowned to the postgres uid",
        {"files/root_files_only_root_writes", "files/nothing_under_app_dir_writable_by_others"},
        "chown 0:0",
        lambda st: os.chown(st.app_dir / "etc" / "ctl.env", 999, 999),
        lambda st: os.chown(st.app_dir / "etc" / "ctl.env", 0, 0),
    ),
    Fault(
        "pgBackRest repository dead (chmod 000) while WAL is written",
        # The gap check cannot list an unreadable archive: it fails ("could not check").
        {
            "pgbackrest/archive_is_fresh",
            "pgbackrest/stanza_ok",
            "pgbackrest/full_backup_exists",
            "pgbackrest/archive_has_no_gap_after_the_newest_backup",
        },
        "pgsteady-ctl pgbackrest",
        _kill_repo,
        _revive_repo,
    ),
    Fault(  # last: undone by `make deploy`, as an operator would
        "backup cron file removed",
        # the job file is root's: the files group names it missing too (fix: make deploy)
        {"backups/scheduler_installed", "files/root_files_only_root_writes"},
        "make deploy INVENTORY=",
        lambda st: next(p for p in st.scheduled_files() if "-backup-" in p.name).unlink(),
        lambda st: None,
    ),
]


def test_each_fault_fails_its_check_only(stack: Stack, baseline: VerifyRun) -> None:
    table = []
    for i, fault in enumerate(FAULTS):
        fault.break_it(stack)
        run = make_verify(stack.inventory, stack.dir / f"fault{i}.xml")
        table.append((fault.name, sorted(run.failed), round(run.seconds, 1)))
        fault.undo(stack)
        assert run.returncode != 0, f"{fault.name}: verify passed\n{run.output[-3000:]}"
        assert set(run.failed) == fault.expected, (fault.name, run.failed, run.output[-3000:])
        for check_id, (what, fix) in run.failed.items():
            assert what and fix, (check_id, what, fix)
        assert any(fault.fix in fix for _, fix in run.failed.values()), (fault.name, run.failed)
        assert run.total == baseline.total, fault.name
        assert run.junit_failures == len(fault.expected), fault.name
        if not fault.allow_new_skips:
            assert run.skipped.keys() == baseline.skipped.keys(), (fault.name, run.skipped)
    print("\nfault table:")
    for name, failed, seconds in table:
        print(f"  {name:60s} {seconds:5.1f}s  {', '.join(failed)}")

    deployed = make_deploy(stack.inventory)
    assert deployed.returncode == 0, deployed.stdout[-3000:]
    final = make_verify(stack.inventory, stack.dir / "final.xml")
    assert final.returncode == 0, final.output[-4000:]
    assert final.total == baseline.total and not final.failed
    assert docker("inspect", stack.container).returncode == 0
