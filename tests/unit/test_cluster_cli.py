"""python -m pgsteady switchover / reinit: usage, access files and a held roll lock refused
before any call."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import pytest

from pgsteady import tls
from pgsteady.cli import main
from pgsteady.cluster.cli import access_from_dir, refuse_while_rolling, roll_holder
from pgsteady.cluster.operations import OperationError
from pgsteady.cluster.tunnels import ClusterMember, cluster_members
from pgsteady.inventory import InventoryHost


def access_dir(tmp_path: Path) -> Path:
    d = tmp_path / "access"
    d.mkdir(mode=0o700)
    for name in ("ca.crt", "client.crt", "client.key", "rest-password"):
        (d / name).touch(mode=0o600)
    (d / "rest-password").write_text("s3cret-value\n")
    return d


def test_member_must_be_a_named_https_url(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["switchover", "--member", "pg1=http://10.0.0.1:8008", "--access", "x"]) == 2
    err = capsys.readouterr().err
    assert "expected NAME=https://ADDRESS:PORT" in err and len(err.splitlines()) == 1
    assert main(["reinit", "--member", "pg1=https://10.0.0.1:8008", "--access", "x"]) == 2


def test_access_files_are_checked_and_the_password_never_shown(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = access_dir(tmp_path)
    access = access_from_dir(d)
    assert access.password() == "s3cret-value" and access.user == "patroni"
    os.chmod(d / "rest-password", 0o640)
    with pytest.raises(OperationError, match="rest-password is mode 0640"):
        access_from_dir(d)
    argv = ["reinit", "pg2", "--member", "pg1=https://127.0.0.1:1", "--access", str(d)]
    assert main(argv) == 1
    out = capsys.readouterr()
    assert "chmod 600" in out.err and "s3cret" not in out.out + out.err
    os.chmod(d / "rest-password", 0o600)
    (d / "client.crt").unlink()
    with pytest.raises(OperationError, match="client.crt is missing"):
        access_from_dir(d)


def test_unloadable_files_and_unreachable_members_fail_with_one_sentence(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = access_dir(tmp_path)
    argv = ["switchover", "--member", "pg1=https://127.0.0.1:1", "--access", str(d)]
    assert main(argv) == 1  # an empty ca.crt
    err = capsys.readouterr().err
    assert (
        err.startswith("pgsteady switchover: the access files do not load (")
        and err.count("\n") == 1
    )
    ca = tls.create_ca("unit")
    (d / "ca.crt").write_bytes(ca.cert_pem)
    assert main(argv) == 1  # every call, GET /cluster too, presents the client certificate
    err = capsys.readouterr().err
    assert err.startswith("pgsteady switchover: the access files do not load (")
    cert, key = tls.issue_server_cert(ca, ["ops"], usages=tls.CLIENT_ONLY)
    (d / "client.crt").write_bytes(cert)
    (d / "client.key").write_bytes(key)
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("pgsteady switchover: no member answered GET /cluster (pg1:")


HOLDER = '{"by": "vm pid 4242", "operation": "rolling recreate", "since": "2026-11-30T11:00:00Z"}'


def _members(**data: object) -> list[ClusterMember]:
    hosts = [
        InventoryHost(n, {"ssh_hostname": f"{n}.example", "postgres_cluster_name": "main", **data})
        for n in ("pg1", "pg2")
    ]
    return cluster_members(hosts, None)


def test_the_roll_lock_is_read_on_the_first_member_that_answers() -> None:
    calls: list[list[str]] = []

    def run(argv: list[str]) -> tuple[int, str, str]:
        calls.append(argv)
        if len(calls) == 1:
            return 255, "", "ssh: connect to host pg1.example: refused"
        return 0, HOLDER + "\n", ""

    members = _members(compose_project="labm", _sudo=True)
    with pytest.raises(OperationError) as exc:
        refuse_while_rolling(members, run)
    msg = str(exc.value)
    assert msg.startswith("a rolling operation is in progress in cluster main (rolling recreate")
    assert "vm pid 4242 since 2026-11-30T11:00:00Z" in msg and "nothing was changed" in msg
    assert [c[c.index("--") + 1] for c in calls] == ["pg1.example", "pg2.example"]
    assert calls[1][-3:-1] == ["sudo", "-n"]
    shell, flag, command = shlex.split(calls[1][-1])  # one word for root's shell
    assert (shell, flag) == ("sh", "-c")
    assert command.startswith("docker exec -u postgres labm-postgres python3 -c ")


def test_a_free_lock_lets_the_operation_go_and_an_unreadable_one_stops_it() -> None:
    assert roll_holder(_members(), lambda argv: (0, "\n", "")) is None
    refuse_while_rolling(_members(), lambda argv: (0, "", ""))  # free: no error
    with pytest.raises(
        OperationError, match=r"could not be read on any member \(pg1: etcd: x; pg2"
    ):
        roll_holder(_members(), lambda argv: (1, "", "Traceback\netcd: x\n"))


def test_switchover_and_reinit_refuse_while_a_roll_holds_the_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Through the command line: the lock is read with the host's own docker (here a
    stand-in on PATH that answers as a member's container does), before any REST call."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "docker.argv"
    docker = bin_dir / "docker"
    docker.write_text(f"#!/bin/sh\necho \"$@\" >> {log}\necho '{HOLDER}'\n")
    docker.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    inventory = tmp_path / "inv.py"
    data = {"postgres_cluster_name": "main", "compose_project": "labm"}
    inventory.write_text(f"hosts = [('@local', {data!r})]\n")
    d = access_dir(tmp_path)
    for argv in (["switchover"], ["reinit", "pg2"]):
        assert main([*argv, "--inventory", str(inventory), "--access", str(d)]) == 1
        err = capsys.readouterr().err
        assert err.startswith(f"pgsteady {argv[0]}: a rolling operation is in progress"), err
        assert "rolling recreate by vm pid 4242" in err and "GET /cluster" not in err
    assert log.read_text().count("exec -u postgres labm-postgres python3 -c") == 2
