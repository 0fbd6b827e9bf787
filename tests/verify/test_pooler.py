"""pooler: PgBouncer runs hardened and healthy, answers on pgbouncer_port through TLS with
its own certificate for the server's names (verified against the inventory's CA; a copy of
the server's with operator-supplied certificates), refuses a plain-text
startup, and its application pool has no client waiting long (SHOW POOLS).

Skipped when ``pgbouncer_enabled`` is False, or while the stack is stopped (container/running
fails then). The connections go from the host to the published port (postgres_bind;
127.0.0.1 for a wildcard bind or a cluster member) through the host's python3; SHOW POOLS
runs on the pooler's admin console inside its container (its password never leaves it).
"""

from __future__ import annotations

import ipaddress
import shlex
from typing import TYPE_CHECKING

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from pgsteady.settings import Settings
from pgsteady.stack import pgbouncer
from pgsteady.tls import CA_FILE, CERT_FILE, KEY_FILE
from pgsteady.verify import check

if TYPE_CHECKING:
    from collections.abc import Callable

    from conftest import Host

    WaitHealthy = Callable[[Host, str], None]

#: A client of the application's pool waiting longer than this means the pool is too small.
MAX_WAIT_S = 10

#: Python on the host: an SSLRequest, then the handshake verified against the CA (mode
#: tls); or a plain StartupMessage (mode plain), which must get an error, not a login.
PROBE = """
import socket, ssl, struct, sys
mode, host, port, ca = sys.argv[1:5]
s = socket.create_connection((host, int(port)), timeout=10)
if mode == "tls":
    s.sendall(struct.pack("!ii", 8, 80877103))
    if s.recv(1) != b"S":
        sys.exit("the pooler refused TLS")
    ctx = ssl.create_default_context(cafile=ca)
    ctx.check_hostname = False
    t = ctx.wrap_socket(s)
    print(t.version())
else:
    body = struct.pack("!i", 196608) + b"user\\0app\\0database\\0app\\0\\0"
    s.sendall(struct.pack("!i", len(body) + 4) + body)
    print(s.recv(1).decode(errors="replace") or "closed")
"""


@pytest.fixture(scope="module", autouse=True)
def _enabled(on: Host, s: Settings) -> None:
    if not s.pgbouncer_enabled:
        pytest.skip("pgbouncer_enabled = False: no pooler")
    state = (on.inspect("container", s.container_name) or {}).get("State") or {}
    if not state.get("Running"):
        pytest.skip("the stack is not running (see container/running)")


def _probe(on: Host, s: Settings, mode: str) -> tuple[int, str]:
    bind = ipaddress.ip_address(s.postgres_bind)
    # a cluster member's pooler listens on its member address and loopback
    loopback = bind.is_unspecified or s.postgres_cluster_name is not None
    address = "127.0.0.1" if loopback else str(bind)
    args = [mode, address, str(s.pgbouncer_port), f"{s.layout.tls}/{CA_FILE}"]
    res = on.run(f"python3 -c {shlex.quote(PROBE)} {' '.join(map(shlex.quote, args))}")
    return res.rc, (res.stdout + res.stderr).strip()


@pytest.mark.fix("{deploy} (starts the pooler with the stack)")
def test_healthy(on: Host, s: Settings, wait_healthy: WaitHealthy) -> None:
    wait_healthy(on, pgbouncer.container_name(s))


def _public_key(pem: str | None) -> bytes | None:
    """The public key of a PEM certificate (DER), or None when it is absent or unreadable."""
    try:
        cert = x509.load_pem_x509_certificate((pem or "").encode())
    except ValueError:
        return None
    return cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def _same_key(on: Host, s: Settings) -> list[str]:
    """With pgsteady's CA (no postgres_tls_cert_file): the pooler's key is its own, not a
    copy of the server's (its certificate's public key and its key file differ from the
    server's; only hashes of the key files leave the host)."""
    if s.postgres_tls_cert_file:
        return []  # operator-supplied: the pooler serves a copy of the server's pair
    tls = s.layout.tls
    pooler = _public_key(on.read(f"{tls}/{pgbouncer.POOLER_CERT}"))
    if pooler is None:
        return [f"no readable certificate {tls}/{pgbouncer.POOLER_CERT}"]
    if pooler == _public_key(on.read(f"{tls}/{CERT_FILE}")):
        return ["serves the server's key pair"]
    keys = [f"{tls}/{KEY_FILE}", f"{tls}/{pgbouncer.POOLER_KEY}"]
    sums = on.run("sha256sum " + " ".join(map(shlex.quote, keys))).stdout.split()[::2]
    return ["holds a copy of the server's key"] if len(set(sums)) < 2 else []


def test_confined(on: Host, s: Settings) -> None:
    """pgbouncer_uid (not root, not the server's), read-only root filesystem, no
    capabilities, no new privileges, a memory limit, no mount of the server's key and,
    with pgsteady's CA, a key of its own (not a copy of the server's)."""
    name = pgbouncer.container_name(s)
    info = on.inspect("container", name)
    if info is None:
        pytest.skip(f"container {name} does not exist (see pooler/healthy)")
    user, host = info["Config"].get("User") or "0", info["HostConfig"]
    want = f"{s.pgbouncer_uid}:{s.pgbouncer_uid}"
    mounts = {m.get("Source") for m in info.get("Mounts") or []}
    problems = [
        *([f"runs as {user}, not {want}"] if user != want else []),
        *(["mounts the server's TLS key"] if f"{s.layout.tls}/{KEY_FILE}" in mounts else []),
        *([] if host.get("ReadonlyRootfs") else ["writable root filesystem"]),
        *([] if host.get("CapDrop") == ["ALL"] else ["capabilities not dropped"]),
        *([] if "no-new-privileges:true" in (host.get("SecurityOpt") or []) else ["new privs"]),
        *([] if host.get("Memory") else ["no memory limit"]),
        *_same_key(on, s),
    ]
    check(not problems, f"{name}: {', '.join(problems)}")


@pytest.mark.fix("{deploy} (the pooler serves its certificate of the inventory's CA)")
def test_tls(on: Host, s: Settings) -> None:
    rc, out = _probe(on, s, "tls")
    check(rc == 0 and out.startswith("TLS"), f"no verified TLS on pgbouncer_port: {out[-200:]}")


def test_plain_text_refused(on: Host, s: Settings) -> None:
    rc, out = _probe(on, s, "plain")
    check(rc == 0, f"pgbouncer_port did not answer: {out[-200:]}")
    # 'E' (an error) or a closed connection; 'R' would start an authentication exchange.
    check(out in ("E", "closed"), f"the pooler answered a plain-text startup with {out!r}")


@pytest.mark.fix("raise pgbouncer_default_pool_size (within max_connections), then {deploy}")
def test_pool_not_starved(on: Host, s: Settings) -> None:
    """SHOW POOLS: the application's pool has no client waiting over MAX_WAIT_S."""
    argv = pgbouncer.admin_command(s, "SHOW POOLS", docker=on.docker)
    res = on.run(" ".join(map(shlex.quote, argv)))
    check(res.rc == 0, f"the pooler's admin console did not answer: {res.stderr.strip()[:200]}")
    rows = {(r["database"], r["user"]): r for r in pgbouncer.parse_show(res.stdout)}
    waiting = [
        f"{db}/{user}: {r.get('cl_waiting')} waiting, the longest {r.get('maxwait')} s"
        for (db, user), r in rows.items()
        if db in (s.postgres_db, pgbouncer.session_db(s))
        and int(r.get("maxwait") or 0) > MAX_WAIT_S
    ]
    check(not waiting, "clients wait for a server connection: " + "; ".join(waiting))
