"""Switchover and reinit through Patroni's REST API, and waiting until they are done.

State-changing endpoints pass three gates (docs/cluster-design.md §4): the caller's
source address is in the members' allowlist, it presents a client certificate the
cluster's CA issued, and it sends the REST password (basic auth). :class:`RestAccess`
holds the files for all three: the password is read from its file for each request and
never printed, logged or put in argv or the environment.

- :func:`switchover`: the leader hands over to ``target`` (or to a replica Patroni picks);
  refused, naming the member and why, unless the target is a running replica within
  the lag limit. Done when the new leader runs as primary and the old one replicates.
- :func:`reinit`: one replica is wiped and cloned again from the leader; the leader is
  refused. Done when that member runs again as a replicating replica.

Each raises :class:`OperationError` with one sentence; success returns a one-line result.
"""

from __future__ import annotations

import base64
import http.client
import json
import socket
import ssl
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pgsteady.cluster.health import REPLICATING_STATES
from pgsteady.cluster.patroni import REST_USER
from pgsteady.cluster.status import ClusterStatus, MemberStatus, parse_cluster
from pgsteady.units import format_bytes

DEFAULT_TIMEOUT_S = 120.0
POLL_S = 1.0


class OperationError(RuntimeError):
    """An operation refused or failed; the message says which member and why."""


@dataclass(frozen=True)
class RestAccess:
    """The files that open the REST API's state-changing endpoints."""

    ca_file: str
    cert_file: str
    key_file: str
    password_file: str
    user: str = REST_USER
    #: Bind outgoing connections here (an allowlisted address); None: the kernel's choice.
    source_address: str | None = None

    def password(self) -> str:
        text = Path(self.password_file).read_text()
        return text[:-1] if text.endswith("\n") else text


@dataclass(frozen=True)
class Endpoint:
    """Where one member's REST API answers: ``url`` (https://<name>:<port>; its host is
    the name the member's certificate must carry), reached over ``unix_socket`` (an ssh
    forward in a private directory) when set, else over TCP to that host and port."""

    url: str
    unix_socket: str | None = None


class _UnixHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS over a Unix socket, the certificate checked against the connection's host."""

    def __init__(self, path: str, host: str, port: int | None, **kwargs: Any):
        super().__init__(host, port, **kwargs)
        self._unix_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self._unix_path)
            self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[attr-defined]
        except BaseException:
            sock.close()
            raise


class RestApi:
    """Calls to each member's REST API (``urls``: member name -> https base URL or
    :class:`Endpoint`)."""

    def __init__(
        self,
        urls: Mapping[str, str | Endpoint],
        access: RestAccess,
        timeout: float = 5.0,
        change_timeout: float = 120.0,
    ):
        self.urls = {k: v if isinstance(v, Endpoint) else Endpoint(v) for k, v in urls.items()}
        self.access = access
        self.timeout = timeout
        # Patroni answers POST /switchover only once the new leader runs: seconds when
        # idle, past 5 s on a loaded host (the request then times out mid-switchover).
        self.change_timeout = change_timeout

    def _context(self) -> ssl.SSLContext:
        """The CA and the client certificate: Patroni requires one on every endpoint
        (``verify_client: required``, review R8 L1), GETs included."""
        a = self.access
        try:
            ctx = ssl.create_default_context(cafile=a.ca_file)
            ctx.load_cert_chain(a.cert_file, a.key_file)
        except (ssl.SSLError, OSError) as exc:
            files = f"{a.ca_file}, {a.cert_file}, {a.key_file}"
            raise OperationError(f"the access files do not load ({files}): {exc}") from None
        return ctx

    def call(
        self, member: str, path: str, method: str = "GET", body: Any = None
    ) -> tuple[int, str]:
        """(status, body) of one request (with the client certificate); a POST also
        carries the password.
        (0, reason) when the member cannot be reached."""
        if member not in self.urls:
            raise OperationError(f"{member}: no REST API address known for this member")
        gated = method != "GET"
        limit = self.change_timeout if gated else self.timeout
        end = self.urls[member]
        url = urllib.parse.urlsplit(end.url)
        conn: http.client.HTTPSConnection
        if end.unix_socket:
            conn = _UnixHTTPSConnection(
                end.unix_socket,
                str(url.hostname),
                url.port,
                context=self._context(),
                timeout=limit,
            )
        else:
            source = (self.access.source_address, 0) if self.access.source_address else None
            conn = http.client.HTTPSConnection(
                str(url.hostname),
                url.port,
                context=self._context(),
                timeout=limit,
                source_address=source,
            )
        headers = {"Content-Type": "application/json"}
        if gated:
            try:
                token = f"{self.access.user}:{self.access.password()}".encode()
            except OSError as exc:
                raise OperationError(f"the REST password file does not read: {exc}") from None
            headers["Authorization"] = "Basic " + base64.b64encode(token).decode()
        try:
            data = None if body is None else json.dumps(body).encode()
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.read().decode(errors="replace").strip()
        except (OSError, http.client.HTTPException) as exc:
            return 0, str(exc)
        finally:
            conn.close()

    def cluster(self) -> ClusterStatus:
        """``GET /cluster`` from the first member that answers."""
        errors = []
        for name in self.urls:
            status, text = self.call(name, "/cluster")
            if status == 200:
                try:
                    return parse_cluster(json.loads(text))
                except ValueError as exc:
                    errors.append(f"{name}: {exc}")
            else:
                errors.append(f"{name}: {status or text}")
        return ClusterStatus(error="no member answered GET /cluster (" + "; ".join(errors) + ")")

    def member_state(self, member: str) -> dict[str, Any]:
        """``GET /patroni`` of one member ({} when it does not answer)."""
        status, text = self.call(member, "/patroni")
        try:
            return dict(json.loads(text)) if status in (200, 503) else {}
        except ValueError:
            return {}


def replica_fitness(m: MemberStatus | None, name: str, max_lag: int) -> str | None:
    """None when ``m`` may take over as leader; else why not, naming it."""
    if m is None:
        return f"{name} is not a member of the cluster (or its Patroni is not running)"
    if m.is_primary:
        return f"{name} is already the leader"
    if m.role != "replica" or m.state not in REPLICATING_STATES:
        return f"{name} is {m.role} in state {m.state}, not a running replica"
    if m.lag_bytes is None:
        return f"{name}'s replication lag is unknown"
    if m.lag_bytes > max_lag:
        behind, limit = format_bytes(m.lag_bytes), format_bytes(max_lag)
        return f"{name} is {behind} behind the leader (limit {limit})"
    return None


def _leader(cs: ClusterStatus) -> MemberStatus:
    if cs.error:
        raise OperationError(cs.error)
    leader = cs.member(cs.leader) if cs.leader else None
    if leader is None or leader.state != "running":
        raise OperationError(
            "the cluster has no running leader; nothing to switch over from "
            "(see make status and docs/operations.md)"
        )
    return leader


def _wait(
    until: Callable[[], str | None], timeout: float, what: str, clock: Callable[[], float]
) -> None:
    """Poll ``until`` (None = done, else what it is waiting for) within ``timeout``."""
    deadline = clock() + timeout
    while True:
        waiting = until()
        if waiting is None:
            return
        if clock() > deadline:
            raise OperationError(f"{what}: not done after {timeout:g} s ({waiting})")
        time.sleep(POLL_S)


def switchover(
    api: RestApi,
    max_lag: int,
    target: str | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
    clock: Callable[[], float] = time.monotonic,
) -> str:
    """Move the leadership to ``target`` (or to a fit replica Patroni picks) and wait."""
    cs = api.cluster()
    old = _leader(cs)
    if target is not None:
        problem = replica_fitness(cs.member(target), target, max_lag)
        if problem:
            raise OperationError(f"switchover to {target} refused: {problem}")
    else:
        fit = [m.name for m in cs.members if replica_fitness(m, m.name, max_lag) is None]
        if not fit:
            raise OperationError(
                f"switchover refused: no replica is running within {format_bytes(max_lag)} "
                f"of the leader {old.name}"
            )
    body = {"leader": old.name, **({"candidate": target} if target else {})}
    status, text = api.call(old.name, "/switchover", "POST", body)
    if status != 200:
        raise OperationError(f"Patroni refused the switchover ({status}): {text}")
    started = clock()
    new: dict[str, str] = {}

    def led() -> str | None:
        now = api.cluster()
        leader = now.member(now.leader) if now.leader else None
        if leader is None or leader.name == old.name or leader.state != "running":
            return "no new leader running yet"
        if target and leader.name != target:
            return f"{leader.name} leads, not {target}"
        new["name"] = leader.name
        return None

    _wait(led, timeout, "switchover", clock)
    took = clock() - started

    def rejoined() -> str | None:
        problem = replica_fitness(api.cluster().member(old.name), old.name, max_lag)
        return problem

    _wait(rejoined, max(timeout - took, 10.0), f"{old.name} rejoining as a replica", clock)
    return (
        f"switchover done: {new['name']} leads (after {took:.1f} s); {old.name} replicates from it"
    )


def reinit(
    api: RestApi,
    member: str,
    max_lag: int,
    timeout: float = DEFAULT_TIMEOUT_S,
    clock: Callable[[], float] = time.monotonic,
) -> str:
    """Wipe and clone replica ``member`` from the leader again, and wait until it replicates."""
    cs = api.cluster()
    leader = _leader(cs)
    if member == leader.name:
        raise OperationError(
            f"reinit of {member} refused: it is the leader; switch over first "
            f"(make switchover), then reinit it as a replica"
        )
    if cs.member(member) is None:
        raise OperationError(
            f"reinit of {member} refused: not a member of the cluster "
            "(its Patroni must run to rebuild it: make deploy starts it)"
        )
    before = api.member_state(member).get("postmaster_start_time")
    status, text = api.call(member, "/reinitialize", "POST", {"force": True})
    if status != 200:
        raise OperationError(f"Patroni refused the reinit of {member} ({status}): {text}")
    started = clock()

    def rebuilt() -> str | None:
        state = api.member_state(member)
        if state.get("postmaster_start_time") in (None, before):
            return f"{member} is {state.get('state', 'not answering')}"
        return replica_fitness(api.cluster().member(member), member, max_lag)

    _wait(rebuilt, timeout, f"reinit of {member}", clock)
    return f"reinit done: {member} was cloned again and replicates ({clock() - started:.1f} s)"
