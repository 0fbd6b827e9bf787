"""The rendered Patroni configuration checked by the REAL Patroni (Debian's 3.0.2):
`patroni --validate-config` on the directory Patroni will read (10-pgsteady.yml and the
0600 90-secrets.yml, merged in name order), for every member of a 3-member cluster.

Patroni 3.0.2's validator dials the etcd hosts and refuses a listen port already taken,
so the test listens on the etcd addresses and checks that a taken port is refused.
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
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from pgsteady.cluster import patroni
from pgsteady.cluster.certs import issue_etcd_client_cert
from pgsteady.cluster.topology import Cluster, cluster_from_mapping
from tests.support.cluster_binaries import require, require_file
from tests.support.etcd_lab import running_etcd

ADDRESSES = ("127.0.0.2", "127.0.0.3", "127.0.0.4")
BIN_DIR = Path("/usr/lib/postgresql/15/bin")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    c = cluster_from_mapping(
        {
            "postgres_cluster_name": "itest",
            "members": [{"name": f"m{i}", "address": a} for i, a in enumerate(ADDRESSES, 1)],
            "etcd_client_port": free_port(),
            "patroni_rest_port": free_port(),
            "postgres_member_port": free_port(),
        }
    )
    listeners = []
    for m in c.etcd_members:  # stand-ins the validator can dial
        s = socket.socket()
        s.bind((m.address, c.etcd_client_port))
        s.listen()
        listeners.append(s)
    yield c
    for s in listeners:
        s.close()


def write_config(tmp: Path, c: Cluster, name: str) -> Path:
    conf = tmp / f"conf-{name}"
    conf.mkdir(mode=0o700)
    paths = dataclasses.replace(
        patroni.container_paths(15), data_dir=str(tmp / f"data-{name}"), bin_dir=str(BIN_DIR)
    )
    dcs = patroni.dcs_document(
        c, {"shared_buffers": "128MB", "ssl": "on"}, ["hostssl all all 0.0.0.0/0 scram-sha-256"]
    )
    (conf / "10-pgsteady.yml").write_text(patroni.render_patroni_yml(c, c.member(name), paths, dcs))
    secrets = conf / "90-secrets.yml"
    secrets.touch(mode=0o600)
    secrets.write_text(patroni.render_secrets_yml("su-pw", "repl-pw", "rest-pw", "etcd-pw"))
    return conf


def validate(conf: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require("patroni"), "--validate-config", str(conf)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_patroni_validates_every_members_rendered_config(cluster: Cluster, tmp_path: Path) -> None:
    require_file(str(BIN_DIR / "pg_ctl"), "postgresql-15")
    for m in cluster.members:
        conf = write_config(tmp_path, cluster, m.name)
        proc = validate(conf)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert os.stat(conf / "90-secrets.yml").st_mode & 0o077 == 0


def test_the_validator_reads_what_was_rendered(cluster: Cluster, tmp_path: Path) -> None:
    """The control: with m1's REST port taken, Patroni refuses m1's rendered listen."""
    conf = write_config(tmp_path, cluster, "m1")
    with socket.socket() as taken:
        taken.bind((ADDRESSES[0], cluster.rest_port))
        taken.listen()
        proc = validate(conf)
    assert proc.returncode != 0
    assert f"Port {cluster.rest_port} is already in use" in proc.stdout + proc.stderr


# --- a real Patroni leading through the real etcd -------------------------------------


def https(
    url: str,
    ca: Path,
    method: str = "GET",
    cert: tuple[Path, Path] | None = None,
    auth: tuple[str, str] | None = None,
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
        conn.request(method, parsed.path, body=b"{}" if method == "POST" else None, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read().decode(errors="replace")
    except OSError:
        return 0, ""
    finally:
        conn.close()


@pytest.fixture
def postgres_dir() -> Iterator[Path]:
    """A directory the postgres user owns (pytest's tmp dirs are root-only)."""
    pw = pwd.getpwnam("postgres")
    path = Path(tempfile.mkdtemp(prefix="pgsteady-patroni-"))
    os.chown(path, pw.pw_uid, pw.pw_gid)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def stop(proc: subprocess.Popen[bytes], data_dir: Path) -> None:
    """Patroni stops Postgres on SIGTERM; a postmaster left behind is killed by its PID."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    pidfile = data_dir / "postmaster.pid"
    if pidfile.exists():
        with contextlib.suppress(ValueError, ProcessLookupError):
            os.kill(int(pidfile.read_text().split()[0]), signal.SIGKILL)


def test_patroni_leads_through_etcd_rbac_and_guards_its_rest_api(
    tmp_path: Path, postgres_dir: Path
) -> None:
    """Patroni started from the rendered files (as the postgres user) against 3 real etcd
    members with auth on: it authenticates as its prefix-limited user and takes the leader
    key; GET /primary answers 200 over verified HTTPS; an unsafe call (POST /reload) needs
    both a client certificate from the CA and the REST password."""
    patroni_bin = require("patroni")
    bin_dir = Path(require_file(str(BIN_DIR / "pg_ctl"), "postgresql-15")).parent
    pw = pwd.getpwnam("postgres")
    with running_etcd(tmp_path) as lab:
        c, d = lab.cluster, postgres_dir
        for name in ("ca.crt", "m1/server.crt", "m1/server.key"):
            shutil.copy(lab.tmp / name, d / Path(name).name)
        cert, key = issue_etcd_client_cert(lab.ca, "m1")
        (d / "etcd-client.crt").write_bytes(cert)
        (d / "etcd-client.key").write_bytes(key)
        for name in ("ca.crt", "server.crt", "server.key", "etcd-client.crt", "etcd-client.key"):
            os.chmod(d / name, 0o600)
            os.chown(d / name, pw.pw_uid, pw.pw_gid)
        (d / "custom.conf").touch()
        paths = patroni.PatroniPaths(
            data_dir=str(d / "data"),
            bin_dir=str(bin_dir),
            ca_file=str(d / "ca.crt"),
            cert_file=str(d / "server.crt"),
            key_file=str(d / "server.key"),
            etcd_cert_file=str(d / "etcd-client.crt"),
            etcd_key_file=str(d / "etcd-client.key"),
            pgpass=str(d / "pgpass"),
            custom_conf=str(d / "custom.conf"),
        )
        params = {
            "shared_buffers": "32MB",
            "max_connections": "20",
            "unix_socket_directories": str(d),
            "ssl": "on",
            "ssl_cert_file": paths.cert_file,
            "ssl_key_file": paths.key_file,
            "ssl_ca_file": paths.ca_file,
        }
        dcs = patroni.dcs_document(c, params, ["local all all peer"])
        conf = d / "conf"
        conf.mkdir(mode=0o700)
        (conf / "10-pgsteady.yml").write_text(
            patroni.render_patroni_yml(c, c.member("m1"), paths, dcs)
        )
        rest_pw = secrets.token_urlsafe(16)
        (conf / "90-secrets.yml").write_text(
            patroni.render_secrets_yml("su-pw", "repl-pw", rest_pw, lab.passwords["patroni"])
        )
        os.chmod(conf / "90-secrets.yml", 0o600)
        for p in (conf, conf / "10-pgsteady.yml", conf / "90-secrets.yml", d / "custom.conf"):
            os.chown(p, pw.pw_uid, pw.pw_gid)
        log = (tmp_path / "patroni.log").open("ab")
        proc = subprocess.Popen(
            [patroni_bin, str(conf)],
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            user=pw.pw_uid,
            group=pw.pw_gid,
            extra_groups=[],
            cwd=d,
            env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": str(d)},
        )
        try:
            base = f"https://{c.member('m1').address}:{c.rest_port}"
            deadline = time.monotonic() + 120
            while https(f"{base}/primary", lab.tmp / "ca.crt")[0] != 200:
                assert proc.poll() is None, (tmp_path / "patroni.log").read_text()[-3000:]
                assert time.monotonic() < deadline, (tmp_path / "patroni.log").read_text()[-3000:]
                time.sleep(1)
            leader = lab.ctl("get", c.prefix + "leader", "--print-value-only", user="patroni")
            assert leader.stdout.strip() == "m1", leader.stderr
            ca, client = lab.tmp / "ca.crt", (lab.tmp / "client.crt", lab.tmp / "client.key")
            auth, wrong = ("patroni", rest_pw), ("patroni", "not-it")
            reload = f"{base}/reload"
            assert https(reload, ca, "POST", cert=client, auth=auth, source="127.0.0.9") == (
                403,
                "Access is denied",
            )
            assert https(reload, ca, "POST", auth=auth) == (403, "client certificate required")
            assert https(reload, ca, "POST", cert=client)[0] == 401
            assert https(reload, ca, "POST", cert=client, auth=wrong)[0] == 401
            # the control: certificate, password and an allowed source together are let in
            assert https(reload, ca, "POST", cert=client, auth=auth)[0] in (200, 202)
            # safe endpoints stay open to the health checks (no certificate, no password)
            assert https(f"{base}/replica", ca)[0] == 503
        finally:
            stop(proc, d / "data")
