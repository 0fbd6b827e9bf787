"""Real etcd members for the cluster integration tests: the cluster's etcd CA and member
certificates from pgsteady.cluster.certs (and, apart, an inventory CA that etcd must not
trust: inventory/, with a Postgres-style server certificate), members started from
pgsteady's rendered argv on 127.0.0.2-4 and bootstrapped with the rendered RBAC steps.
Every process is started here and stopped by its PID."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from pgsteady import tls
from pgsteady.cluster import certs, etcd
from pgsteady.cluster.topology import Cluster, cluster_from_mapping
from tests.support.cluster_binaries import require
from tests.support.ports import free_port

ADDRESSES = ("127.0.0.2", "127.0.0.3", "127.0.0.4")


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
        pair: tuple[Path, Path] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """etcdctl as the admin client certificate (``pair``: that certificate and key
        instead; ``cert=False``: none); ``user``'s password goes through etcdctl's
        environment here, as a test client only."""
        crt, key = pair or (self.tmp / "client.crt", self.tmp / "client.key")
        base = etcd.etcdctl_base(
            endpoints or etcd.client_urls(self.cluster),
            str(self.tmp / "ca.crt"),
            str(crt),
            str(key),
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
    """The etcd CA (returned; ``ca.crt``), each member's certificate as the deploy issues
    it, an admin client certificate of that CA, and the inventory CA's Postgres-style
    certificate (``inventory/``: serverAuth and clientAuth, CN = a host name)."""
    ca = certs.create_etcd_ca("test", cluster.name)
    (tmp / "ca.crt").write_bytes(ca.cert_pem)
    for m in cluster.members:
        (tmp / m.name).mkdir(mode=0o700)
        cert, key = certs.issue_etcd_member_cert(ca, m.name, m.address)
        (tmp / m.name / "server.crt").write_bytes(cert)
        (tmp / m.name / "server.key").write_bytes(key)
        os.chmod(tmp / m.name / "server.key", 0o600)
    cert, key = tls.issue_server_cert(ca, ["pgsteady-admin"], usages=tls.CLIENT_ONLY)
    (tmp / "client.crt").write_bytes(cert)
    (tmp / "client.key").write_bytes(key)
    inventory = tls.create_ca("test")
    (tmp / "inventory").mkdir(mode=0o700)
    (tmp / "inventory" / "ca.crt").write_bytes(inventory.cert_pem)
    cert, key = tls.issue_server_cert(inventory, ["root", cluster.members[0].address])
    (tmp / "inventory" / "server.crt").write_bytes(cert)
    (tmp / "inventory" / "server.key").write_bytes(key)
    os.chmod(tmp / "inventory" / "server.key", 0o600)
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
            # HAProxy's ports too: another harness (a bench, another worktree) may hold
            # 5432/5433 on the same loopback aliases
            "postgres_port": free_port(),
            "postgres_replica_port": free_port(),
            "etcd_heartbeat_interval_ms": 250,
            "etcd_election_timeout_ms": 2500,
            # the harness's tests pick the durability mode per test (failover_lab.py's
            # trials run both); asynchronous as before unless a test asks for synchronous
            "postgres_synchronous_mode": False,
            "postgres_accept_failover_commit_loss": True,
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
