"""Real etcd members for the cluster integration tests: a CA and member certificates from
pgsteady.tls, members started from pgsteady's rendered argv on 127.0.0.2-4 and bootstrapped
with the rendered RBAC steps. Every process is started here and stopped by its PID."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from pgsteady import tls
from pgsteady.cluster import etcd
from pgsteady.cluster.topology import Cluster, cluster_from_mapping
from tests.support.cluster_binaries import require

ADDRESSES = ("127.0.0.2", "127.0.0.3", "127.0.0.4")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class EtcdLab:
    """The running members and the files a client needs."""

    cluster: Cluster
    tmp: Path
    etcd_bin: str
    etcdctl_bin: str
    token: str
    passwords: dict[str, str]
    ca: tls.Authority
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def paths(self, name: str) -> etcd.EtcdPaths:
        d = self.tmp / name
        return etcd.EtcdPaths(
            data_dir=str(d / "data"),
            ca_file=str(self.tmp / "ca.crt"),
            cert_file=str(d / "server.crt"),
            key_file=str(d / "server.key"),
            jwt_public_key=str(self.tmp / "jwt.pub"),
            jwt_private_key=str(self.tmp / "jwt.key"),
        )

    def start(self, name: str) -> None:
        argv = etcd.member_args(
            self.cluster, self.cluster.member(name), self.paths(name), self.token
        )
        log = (self.tmp / f"{name}.log").open("ab")
        self.procs[name] = subprocess.Popen(
            [self.etcd_bin, *argv[1:]], stdout=log, stderr=log, stdin=subprocess.DEVNULL
        )

    def stop(self, name: str) -> None:
        proc = self.procs.pop(name)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)

    def ctl(
        self,
        *args: str,
        cert: bool = True,
        user: str | None = None,
        stdin: str | None = None,
        endpoints: list[str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """etcdctl as the admin client certificate (or none); ``user``'s password goes
        through etcdctl's environment here, as a test client only."""
        base = etcd.etcdctl_base(
            endpoints or etcd.client_urls(self.cluster),
            str(self.tmp / "ca.crt"),
            str(self.tmp / "client.crt"),
            str(self.tmp / "client.key"),
        )
        if not cert:
            base = [a for a in base if not a.startswith(("--cert=", "--key="))]
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "ETCDCTL_API": "3"}
        if user:
            env["ETCDCTL_USER"] = f"{user}:{self.passwords[user]}"
        return subprocess.run(
            [self.etcdctl_bin, *base[1:], "--command-timeout=3s", "--dial-timeout=2s", *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )

    def wait_healthy(self, count: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            proc = self.ctl("put", "/service/probe", "x", user="root")
            health = self.ctl("endpoint", "health", user="root")
            # etcdctl 3.4 prints the health lines on stderr
            if proc.returncode == 0 and health.stderr.count("is healthy") >= count:
                return
            if time.monotonic() > deadline:
                logs = "".join((self.tmp / f"{n}.log").read_text()[-2000:] for n in self.procs)
                raise AssertionError(f"etcd not healthy: {proc.stderr} {health.stderr}\n{logs}")
            time.sleep(0.5)


def write_pki(tmp: Path, cluster: Cluster) -> tls.Authority:
    ca = tls.create_ca("cluster-test")
    (tmp / "ca.crt").write_bytes(ca.cert_pem)
    for m in cluster.members:
        (tmp / m.name).mkdir(mode=0o700)
        # The names the design gives a member: name, private address, loopback (a peer
        # dialling from this host shows 127.0.0.1 as its source; etcd checks it).
        cert, key = tls.issue_server_cert(ca, [m.name, m.address, "127.0.0.1"])
        (tmp / m.name / "server.crt").write_bytes(cert)
        (tmp / m.name / "server.key").write_bytes(key)
        os.chmod(tmp / m.name / "server.key", 0o600)
    cert, key = tls.issue_server_cert(ca, ["pgsteady-admin"], usages=tls.CLIENT_ONLY)
    (tmp / "client.crt").write_bytes(cert)
    (tmp / "client.key").write_bytes(key)
    jwt = ec.generate_private_key(ec.SECP256R1())
    (tmp / "jwt.key").write_bytes(
        jwt.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    (tmp / "jwt.pub").write_bytes(
        jwt.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return ca


@contextmanager
def running_etcd(tmp: Path) -> Iterator[EtcdLab]:
    """3 bootstrapped members (auth on) with their files under ``tmp``."""
    etcd_bin, etcdctl_bin = require("etcd"), require("etcdctl")
    cluster = cluster_from_mapping(
        {
            "postgres_cluster_name": "itest",
            "members": [{"name": f"m{i}", "address": a} for i, a in enumerate(ADDRESSES, 1)],
            "etcd_client_port": free_port(),
            "etcd_peer_port": free_port(),
            "patroni_rest_port": free_port(),
            "postgres_member_port": free_port(),
            "etcd_heartbeat_interval_ms": 250,
            "etcd_election_timeout_ms": 2500,
        }
    )
    ca = write_pki(tmp, cluster)
    passwords = {"root": secrets.token_urlsafe(24), "patroni": secrets.token_urlsafe(24)}
    lab = EtcdLab(cluster, tmp, etcd_bin, etcdctl_bin, secrets.token_hex(8), passwords, ca)
    try:
        for m in cluster.etcd_members:
            lab.start(m.name)
        deadline = time.monotonic() + 60
        while lab.ctl("endpoint", "health").stderr.count("is healthy") < 3:
            assert time.monotonic() < deadline, "the 3 members never became healthy"
            time.sleep(0.5)
        for step in etcd.auth_bootstrap(cluster):
            secret = passwords[step.stdin_secret] + "\n" if step.stdin_secret else None
            proc = lab.ctl(*step.args, stdin=secret)
            assert proc.returncode == 0, (step, proc.stdout, proc.stderr)
        lab.wait_healthy(3)
        yield lab
    finally:
        for name in list(lab.procs):
            lab.stop(name)
