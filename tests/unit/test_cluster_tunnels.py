"""The inventory's cluster members and the ssh forward each one gets (no process started)."""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pgsteady import tls
from pgsteady.cluster.operations import Endpoint, OperationError, RestAccess, RestApi
from pgsteady.cluster.tunnels import (
    cluster_members,
    default_access_dir,
    forward_argv,
    member_url,
)
from pgsteady.inventory import InventoryHost


def host(name: str, **data: object) -> InventoryHost:
    return InventoryHost(name, {"ssh_hostname": f"{name}.example", **data})


def test_members_of_the_one_cluster_in_inventory_order() -> None:
    hosts = [
        host("pg2", postgres_cluster_name="main", postgres_cluster_address="10.0.0.12"),
        host("single"),
        host("pg1", postgres_cluster_name="main", patroni_rest_port=9008),
    ]
    members = cluster_members(hosts, None)
    assert [(m.name, m.address, m.rest_port) for m in members] == [
        ("pg2", "10.0.0.12", 8008),
        ("pg1", "pg1.example", 9008),
    ]


def test_no_cluster_several_clusters_or_an_unknown_one_is_refused() -> None:
    with pytest.raises(OperationError, match="no host with postgres_cluster_name"):
        cluster_members([host("a")], None)
    two = [host("a", postgres_cluster_name="x"), host("b", postgres_cluster_name="y")]
    with pytest.raises(OperationError, match="clusters x, y: name one"):
        cluster_members(two, None)
    assert [m.name for m in cluster_members(two, "y")] == ["b"]
    with pytest.raises(OperationError, match="cluster 'z' is not in the inventory"):
        cluster_members(two, "z")


def test_forward_uses_the_inventory_ssh_options_without_sudo() -> None:
    (m,) = cluster_members(
        [host("pg1", postgres_cluster_name="main", postgres_cluster_address="fd00::11",
              ssh_user="ops", ssh_port=2222, _sudo=True)],
        None,
    )  # fmt: skip
    argv = forward_argv(m, "/tmp/pgsteady-rest-x/0.sock")
    assert argv[0] == "ssh" and "sudo" not in argv
    assert argv[argv.index("-p") + 1] == "2222"
    # a Unix socket, not a loopback TCP port any local user could use (L4)
    assert argv[-4:] == [
        "-L",
        "/tmp/pgsteady-rest-x/0.sock:[fd00::11]:8008",
        "--",
        "ops@pg1.example",
    ]
    assert "ExitOnForwardFailure=yes" in argv and "-N" in argv
    assert "StreamLocalBindMask=0177" in argv
    # the client checks the certificate against the member's address
    assert member_url(m) == "https://[fd00::11]:8008"


def test_access_dir_sits_beside_the_inventorys_ca(tmp_path: Path) -> None:
    inv = tmp_path / "prod.py"
    assert default_access_dir(inv, [host("a")]) == tmp_path / ".pgsteady/prod/cluster-access"
    custom = [host("a", postgres_tls_ca_dir="/srv/ca")]
    assert default_access_dir(inv, custom) == Path("/srv/ca/cluster-access")


@dataclass
class SocketServer:
    """A TLS server (certificate for pg1 / 10.0.0.11) on a Unix socket answering two
    requests with 200 "ok", each after ``delay`` seconds; its files lie in ``dir``."""

    dir: Path
    path: str


@pytest.fixture
def tls_socket_server(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[SocketServer]:
    delay = getattr(request, "param", 0.0)
    ca = tls.create_ca("t")
    cert, key = tls.issue_server_cert(ca, ["pg1", "10.0.0.11"])
    for name, data in (("ca.crt", ca.cert_pem), ("s.crt", cert), ("s.key", key)):
        (tmp_path / name).write_bytes(data)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(tmp_path / "s.crt", tmp_path / "s.key")
    path = str(tmp_path / "0.sock")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    listener.listen()

    def serve() -> None:
        for _ in range(2):
            conn, _addr = listener.accept()
            with (
                contextlib.suppress(ssl.SSLError, OSError),
                server_ctx.wrap_socket(conn, server_side=True) as s,
            ):
                s.recv(4096)
                threading.Event().wait(delay)
                s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield SocketServer(tmp_path, path)
    finally:
        thread.join(timeout=10)
        listener.close()


def test_rest_api_over_a_unix_socket_checks_the_members_name(
    tls_socket_server: SocketServer,
) -> None:
    """An :class:`Endpoint` with a socket: TLS over it, the certificate checked against
    the URL's host (a real TLS server on a Unix socket, no Patroni)."""
    d, path = tls_socket_server.dir, tls_socket_server.path
    client = (str(d / "s.crt"), str(d / "s.key"))  # any pair: it is sent
    access = RestAccess(str(d / "ca.crt"), *client, "")
    good = RestApi({"pg1": Endpoint("https://10.0.0.11:8008", path)}, access)
    assert good.call("pg1", "/cluster") == (200, "ok")
    wrong = RestApi({"pg1": Endpoint("https://10.0.0.99:8008", path)}, access)
    code, text = wrong.call("pg1", "/cluster")
    assert code == 0 and "mismatch" in text.lower(), text


@pytest.mark.parametrize("tls_socket_server", [0.8], indirect=True)  # the switchover's time
def test_a_state_change_waits_longer_than_a_read(tls_socket_server: SocketServer) -> None:
    """Patroni answers POST /switchover once the new leader runs, past a read's timeout
    on a loaded host: the POST gets ``change_timeout`` while a GET stays short."""
    d, path = tls_socket_server.dir, tls_socket_server.path
    (d / "pw").write_text("secret\n")
    access = RestAccess(str(d / "ca.crt"), str(d / "s.crt"), str(d / "s.key"), str(d / "pw"))
    api = RestApi(
        {"pg1": Endpoint("https://10.0.0.11:8008", path)}, access, timeout=0.3, change_timeout=10
    )
    code, text = api.call("pg1", "/cluster")
    assert code == 0 and "timed out" in text.lower(), text
    assert api.call("pg1", "/switchover", "POST", {"leader": "pg1"}) == (200, "ok")
