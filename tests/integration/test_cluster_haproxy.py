"""The rendered haproxy.cfg checked and run by the REAL HAProxy (Debian's 2.6).

`haproxy -c` accepts the file with real certificate files. Then HAProxy runs it against
three stand-in members on 127.0.0.2-4: each has a TCP "Postgres" that answers with the
member's name and an HTTPS "REST API" (a certificate from pgsteady.tls) whose /primary
and /replica answers the test sets, the way Patroni answers them. Proven: postgres_port
reaches the member whose /primary says 200; when the leader moves, the old leader's
sessions are cut and new ones reach the new leader; the replica port reaches only
replicas whose /replica?lag=<bytes> says 200; and a member whose REST certificate is not
from the cluster CA never receives traffic even though it claims to be primary.
Only HAProxy is real here: the stand-ins play Patroni's side of the contract.
"""

from __future__ import annotations

import contextlib
import http.server
import signal
import socket
import socketserver
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pgsteady import tls
from pgsteady.cluster.haproxy import render_haproxy_cfg
from pgsteady.cluster.topology import Cluster, cluster_from_mapping
from tests.support.cluster_binaries import require
from tests.support.ports import free_port

ADDRESSES = ("127.0.0.2", "127.0.0.3", "127.0.0.4")


def make_cluster() -> Cluster:
    return cluster_from_mapping(
        {
            "postgres_cluster_name": "itest",
            "members": [{"name": f"m{i}", "address": a} for i, a in enumerate(ADDRESSES, 1)],
            "postgres_port": free_port(),
            "postgres_replica_port": free_port(),
            "postgres_member_port": free_port(),
            "patroni_rest_port": free_port(),
            "postgres_replica_max_lag": "16MB",
            "haproxy_check_interval_ms": 200,
        }
    )


class Member:
    """A stand-in member: TCP on member_port says its name; HTTPS on rest_port answers
    ``/primary`` and ``/replica`` with the status codes in ``codes``."""

    def __init__(self, name: str, address: str, cluster: Cluster, cert: Path, key: Path):
        self.name = name
        self.codes = {"/primary": 503, "/replica": 503}
        self.paths: list[str] = []
        member = self

        class Rest(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                member.paths.append(self.path)
                code = member.codes.get(self.path.split("?")[0], 404)
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        class Pg(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                self.request.sendall(name.encode() + b"\n")
                with contextlib.suppress(OSError):
                    self.request.recv(1)  # hold the session until the peer closes it

        self.rest = http.server.ThreadingHTTPServer((address, cluster.rest_port), Rest)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(cert), str(key))
        self.rest.socket = ctx.wrap_socket(self.rest.socket, server_side=True)
        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self.pg = socketserver.ThreadingTCPServer((address, cluster.member_port), Pg)
        self.pg.daemon_threads = True
        for server in (self.rest, self.pg):
            threading.Thread(target=server.serve_forever, daemon=True).start()

    def close(self) -> None:
        for server in (self.rest, self.pg):
            server.shutdown()
            server.server_close()


def who(address: str, port: int) -> tuple[str, socket.socket | None]:
    """The name a new session through HAProxy reaches ('' when refused/closed)."""
    try:
        s = socket.create_connection((address, port), timeout=2)
        data = s.recv(64).decode().strip()
    except OSError:
        return "", None
    return data, s


def wait_for(address: str, port: int, expected: str, timeout: float = 20) -> socket.socket:
    deadline = time.monotonic() + timeout
    while True:
        name, s = who(address, port)
        if name == expected and s is not None:
            return s
        if s is not None:
            s.close()
        assert time.monotonic() < deadline, f"port {port} reached {name!r}, not {expected!r}"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("haproxy")
    ca = tls.create_ca("cluster-test")
    (tmp / "ca.crt").write_bytes(ca.cert_pem)
    rogue = tls.create_ca("someone else")
    for i in range(1, 4):
        cert, key = tls.issue_server_cert(ca if i < 3 else rogue, [f"m{i}", ADDRESSES[i - 1]])
        (tmp / f"m{i}.crt").write_bytes(cert)
        (tmp / f"m{i}.key").write_bytes(key)
    return tmp


def test_haproxy_accepts_the_rendered_file(pki: Path) -> None:
    haproxy = require("haproxy")
    cluster = make_cluster()
    for member in cluster.members:
        cfg = pki / f"check-{member.name}.cfg"
        cfg.write_text(render_haproxy_cfg(cluster, member, str(pki / "ca.crt"), "/run/x.sock"))
        proc = subprocess.run(
            [haproxy, "-c", "-f", str(cfg)], capture_output=True, text=True, check=False
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "Configuration file is valid" in proc.stdout + proc.stderr
    # the control: the same file with a CA path that does not exist is refused
    bad = render_haproxy_cfg(cluster, cluster.members[0], str(pki / "none.crt"), "/run/x.sock")
    cfg.write_text(bad)
    proc = subprocess.run([haproxy, "-c", "-f", str(cfg)], capture_output=True, text=True)
    assert proc.returncode != 0


@pytest.fixture
def routed(pki: Path) -> Iterator[tuple[Cluster, dict[str, Member]]]:
    haproxy = require("haproxy")
    cluster = make_cluster()
    members = {
        m.name: Member(m.name, m.address, cluster, pki / f"{m.name}.crt", pki / f"{m.name}.key")
        for m in cluster.members
    }
    cfg = pki / "run.cfg"
    cfg.write_text(
        render_haproxy_cfg(cluster, cluster.members[0], str(pki / "ca.crt"), str(pki / "s.sock"))
    )
    log = (pki / "haproxy.log").open("ab")
    proc = subprocess.Popen([haproxy, "-db", "-f", str(cfg)], stdout=log, stderr=log)
    try:
        yield cluster, members
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
        for m in members.values():
            m.close()


def test_primary_port_follows_the_leader_and_cuts_the_old_one(
    routed: tuple[Cluster, dict[str, Member]],
) -> None:
    cluster, members = routed
    front = cluster.members[0].address
    members["m1"].codes["/primary"] = 200
    members["m2"].codes["/replica"] = 200
    old = wait_for(front, cluster.postgres_port, "m1")
    members["m1"].codes["/primary"] = 503  # the lock moved: m1 demoted, m2 promoted
    members["m2"].codes.update({"/primary": 200, "/replica": 503})
    members["m1"].codes["/replica"] = 200
    new = wait_for(front, cluster.postgres_port, "m2")
    old.settimeout(5)
    assert old.recv(64) == b"", "the session to the demoted leader stayed open"
    for s in (old, new):
        s.close()


def test_replica_port_uses_the_lag_limit_and_only_replicas(
    routed: tuple[Cluster, dict[str, Member]],
) -> None:
    cluster, members = routed
    front = cluster.members[0].address
    members["m1"].codes["/primary"] = 200
    members["m2"].codes["/replica"] = 200
    s = wait_for(front, cluster.replica_port, "m2")
    s.close()
    seen = {who(front, cluster.replica_port)[0] for _ in range(6)}
    assert seen == {"m2"}
    assert f"/replica?lag={16 * 1024**2}" in members["m2"].paths


def test_a_member_with_a_foreign_certificate_gets_no_traffic(
    routed: tuple[Cluster, dict[str, Member]],
) -> None:
    """m3's REST certificate is from another CA: its claim to be primary is not believed."""
    cluster, members = routed
    front = cluster.members[0].address
    members["m3"].codes["/primary"] = 200
    time.sleep(2)  # ten check intervals
    name, s = who(front, cluster.postgres_port)
    if s is not None:
        s.close()
    assert name == ""  # no believable primary: HAProxy closes the session
    assert not any(p.startswith("/primary") for p in members["m3"].paths)  # no check got through
    members["m1"].codes["/primary"] = 200  # the control: a verified leader is reached
    wait_for(front, cluster.postgres_port, "m1").close()
