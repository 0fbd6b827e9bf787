"""etcd on a cluster's etcd hosts: its files before the stack starts, its RBAC once after.

The cluster's shared values (the etcd root and patroni passwords, the ES256 key etcd signs
its tokens with, the initial cluster token, and the cluster's own etcd CA) are made once on
the deploy machine, beside the inventory's CA (0600 in 0700 directories), and reach the
hosts over the deploy's own channel, compared by hash and never shown: the
tasks/pgbackrest_peers.py pattern. etcd trusts only the etcd CA (pgsteady/cluster/certs.py);
a running etcd whose CA file changed (a cluster deployed before it had one) is restarted
on every etcd host in the same operation, so the cluster never runs split between CAs.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
import tempfile
from collections.abc import Callable
from io import StringIO
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pyinfra import host
from pyinfra.api.exceptions import DeployError
from pyinfra.api.operation import OperationMeta
from pyinfra.facts.files import File
from pyinfra.operations import files, server

from pgsteady.ca_store import load_or_create_ca
from pgsteady.cluster import certs
from pgsteady.cluster import etcd_service as svc
from pgsteady.cluster.topology import Cluster
from pgsteady.settings import Settings
from pgsteady.stack.hostfiles import Owned, root_only
from pgsteady.tls import Authority, TlsError
from tasks.cluster import cluster_folder, load_cluster
from tasks.ownership import directory_owned
from tasks.tls import ca_directory, private_file, renewal_needed


def cluster_secret(s: Settings, cluster: Cluster, name: str, make: Callable[[], bytes]) -> bytes:
    """The cluster's shared value ``name``: made once by ``make`` on the deploy machine,
    kept at <CA dir>/clusters/<cluster>/<name> (0600); every member's deploy reads it."""
    folder = cluster_folder(s, cluster)
    path = folder / name
    if not path.exists():
        # Written whole under a temporary name, then linked: the first deploy's value wins.
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".new-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(make())
                f.flush()
                os.fsync(f.fileno())
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)
        finally:
            os.unlink(tmp)
    st = os.lstat(path)
    if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
        raise DeployError(f"{path}: must be your own regular file, 0600: it is a cluster secret")
    return path.read_bytes()


def etcd_ca(s: Settings, cluster: Cluster) -> Authority:
    """The cluster's etcd CA: <CA dir>/clusters/<cluster>/etcd-ca/{ca.crt,ca.key}, made
    once (0600 in 0700, checked like the inventory CA by pgsteady.ca_store)."""
    folder = cluster_folder(s, cluster)
    label = ca_directory(s)[1]
    try:
        return load_or_create_ca(folder / "etcd-ca", certs.ca_label(label, cluster.name))
    except TlsError as exc:
        raise DeployError(f"TLS: {exc}") from None


def _password() -> bytes:
    return (secrets.token_urlsafe(32) + "\n").encode()


def _jwt_key() -> bytes:
    return ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _jwt_public(private_pem: bytes) -> bytes:
    key = serialization.load_pem_private_key(private_pem, password=None)
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _member_context(s: Settings) -> tuple[Cluster, Any] | None:
    cluster = load_cluster(s)
    if cluster is None:
        return None
    member = cluster.member(host.name)
    return (cluster, member) if member in cluster.etcd_members else None


def compose_service(s: Settings) -> dict[str, Any] | None:
    """This host's etcd service for docker-compose.yml (None: no etcd here)."""
    ctx = _member_context(s)
    return svc.service(s, *ctx) if ctx else None


def prepare(s: Settings) -> list[OperationMeta]:
    """The files the etcd service reads, before the stack starts (nothing off etcd hosts)."""
    ctx = _member_context(s)
    if ctx is None:
        return []
    cluster, member = ctx
    uid = svc.ETCD_UID
    directory_owned(root_only(s.layout.state, "700", directory=True), "Create the state directory")
    directory_owned(
        root_only(f"{s.app_dir}/etcd", "755", directory=True), "Create etcd's directory"
    )
    directory_owned(root_only(svc.secrets_dir(s), "700", directory=True), "Create etcd's secrets")
    # etcd reads its TLS and JWT files through its group; only root writes them.
    for path in (svc.tls_dir(s), svc.jwt_dir(s)):
        directory_owned(Owned(path, 0, uid, "750", True), f"Create {path} (root:etcd)")
    directory_owned(Owned(svc.data_dir(s), uid, uid, "700", True), "Create etcd's data directory")
    ops: list[OperationMeta] = []
    # Only the first etcd host runs the RBAC bootstrap, the passwords' only reader here
    # (Patroni's copy of its own is a member secret): no other etcd host holds them.
    bootstraps = member == cluster.etcd_members[0]
    for name in svc.PASSWORDS:
        dest = f"{svc.secrets_dir(s)}/{name}_password"
        if not bootstraps:
            what = f"Remove the etcd {name} password (the bootstrap host's only)"
            files.file(name=what, path=dest, present=False)
            continue
        ops.append(
            private_file(
                name=f"Upload the etcd {name} password (0600 root, not shown)",
                src=cluster_secret(s, cluster, f"etcd-{name}.password", _password),
                dest=dest,
                uid=0,
                gid=0,
                mode="600",
            )
        )
    jwt = cluster_secret(s, cluster, "etcd-jwt.key", _jwt_key)
    ops.append(
        private_file(
            name="Upload etcd's token signing key (0440 root:etcd, not shown)",
            src=jwt,
            dest=f"{svc.jwt_dir(s)}/jwt.key",
            uid=0,
            gid=uid,
            mode="440",
        )
    )
    ops.append(
        private_file(
            name="Upload etcd's token verifying key",
            src=_jwt_public(jwt),
            dest=f"{svc.jwt_dir(s)}/jwt.pub",
            uid=0,
            gid=uid,
            mode="440",
        )
    )
    ops.extend(_tls(s, cluster, member.name, member.address))
    env = f"{s.layout.state}/{svc.INITIAL_ENV}"
    if not host.get_fact(File, path=env):  # read by etcd's first start only: written once
        token = cluster_secret(
            s, cluster, "etcd-initial-token", lambda: secrets.token_hex(16).encode()
        )
        ops.append(
            files.put(
                name=f"Write {env} (etcd's first start; written once)",
                src=StringIO(svc.initial_env(cluster, token.decode().strip())),
                dest=env,
                user="root",
                group="root",
                mode="644",
            )
        )
    return ops


def _tls(s: Settings, cluster: Cluster, name: str, address: str) -> list[OperationMeta]:
    """etcd's CA file and member certificate (root:etcd 0440), issued anew when missing,
    not from the etcd CA, near expiry or naming other names (tasks/tls.renewal_needed).
    etcd reads its certificate and key at every handshake: a renewal needs no restart; a
    new CA file does (below)."""
    ca = etcd_ca(s, cluster)
    tls, uid = svc.tls_dir(s), svc.ETCD_UID
    ops = [
        private_file(
            name=f"Upload the cluster's etcd CA {tls}/ca.crt",
            src=ca.cert_pem,
            dest=f"{tls}/ca.crt",
            uid=0,
            gid=uid,
            mode="440",
        )
    ]
    crt, key = f"{tls}/server.crt", f"{tls}/server.key"
    reason = renewal_needed(crt, key, ca.cert_pem, certs.member_names(name, address))
    if reason is not None:
        cert, key_pem = certs.issue_etcd_member_cert(ca, name, address)
        for fname, data in (("server.crt", cert), ("server.key", key_pem)):
            ops.append(
                private_file(
                    name=f"Issue etcd's {tls}/{fname} ({reason}; not shown)",
                    src=data,
                    dest=f"{tls}/{fname}",
                    uid=0,
                    gid=uid,
                    mode="440",
                )
            )
    ca_op = ops[0]
    restart = (
        f"if docker inspect -f '{{{{.State.Running}}}}' {svc.container_name(s)} 2>/dev/null "
        f"| grep -qx true; then docker restart {svc.container_name(s)} >/dev/null; fi"
    )
    server.shell(
        name="Restart etcd for its new CA (every etcd host at once: no split between CAs)",
        commands=[restart],
        _if=lambda: ca_op.did_change(),
    )
    return ops


def bootstrap_auth(s: Settings) -> None:
    """Once, on the first etcd host, when every etcd member has started: root, Patroni's
    role and user, then ``auth enable``; guarded by a state file written last."""
    ctx = _member_context(s)
    if ctx is None or ctx[1] != ctx[0].etcd_members[0]:
        return
    cluster = ctx[0]
    done = f"{s.layout.state}/{svc.AUTH_DONE}"
    if host.get_fact(File, path=done):
        return
    wait = svc.wait_all_healthy(svc.container_ctl(s, cluster), 90)
    server.shell(
        name=f"Create etcd's users and roles, then enable auth (cluster {cluster.name})",
        commands=[wait, *svc.bootstrap_commands(s, cluster)],
    )
