"""A live Patroni cluster for integration tests: members started from pgsteady's rendered
files (as the postgres user, with the host's Postgres 15; Patroni 4.0.7 from the hash-pinned
.venv-patroni, tests/support/cluster_binaries.py) against the 3 real etcd
members of :mod:`tests.support.etcd_lab` (TLS and RBAC on). Every process is started here
and stopped by its PID.

API (import by full name, ``from tests.support.patroni_lab import ...``):

- ``with running_patroni(tmp_path, members=("m1", "m2"), parameters=None) as lab:``
  starts etcd, then the first member (waits until it is the primary), then the others
  (waits until each is a replica within the lag limit AND its WAL stream shows in the
  leader's pg_stat_replication). Yields a :class:`PatroniLab`; stops everything on exit.
  ``parameters`` are extra Postgres parameters merged into the bootstrap DCS document;
  ``cluster_changes`` replace topology.Cluster fields first (timings, synchronous mode).
- :class:`PatroniLab`: ``etcd`` (the EtcdLab), ``cluster`` (topology.Cluster), ``root``
  (a 0755 dir the postgres user reaches), ``ca`` (CA file), ``client`` ((cert, key) of a
  CA-issued client certificate), ``auth`` (("patroni", REST password)), ``rest_pw``,
  ``members`` (name -> :class:`Live`), ``api(name)`` (the member's https base URL),
  ``start(name)``, ``restart(name)`` (Patroni again on the kept directory after a crash),
  ``stop(name)``, ``wait_role(name, "primary"|"replica")``,
  ``wait_streaming(leader, replica)``, ``leader()`` (the leader key's value, via etcd),
  ``request(name, path, method="GET", data="{}", gated=False)`` ((status, body) of one
  call; ``gated`` sends the client certificate and basic auth).
- :class:`Live` member: ``name``, ``dir``, ``proc``, ``log``, ``tail()``,
  ``sql(port, query)`` (psql as the superuser over the member's socket, peer auth).
- Lower level, as the Patroni live test uses them: :func:`https`, :func:`postgres_root`,
  :func:`start_member`, :func:`launch`, :func:`stop`, :func:`wait_status`, :func:`haproxy_in_front`,
  :func:`reaches`; :data:`BIN_DIR`, :data:`SUPERUSER_PW`.

The REST API's allowlist is the members' addresses (127.0.0.2-4 here): :func:`https` sends
from member m2's address by default. Both members share this host, so each gets its own
socket directory and certificate paths as local parameters (on real hosts they are the same
path on every member), and replicas dial from 127.0.0.1, which one extra pg_hba line admits.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import http.client
import os
import pwd
import secrets
import shutil
import signal
import ssl
import subprocess
import tempfile
import time
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pgsteady.cluster import patroni
from pgsteady.cluster.certs import issue_etcd_client_cert
from pgsteady.cluster.haproxy import render_haproxy_cfg
from pgsteady.cluster.topology import Cluster
from tests.support.cluster_binaries import patroni as patroni_bin
from tests.support.cluster_binaries import require, require_file
from tests.support.etcd_lab import ADDRESSES, EtcdLab, running_etcd

BIN_DIR = Path("/usr/lib/postgresql/15/bin")
#: The superuser's password in the lab (scram over TCP, e.g. through HAProxy).
SUPERUSER_PW = "su-pw"
REPLICATION_PW = "repl-pw"
REWIND_PW = "rewind-pw"


def https(
    url: str,
    ca: Path,
    method: str = "GET",
    cert: tuple[Path, Path] | None = None,
    auth: tuple[str, str] | None = None,
    data: str = "{}",
    source: str = ADDRESSES[1],
    timeout: float = 5,
    anonymous: bool = False,
) -> tuple[int, str]:
    """(status, body) of one HTTPS request verified with ``ca``, sent from ``source``
    (default: member m2's address, as a peer or its HAProxy would); (0, "") when refused
    or when no answer came within ``timeout`` seconds. Patroni requires a client
    certificate on every endpoint: ``cert``, by default the lab's client certificate
    beside ``ca``; ``anonymous`` sends none."""
    ctx = ssl.create_default_context(cafile=str(ca))
    if cert is None and not anonymous:
        cert = (ca.parent / "client.crt", ca.parent / "client.key")
    if cert and not anonymous:
        ctx.load_cert_chain(str(cert[0]), str(cert[1]))
    parsed = urllib.parse.urlsplit(url)
    conn = http.client.HTTPSConnection(
        str(parsed.hostname), parsed.port, context=ctx, timeout=timeout, source_address=(source, 0)
    )
    headers = {"Content-Type": "application/json"}
    if auth:
        headers["Authorization"] = "Basic " + base64.b64encode(":".join(auth).encode()).decode()
    path = parsed.path + (f"?{parsed.query}" if parsed.query else "")
    try:
        body = data.encode() if method in ("POST", "PATCH", "PUT") else None
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read().decode(errors="replace")
    except OSError:
        return 0, ""
    finally:
        conn.close()


@dataclass
class Live:
    """One running Patroni member."""

    name: str
    dir: Path
    proc: subprocess.Popen[bytes]
    log: Path

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def sql(self, port: int, query: str) -> str:
        """psql as the superuser over this member's Unix socket (peer)."""
        pw = pwd.getpwnam("postgres")
        proc = subprocess.run(
            [str(BIN_DIR / "psql"), "-h", str(self.dir), "-p", str(port)]
            + ["-U", "postgres", "-d", "postgres", "-XAtq", "-v", "ON_ERROR_STOP=1", "-c", query],
            capture_output=True,
            text=True,
            user=pw.pw_uid,
            group=pw.pw_gid,
            extra_groups=[],
            cwd=self.dir,
            timeout=60,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.strip()


def as_postgres(
    argv: list[str],
    env: Mapping[str, str] | None = None,
    timeout: float = 30,
    stdin: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """``argv`` as the postgres user (no extra groups, cwd /), its output captured."""
    pw = pwd.getpwnam("postgres")
    return subprocess.run(
        argv,
        input=stdin,
        capture_output=True,
        text=True,
        user=pw.pw_uid,
        group=pw.pw_gid,
        extra_groups=[],
        cwd="/",
        env=dict(env) if env is not None else None,
        timeout=timeout,
        check=False,
    )


@contextlib.contextmanager
def postgres_root() -> Iterator[Path]:
    """A directory the postgres user can reach (pytest's tmp dirs are root-only)."""
    path = Path(tempfile.mkdtemp(prefix="pgsteady-patroni-"))
    os.chmod(path, 0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def start_member(
    lab: EtcdLab,
    root: Path,
    name: str,
    rest_pw: str,
    parameters: Mapping[str, Any] | None = None,
) -> Live:
    """Render and start member ``name``'s Patroni under ``root/name``; ``parameters``
    are merged into the DCS document's (read by the member that bootstraps)."""
    return launch(render_member(lab, root, name, rest_pw, parameters), name)


def render_member(
    lab: EtcdLab,
    root: Path,
    name: str,
    rest_pw: str,
    parameters: Mapping[str, Any] | None = None,
    post_bootstrap: str | None = None,
) -> Path:
    """Member ``name``'s directory ``root/name``: certificates, and its rendered
    configuration in ``conf/`` (10-pgsteady.yml, 90-secrets.yml), owned by postgres."""
    pw = pwd.getpwnam("postgres")
    c, d = lab.cluster, root / name
    d.mkdir(mode=0o700)
    for src in ("ca.crt", f"{name}/server.crt", f"{name}/server.key"):
        shutil.copy(lab.tmp / src, d / Path(src).name)
    cert, key = issue_etcd_client_cert(lab.ca, name)
    (d / "etcd-client.crt").write_bytes(cert)
    (d / "etcd-client.key").write_bytes(key)
    (d / "custom.conf").touch()
    paths = patroni.PatroniPaths(
        data_dir=str(d / "data"),
        bin_dir=str(BIN_DIR),
        ca_file=str(d / "ca.crt"),
        cert_file=str(d / "server.crt"),
        key_file=str(d / "server.key"),
        etcd_cert_file=str(d / "etcd-client.crt"),
        etcd_key_file=str(d / "etcd-client.key"),
        pgpass=str(d / "pgpass"),
        custom_conf=str(d / "custom.conf"),
        post_bootstrap=post_bootstrap,
    )
    params = {"shared_buffers": "32MB", "max_connections": "20", "ssl": "on"}
    params.update(parameters or {})
    hba = [
        "local all all peer",
        # the members dial each other from 127.0.0.1 here (their own address on a host),
        # with the product's members-only rule (password and a client certificate)
        patroni.member_hba_line("replication", patroni.REPLICATION_USER, "127.0.0.1/32"),
        patroni.member_hba_line("postgres", patroni.REWIND_USER, "127.0.0.1/32"),
        "hostssl postgres postgres 127.0.0.1/32 scram-sha-256",  # the client via HAProxy
    ]
    dcs = patroni.dcs_document(c, params, hba)
    config = yaml.safe_load(patroni.render_patroni_yml(c, c.member(name), paths, dcs))
    config["postgresql"]["parameters"] = {  # same path on every real host; not here
        "unix_socket_directories": str(d),
        "ssl_cert_file": paths.cert_file,
        "ssl_key_file": paths.key_file,
        "ssl_ca_file": paths.ca_file,
    }
    conf = d / "conf"
    conf.mkdir(mode=0o700)
    (conf / "10-pgsteady.yml").write_text(yaml.safe_dump(config))
    secret = conf / "90-secrets.yml"
    secret.touch(mode=0o600)
    secret.write_text(
        patroni.render_secrets_yml(
            SUPERUSER_PW, REPLICATION_PW, REWIND_PW, rest_pw, lab.passwords["patroni"]
        )
    )
    for path in [d, *d.rglob("*")]:
        os.chown(path, pw.pw_uid, pw.pw_gid)
    return d


def launch(d: Path, name: str) -> Live:
    """Start Patroni on member ``name``'s rendered directory ``d`` (a first start, or a
    start after a crash: the data directory is kept)."""
    pw = pwd.getpwnam("postgres")
    conf = d / "conf"
    log = d.parent / f"{name}.log"
    proc = subprocess.Popen(
        [patroni_bin(), str(conf)],
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        user=pw.pw_uid,
        group=pw.pw_gid,
        extra_groups=[],
        cwd=d,
        env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": str(d)},
    )
    return Live(name, d, proc, log)


def stop(member: Live) -> None:
    """Patroni stops Postgres on SIGTERM; a postmaster left behind is killed by its PID."""
    proc = member.proc
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    pidfile = member.dir / "data" / "postmaster.pid"
    if pidfile.exists():
        with contextlib.suppress(ValueError, ProcessLookupError):
            os.kill(int(pidfile.read_text().split()[0]), signal.SIGKILL)


def wait_status(member: Live, url: str, ca: Path, status: int, timeout: float = 180) -> None:
    """Until ``url`` answers ``status``; fails with the member's log if it exits or times out."""
    deadline = time.monotonic() + timeout
    while https(url, ca)[0] != status:
        assert member.proc.poll() is None, member.tail()
        assert time.monotonic() < deadline, member.tail()
        time.sleep(1)


@dataclass
class PatroniLab:
    """The running members of a live cluster and what a client needs to reach them."""

    etcd: EtcdLab
    root: Path
    rest_pw: str
    parameters: Mapping[str, Any] | None = None
    members: dict[str, Live] = field(default_factory=dict)

    @property
    def cluster(self) -> Cluster:
        return self.etcd.cluster

    @property
    def ca(self) -> Path:
        return self.etcd.tmp / "ca.crt"

    @property
    def client(self) -> tuple[Path, Path]:
        """A client certificate (clientAuth only) from the cluster's CA."""
        return (self.etcd.tmp / "client.crt", self.etcd.tmp / "client.key")

    @property
    def auth(self) -> tuple[str, str]:
        return (patroni.REST_USER, self.rest_pw)

    def api(self, name: str) -> str:
        return f"https://{self.cluster.member(name).address}:{self.cluster.rest_port}"

    def request(
        self,
        name: str,
        path: str,
        method: str = "GET",
        data: str = "{}",
        gated: bool = False,
        timeout: float = 5,
    ) -> tuple[int, str]:
        """One call to member ``name``'s REST API; ``gated`` adds certificate and password.
        (POST /switchover answers only once the switchover is done: give it time.)"""
        if gated:
            return https(
                self.api(name) + path, self.ca, method, self.client, self.auth, data,
                timeout=timeout,
            )  # fmt: skip
        return https(self.api(name) + path, self.ca, method, data=data, timeout=timeout)

    def start(self, name: str) -> Live:
        live = start_member(self.etcd, self.root, name, self.rest_pw, self.parameters)
        self.members[name] = live
        return live

    def restart(self, name: str) -> Live:
        """Start member ``name``'s Patroni again on its kept directory (after a crash)."""
        live = launch(self.root / name, name)
        self.members[name] = live
        return live

    def stop(self, name: str) -> None:
        """Stop member ``name`` (SIGTERM: Patroni stops Postgres and leaves the cluster)."""
        stop(self.members.pop(name))

    def wait_role(self, name: str, role: str, timeout: float = 180) -> None:
        """Until ``name`` answers 200 on /primary, or on /replica within the lag limit."""
        path = "/primary" if role == "primary" else f"/replica?lag={self.cluster.replica_max_lag}"
        wait_status(self.members[name], self.api(name) + path, self.ca, 200, timeout)

    def wait_streaming(self, leader: str, replica: str, timeout: float = 60) -> None:
        """Until ``replica``'s WAL receiver shows as streaming in ``leader``'s view
        (/replica answers 200 a moment before the receiver connects)."""
        query = (
            "SELECT count(*) FROM pg_stat_replication "
            f"WHERE state = 'streaming' AND application_name = '{replica}'"
        )
        deadline = time.monotonic() + timeout
        while self.members[leader].sql(self.cluster.member_port, query) != "1":
            assert time.monotonic() < deadline, self.members[replica].tail()
            time.sleep(0.5)

    def leader(self) -> str:
        """The value of the leader key in etcd ('' when there is none)."""
        c = self.cluster
        res = self.etcd.ctl("get", c.prefix + "leader", "--print-value-only", user="patroni")
        return res.stdout.strip()


@contextlib.contextmanager
def running_patroni(
    tmp: Path,
    members: Sequence[str] = ("m1", "m2"),
    parameters: Mapping[str, Any] | None = None,
    cluster_changes: Mapping[str, Any] | None = None,
) -> Iterator[PatroniLab]:
    """etcd, then ``members[0]`` as the primary, then the others streaming from it.
    ``cluster_changes`` replace fields of the lab's topology.Cluster before any member
    starts (e.g. ``{"ttl": 20, "synchronous_mode": True}``: the bootstrap DCS document)."""
    require_file(str(BIN_DIR / "pg_ctl"), "postgresql-15")
    patroni_bin()
    with running_etcd(tmp) as etcd_lab, postgres_root() as root:
        if cluster_changes:
            etcd_lab.cluster = dataclasses.replace(etcd_lab.cluster, **cluster_changes)
        lab = PatroniLab(etcd_lab, root, secrets.token_urlsafe(16), parameters)
        try:
            first, *others = members
            lab.start(first)
            lab.wait_role(first, "primary")
            for name in others:
                lab.start(name)
            for name in others:
                lab.wait_role(name, "replica")
                lab.wait_streaming(first, name)
            yield lab
        finally:
            for name in reversed(list(lab.members)):
                lab.stop(name)


@contextlib.contextmanager
def haproxy_in_front(lab: EtcdLab, root: Path) -> Iterator[None]:
    """The rendered haproxy.cfg of m1, run by the real HAProxy, stopped by its PID."""
    c = lab.cluster
    cfg = root / "haproxy.cfg"
    # the checks' client certificate, its key beside it as <crt>.key (as on a member)
    client = root / "haproxy-client.crt"
    shutil.copy(lab.tmp / "client.crt", client)
    shutil.copy(lab.tmp / "client.key", f"{client}.key")
    ca, sock = str(lab.tmp / "ca.crt"), str(root / "h.sock")
    cfg.write_text(render_haproxy_cfg(c, c.member("m1"), ca, sock, client_cert=str(client)))
    shutil.copy(lab.tmp / "ca.crt", root / "ca")
    log = (root / "haproxy.log").open("ab")
    proc = subprocess.Popen([require("haproxy"), "-db", "-f", str(cfg)], stdout=log, stderr=log)
    try:
        yield
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)


def reaches(lab: EtcdLab, root: Path, port: int, expected: str, timeout: float = 60) -> None:
    """A new session through HAProxy's ``port`` lands on the member ``expected`` names
    ("<address>|<in recovery>")."""
    # verify-ca, not verify-full: through the proxy a client meets whichever member
    # serves, so member certificates need every member's name (issue 15, M2)
    env = {"PGPASSWORD": SUPERUSER_PW, "PGSSLMODE": "verify-ca", "PGSSLROOTCERT": str(root / "ca")}
    query = "SELECT inet_server_addr(), pg_is_in_recovery()"
    front = lab.cluster.member("m1").address
    deadline = time.monotonic() + timeout
    while True:
        out = subprocess.run(
            [str(BIN_DIR / "psql"), "-h", front, "-p", str(port), "-U", "postgres"]
            + ["-d", "postgres", "-XAtq", "-c", query],
            capture_output=True,
            text=True,
            env={**env, "PATH": "/usr/bin:/bin"},
            timeout=30,
            check=False,
        )
        if out.stdout.strip() == expected:
            return
        assert time.monotonic() < deadline, (port, expected, out.stdout, out.stderr)
        time.sleep(0.5)
