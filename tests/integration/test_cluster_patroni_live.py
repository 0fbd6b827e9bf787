"""REAL Patroni 3.0.2 members started from the rendered files (as the postgres user, with
the host's Postgres 15) against 3 real etcd members with TLS and RBAC on.

Proves: Patroni authenticates to etcd as its prefix-limited user over a CN-less client
certificate and takes the leader key; its REST API answers over verified HTTPS and gates
state-changing calls by source, client certificate and password; a second member clones
the leader with pg_basebackup and streams over TLS as the replication role, checking the
leader's certificate (sslmode=verify-full), and /replica?lag= says 200 for it; the rendered
haproxy.cfg, run by the real HAProxy, sends postgres_port to the leader and
postgres_replica_port to the replica, and follows a switchover made through the REST API.

Both members share this host, so each gets its own socket directory and certificate
paths as local parameters, which on real hosts are the same path on every member; and
the replicas dial from 127.0.0.1 here, which one extra pg_hba line admits (on real hosts
they dial from their private address, which the rendered per-member lines admit).
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
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
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from pgsteady.cluster import patroni
from pgsteady.cluster.certs import issue_etcd_client_cert
from pgsteady.cluster.haproxy import render_haproxy_cfg
from tests.support.cluster_binaries import require, require_file
from tests.support.etcd_lab import ADDRESSES, EtcdLab, running_etcd

BIN_DIR = Path("/usr/lib/postgresql/15/bin")
pytestmark = pytest.mark.timeout(600)


def https(
    url: str,
    ca: Path,
    method: str = "GET",
    cert: tuple[Path, Path] | None = None,
    auth: tuple[str, str] | None = None,
    data: str = "{}",
    source: str = ADDRESSES[1],
) -> tuple[int, str]:
    """(status, body) of one HTTPS request verified with ``ca``, sent from ``source``
    (default: member m2's address, as a peer or its HAProxy would); (0, "") when refused."""
    ctx = ssl.create_default_context(cafile=str(ca))
    if cert:
        ctx.load_cert_chain(str(cert[0]), str(cert[1]))
    parsed = urllib.parse.urlsplit(url)
    conn = http.client.HTTPSConnection(
        str(parsed.hostname), parsed.port, context=ctx, timeout=5, source_address=(source, 0)
    )
    headers = {"Content-Type": "application/json"}
    if auth:
        headers["Authorization"] = "Basic " + base64.b64encode(":".join(auth).encode()).decode()
    try:
        conn.request(
            method, parsed.path, body=data.encode() if method == "POST" else None, headers=headers
        )
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
            [str(BIN_DIR.parent / "bin/psql"), "-h", str(self.dir), "-p", str(port)]
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


@pytest.fixture
def root() -> Iterator[Path]:
    """A directory the postgres user can reach (pytest's tmp dirs are root-only)."""
    path = Path(tempfile.mkdtemp(prefix="pgsteady-patroni-"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def render_member(
    lab: EtcdLab, root: Path, name: str, post_bootstrap: str | None = None
) -> tuple[Path, dict]:
    """Member ``name``'s directory ``root/name`` (certificates, an empty custom.conf) and
    its rendered Patroni configuration, with this host's per-member local parameters."""
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
    hba = [
        "local all all peer",
        "hostssl replication replicator 127.0.0.1/32 scram-sha-256",
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
    return d, config


def start_member(lab: EtcdLab, root: Path, name: str, rest_pw: str) -> Live:
    """Render and start member ``name``'s Patroni under ``root/name``."""
    pw = pwd.getpwnam("postgres")
    d, config = render_member(lab, root, name)
    conf = d / "conf"
    conf.mkdir(mode=0o700)
    (conf / "10-pgsteady.yml").write_text(yaml.safe_dump(config))
    secret = conf / "90-secrets.yml"
    secret.touch(mode=0o600)
    secret.write_text(
        patroni.render_secrets_yml("su-pw", "repl-pw", rest_pw, lab.passwords["patroni"])
    )
    for path in [d, *d.rglob("*")]:
        os.chown(path, pw.pw_uid, pw.pw_gid)
    log = d.parent / f"{name}.log"
    proc = subprocess.Popen(
        [require("patroni"), str(conf)],
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
    deadline = time.monotonic() + timeout
    while https(url, ca)[0] != status:
        assert member.proc.poll() is None, member.tail()
        assert time.monotonic() < deadline, member.tail()
        time.sleep(1)


def test_patroni_leads_clones_over_tls_and_guards_its_rest_api(tmp_path: Path, root: Path) -> None:
    require_file(str(BIN_DIR / "pg_ctl"), "postgresql-15")
    require("patroni")
    rest_pw = secrets.token_urlsafe(16)
    members: list[Live] = []
    with running_etcd(tmp_path) as lab:
        c, ca = lab.cluster, lab.tmp / "ca.crt"
        try:
            m1 = start_member(lab, root, "m1", rest_pw)
            members.append(m1)
            base = f"https://{c.member('m1').address}:{c.rest_port}"
            wait_status(m1, f"{base}/primary", ca, 200)
            leader = lab.ctl("get", c.prefix + "leader", "--print-value-only", user="patroni")
            assert leader.stdout.strip() == "m1", leader.stderr

            # the REST API's gates on a state-changing call
            client = (lab.tmp / "client.crt", lab.tmp / "client.key")
            auth, wrong = ("patroni", rest_pw), ("patroni", "not-it")
            reload = f"{base}/reload"
            outsider = https(reload, ca, "POST", cert=client, auth=auth, source="127.0.0.9")
            assert outsider == (403, "Access is denied")
            assert https(reload, ca, "POST", auth=auth) == (403, "client certificate required")
            assert https(reload, ca, "POST", cert=client)[0] == 401
            assert https(reload, ca, "POST", cert=client, auth=wrong)[0] == 401
            # the control: certificate, password and an allowed source together pass
            assert https(reload, ca, "POST", cert=client, auth=auth)[0] in (200, 202)

            m1.sql(c.member_port, "CREATE TABLE probe (x int); INSERT INTO probe VALUES (42)")
            m2 = start_member(lab, root, "m2", rest_pw)
            members.append(m2)
            m2_api = f"https://{c.member('m2').address}:{c.rest_port}"
            lag = f"{m2_api}/replica?lag={c.replica_max_lag}"
            wait_status(m2, lag, ca, 200)
            assert https(f"{m2_api}/primary", ca)[0] == 503
            assert https(f"{base}/replica", ca)[0] == 503

            # /replica answers 200 once m2 runs as a replica within the lag limit, which can
            # come a moment before its WAL receiver has connected: wait for the stream.
            deadline, rows = time.monotonic() + 60, ""
            while time.monotonic() < deadline:
                rows = m1.sql(
                    c.member_port,
                    "SELECT r.usename, r.application_name, s.ssl FROM pg_stat_replication r "
                    "JOIN pg_stat_ssl s USING (pid) WHERE r.state = 'streaming'",
                )
                if rows:
                    break
                time.sleep(0.5)
            assert rows == "replicator|m2|t"
            conninfo = m2.sql(c.member_port, "SHOW primary_conninfo")
            assert "sslmode=verify-full" in conninfo and "sslrootcert=" in conninfo
            assert "password" not in conninfo  # it comes from the 0600 pgpass file
            deadline = time.monotonic() + 60
            while m2.sql(c.member_port, "SELECT coalesce(max(x), 0) FROM probe") != "42":
                assert time.monotonic() < deadline, "the row never reached the replica"
                time.sleep(1)
            with haproxy_in_front(lab, root):
                reaches(lab, root, c.postgres_port, "127.0.0.2|f")
                reaches(lab, root, c.replica_port, "127.0.0.3|t")
                # a switchover through the gated REST API: the leader moves, the old one
                # rejoins as a replica, and HAProxy follows both
                body = json.dumps({"leader": "m1", "candidate": "m2"})
                switch = https(f"{base}/switchover", ca, "POST", client, auth, data=body)
                assert switch[0] == 200, switch
                wait_status(m2, f"{m2_api}/primary", ca, 200, timeout=60)
                reaches(lab, root, c.postgres_port, "127.0.0.3|f")
                reaches(lab, root, c.replica_port, "127.0.0.2|t", timeout=120)
        finally:
            for member in reversed(members):
                stop(member)


@contextlib.contextmanager
def haproxy_in_front(lab: EtcdLab, root: Path) -> Iterator[None]:
    """The rendered haproxy.cfg of m1, run by the real HAProxy, stopped by its PID."""
    c = lab.cluster
    cfg = root / "haproxy.cfg"
    cfg.write_text(
        render_haproxy_cfg(c, c.member("m1"), str(lab.tmp / "ca.crt"), str(root / "h.sock"))
    )
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
    env = {"PGPASSWORD": "su-pw", "PGSSLMODE": "verify-ca", "PGSSLROOTCERT": str(root / "ca")}
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
