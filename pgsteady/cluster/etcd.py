"""etcd for a cluster: one member's command line and the RBAC bootstrap as etcdctl argv.

Client and peer traffic are TLS with client-certificate authentication against the
cluster's own etcd CA (pgsteady/cluster/certs.py), never the inventory's; the peer port
takes only certificates with the members' Common Name. The member listens on its private
address (and on 127.0.0.1 for local clients when that address is not itself a loopback
one). Auth tokens are JWTs signed with an ES256 key made once per cluster (etcd's
"simple" tokens are not meant for production).
Passwords never appear in an argv: :class:`Step` says which secret goes to etcdctl's stdin.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from pgsteady.cluster.certs import MEMBER_CN
from pgsteady.cluster.topology import ETCD_USERS, Cluster, Member

#: Periodic compaction keeps one hour of history; the backend is capped at 512 MiB
#: (Patroni's keys are a few kB; the cap turns runaway growth into an alarm, not a full disk).
AUTO_COMPACTION_RETENTION = "1h"
QUOTA_BACKEND_BYTES = 512 * 1024 * 1024
ROOT_USER, PATRONI_USER = ETCD_USERS


@dataclass(frozen=True)
class EtcdPaths:
    """Where a member finds its data directory, TLS files and JWT signing keys."""

    data_dir: str
    ca_file: str
    cert_file: str
    key_file: str
    jwt_public_key: str
    jwt_private_key: str


@dataclass(frozen=True)
class Step:
    """One etcdctl call of the bootstrap: its arguments after the connection flags, and
    the secret (``"root"`` or ``"patroni"``) whose password is written to its stdin."""

    args: tuple[str, ...]
    stdin_secret: str | None = None
    #: an ``add`` whose user or role, if it exists already, is deleted first: whatever
    #: someone made before the bootstrap (another password, more roles or permissions)
    #: is gone, and the user or role is exactly what the following steps grant
    replace: bool = False


def _url(address: str, port: int) -> str:
    host = f"[{address}]" if ipaddress.ip_address(address).version == 6 else address
    return f"https://{host}:{port}"


def patroni_role(cluster: Cluster) -> str:
    return f"patroni-{cluster.name}"


def client_urls(cluster: Cluster) -> list[str]:
    """Every etcd member's client URL (what Patroni and etcdctl dial)."""
    return [_url(m.address, cluster.etcd_client_port) for m in cluster.etcd_members]


def peer_url(cluster: Cluster, member: Member) -> str:
    """``member``'s etcd peer URL."""
    return _url(member.address, cluster.etcd_peer_port)


def initial_cluster(cluster: Cluster) -> str:
    return ",".join(
        f"{m.name}={_url(m.address, cluster.etcd_peer_port)}" for m in cluster.etcd_members
    )


def member_args(
    cluster: Cluster, member: Member, paths: EtcdPaths, token: str, state: str = "new"
) -> list[str]:
    """The ``etcd`` argv of ``member``; ``token`` is the cluster's random initial token and
    ``state`` is ``new`` for a new cluster or ``existing`` for a member added later."""
    if member not in cluster.etcd_members:
        raise ValueError(f"{member.name} does not run etcd in cluster {cluster.name}")
    if state not in ("new", "existing"):
        raise ValueError(f"initial cluster state {state!r}: expected 'new' or 'existing'")
    client = [_url(member.address, cluster.etcd_client_port)]
    if not ipaddress.ip_address(member.address).is_loopback:
        client.append(_url("127.0.0.1", cluster.etcd_client_port))
    peer = _url(member.address, cluster.etcd_peer_port)
    jwt = (
        f"jwt,pub-key={paths.jwt_public_key},priv-key={paths.jwt_private_key},"
        "sign-method=ES256,ttl=10m"
    )
    return [
        "etcd",
        f"--name={member.name}",
        f"--data-dir={paths.data_dir}",
        f"--listen-client-urls={','.join(client)}",
        f"--advertise-client-urls={client[0]}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster={initial_cluster(cluster)}",
        f"--initial-cluster-state={state}",
        f"--initial-cluster-token={token}",
        "--client-cert-auth",
        f"--trusted-ca-file={paths.ca_file}",
        f"--cert-file={paths.cert_file}",
        f"--key-file={paths.key_file}",
        "--peer-client-cert-auth",
        f"--peer-trusted-ca-file={paths.ca_file}",
        f"--peer-cert-file={paths.cert_file}",
        f"--peer-key-file={paths.key_file}",
        f"--peer-cert-allowed-cn={MEMBER_CN}",
        f"--heartbeat-interval={cluster.etcd_heartbeat_ms}",
        f"--election-timeout={cluster.etcd_election_ms}",
        "--auto-compaction-mode=periodic",
        f"--auto-compaction-retention={AUTO_COMPACTION_RETENTION}",
        f"--quota-backend-bytes={QUOTA_BACKEND_BYTES}",
        f"--auth-token={jwt}",
        "--logger=zap",
        "--log-outputs=stderr",
    ]


def etcdctl_base(endpoints: list[str], ca_file: str, cert_file: str, key_file: str) -> list[str]:
    """etcdctl's connection flags: TLS verified with the CA, presenting a certificate."""
    return [
        "etcdctl",
        f"--endpoints={','.join(endpoints)}",
        f"--cacert={ca_file}",
        f"--cert={cert_file}",
        f"--key={key_file}",
    ]


def auth_bootstrap(cluster: Cluster) -> list[Step]:
    """The RBAC bootstrap, run once before auth is on: root (with the root role), a role
    limited to the cluster's key prefix, Patroni's user holding only that role, then
    ``auth enable``. The ``--interactive=false`` calls read the password from stdin; each
    user and the role are made anew (``replace``), so a user or role someone created
    before auth was on keeps neither its password nor its extra grants (review R8, L3)."""
    role = patroni_role(cluster)
    return [
        Step(("user", "add", ROOT_USER, "--interactive=false"), ROOT_USER, replace=True),
        Step(("user", "grant-role", ROOT_USER, "root")),
        Step(("role", "add", role), replace=True),
        Step(("role", "grant-permission", role, "--prefix=true", "readwrite", cluster.prefix)),
        Step(("user", "add", PATRONI_USER, "--interactive=false"), PATRONI_USER, replace=True),
        Step(("user", "grant-role", PATRONI_USER, role)),
        Step(("auth", "enable")),
    ]
