"""tasks/tls.py's shared key-pair helpers, used by the server's, the pooler's, the
exporters' and pgBackRest's certificates: when a pair is issued anew, and how it is
pushed (the key by hash, never shown, root:gid with its mode; the certificate root 0644)."""

from __future__ import annotations

import pytest

from pgsteady.tls import create_ca, issue_server_cert
from tasks.tls import put_certificate, renewal_needed
from tests.support.pyinfra_plan import plan

CA = create_ca("unit")
NAMES = ["db1", "127.0.0.1"]
CERT, KEY = "/srv/pg/tls/x.crt", "/srv/pg/tls/private/x.key"


def _lines(pem: bytes) -> list[str]:
    return pem.decode().splitlines()


@pytest.mark.parametrize(
    ("cert", "key_there", "reason"),
    [
        (None, True, "no certificate on the host"),
        (issue_server_cert(CA, NAMES)[0], False, "the key is missing"),
        (issue_server_cert(CA, ["db1"])[0], True, "the host's names changed"),
        (issue_server_cert(create_ca("other"), NAMES)[0], True, "not issued by"),
        (issue_server_cert(CA, NAMES)[0], True, None),
    ],
)
def test_renewal_needed(cert: bytes | None, key_there: bool, reason: str | None) -> None:
    facts = {
        "FileContents": lambda path: _lines(cert) if cert and path == CERT else None,
        "FileState": None,  # no prefetch: is_file asks File
        "File": lambda path: {"mode": 640} if key_there and path == KEY else None,
    }
    got, _ = plan(lambda: renewal_needed(CERT, KEY, CA.cert_pem, NAMES), facts=facts)
    assert (got is None) if reason is None else (reason in got), got


def test_put_certificate_pushes_the_key_privately_then_the_certificate() -> None:
    cert_pem, key_pem = issue_server_cert(CA, NAMES)
    facts = {"Sha256File": None, "NumericStat": None, "File": None, "FileState": None}
    ops, p = plan(
        lambda: put_certificate("test", CERT, cert_pem, KEY, key_pem, 4242, "440", " (why)"),
        facts=facts,
    )
    assert len(ops) == 2
    key_op, cert_op = p.ops
    assert key_op.operation == "tls.private_file"
    assert key_op.name == f"Upload the test key {KEY} (440 root:4242, not shown)"
    assert {k: key_op.arguments[k] for k in ("dest", "uid", "gid", "mode")} == {
        "dest": KEY,
        "uid": 0,
        "gid": 4242,
        "mode": "440",
    }
    assert key_op.arguments["src"] == key_pem and key_pem.decode() not in key_op.name
    assert cert_op.operation == "files.put" and cert_op.name.endswith(f"{CERT} (why)")
    assert {k: cert_op.arguments[k] for k in ("dest", "user", "group", "mode")} == {
        "dest": CERT,
        "user": "root",
        "group": "root",
        "mode": "644",
    }
