"""python -m pgsteady switchover / reinit: usage and access files refused before any call."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pgsteady import tls
from pgsteady.cli import main
from pgsteady.cluster.cli import access_from_dir
from pgsteady.cluster.operations import OperationError


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
