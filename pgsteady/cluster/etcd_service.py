"""The ``etcd`` service of a cluster host's compose stack, its files and its RBAC bootstrap.

etcd runs from the cluster image under a uid of its own, on the host's network (peers dial
the private address, and etcd checks their certificate against their real source), with a
read-only root, no capabilities and its data in the volume ``<project>_etcd``. The
``--initial-cluster*`` values are read by etcd only on its first start; they live in
``state/etcd-initial.env`` (written once), never in the command line, so a later inventory
change does not recreate the container.

Host files (all under ``app_dir``): ``etcd/tls/`` (CA, the member's certificate and key,
root:etcd 0440 in root:etcd 0750 directories), ``etcd/jwt/`` (the cluster's ES256
signing pair, likewise), ``etcd/data/`` (etcd's own, 0700; behind the volume),
``secrets/etcd/`` (the root and patroni passwords, 0600 root: the bootstrap writes them to
etcdctl's stdin through ``docker exec -i``, never into an argv or an environment).
"""

from __future__ import annotations

import shlex
from typing import Any

from pgsteady.cluster import etcd
from pgsteady.cluster.topology import Cluster, Member
from pgsteady.settings import EXPORTER_UID, Settings

#: etcd's uid/gid: beside the exporters' (64187) and the pooler's (64188), no user of the
#: host or the image; it owns only etcd's files.
ETCD_UID = EXPORTER_UID + 2
SERVICE = "etcd"
VOLUME = "etcd"
#: Not a path of the image (Debian's etcd-server owns /var/lib/etcd): Docker copies nothing
#: into the volume, whose root keeps the ownership of its host directory (etcd uid, 0700).
DATA_MOUNT = "/var/lib/pgsteady-etcd"
TLS_MOUNT = "/etc/pgsteady-etcd/tls"
JWT_MOUNT = "/etc/pgsteady-etcd/jwt"
PATHS = etcd.EtcdPaths(
    data_dir=f"{DATA_MOUNT}/member-data",
    ca_file=f"{TLS_MOUNT}/ca.crt",
    cert_file=f"{TLS_MOUNT}/server.crt",
    key_file=f"{TLS_MOUNT}/server.key",
    jwt_public_key=f"{JWT_MOUNT}/jwt.pub",
    jwt_private_key=f"{JWT_MOUNT}/jwt.key",
)
INITIAL_FLAGS = ("--initial-cluster=", "--initial-cluster-state=", "--initial-cluster-token=")
#: The state file whose presence says the RBAC bootstrap finished (first etcd host only).
AUTH_DONE = "etcd-auth.done"
INITIAL_ENV = "etcd-initial.env"
PASSWORDS = ("root", "patroni")


def container_name(s: Settings) -> str:
    return f"{s.compose_project}-etcd"


def tls_dir(s: Settings) -> str:
    return f"{s.app_dir}/etcd/tls"


def data_dir(s: Settings) -> str:
    """The host directory behind the volume ``<project>_etcd`` (etcd uid, 0700)."""
    return f"{s.app_dir}/etcd/data"


def jwt_dir(s: Settings) -> str:
    return f"{s.app_dir}/etcd/jwt"


def secrets_dir(s: Settings) -> str:
    return f"{s.layout.secrets}/etcd"


def serve_args(cluster: Cluster, member: Member, paths: etcd.EtcdPaths = PATHS) -> list[str]:
    """etcd's argv without the first-start-only ``--initial-cluster*`` flags."""
    argv = etcd.member_args(cluster, member, paths, token="unused")
    return [a for a in argv if not a.startswith(INITIAL_FLAGS)]


def initial_env(cluster: Cluster, token: str, state: str = "new") -> str:
    """``state/etcd-initial.env``: what etcd reads once, as ETCD_* variables (an env file
    of compose; no secret: the token only keeps two clusters from joining by mistake)."""
    if not token.isalnum():
        raise ValueError(f"initial cluster token {token!r}: expected letters and digits")
    return (
        f"ETCD_INITIAL_CLUSTER={etcd.initial_cluster(cluster)}\n"
        f"ETCD_INITIAL_CLUSTER_STATE={state}\n"
        f"ETCD_INITIAL_CLUSTER_TOKEN={token}\n"
    )


def local_ctl(client_port: int) -> list[str]:
    """etcdctl against this member's loopback client URL, as the member's certificate."""
    base = etcd.etcdctl_base(
        [f"https://127.0.0.1:{client_port}"],
        PATHS.ca_file,
        PATHS.cert_file,
        PATHS.key_file,
    )
    return [*base, "--dial-timeout=2s", "--command-timeout=5s"]


def service(s: Settings, cluster: Cluster, member: Member) -> dict[str, Any] | None:
    """The compose service of ``member``, or None when it runs no etcd."""
    if member not in cluster.etcd_members:
        return None
    return {
        "name": SERVICE,
        "container_name": container_name(s),
        "user": f"{ETCD_UID}:{ETCD_UID}",
        "command": serve_args(cluster, member),
        "env_file": f"{s.layout.state}/{INITIAL_ENV}",
        "volume_device": data_dir(s),
        "environment": {"ETCDCTL_API": "3"},
        "volumes": [
            f"{VOLUME}:{DATA_MOUNT}",
            f"{tls_dir(s)}:{TLS_MOUNT}:ro",
            f"{jwt_dir(s)}:{JWT_MOUNT}:ro",
        ],
        "security_opt": ["no-new-privileges:true"],
        "cap_drop": ["ALL"],
        "mem_limit": "256m",
        # "endpoint health" is a read through the raft log: a quorum answers it; with auth
        # on, etcdctl counts the permission refusal as healthy.
        "healthcheck": [*local_ctl(cluster.etcd_client_port), "endpoint", "health"],
    }


def bootstrap_commands(s: Settings, cluster: Cluster, ctl: list[str] | None = None) -> list[str]:
    """Host shell commands of the RBAC bootstrap, run once on the first etcd host: each
    password reaches etcdctl's stdin from its 0600 file, a user or role that exists already
    is deleted before it is made again (etcd.Step.replace: a run cut short before
    ``auth enable`` simply runs again), the last step writes the guard.
    ``ctl`` replaces ``docker exec -i <etcd> etcdctl ...`` (tests run etcd as processes)."""
    ctl = ctl or ["docker", "exec", "-i", container_name(s), *local_ctl(cluster.etcd_client_port)]
    out = []
    for step in etcd.auth_bootstrap(cluster):
        line = shlex.join([*ctl, *step.args])
        if step.stdin_secret:
            line += f" < {shlex.quote(f'{secrets_dir(s)}/{step.stdin_secret}_password')}"
        else:
            line += " < /dev/null"
        line += " >/dev/null"
        if step.replace:
            kind, name = step.args[0], step.args[2]
            get = f"{shlex.join([*ctl, kind, 'get', name])} </dev/null >/dev/null 2>&1"
            delete = f"{shlex.join([*ctl, kind, 'delete', name])} </dev/null >/dev/null"
            line = f"{{ ! {get} || {delete}; }} && {line}"
        out.append(line)
    out.append(f"touch {shlex.quote(f'{s.layout.state}/{AUTH_DONE}')}")
    return out


def container_ctl(s: Settings, cluster: Cluster) -> list[str]:
    """etcdctl in the host's etcd container (:func:`local_ctl`), for host shell lines."""
    return ["docker", "exec", container_name(s), *local_ctl(cluster.etcd_client_port)]


def wait_all_healthy(ctl: list[str], seconds: int) -> str:
    """A host shell loop until ``ctl endpoint health --cluster`` says every member of the
    etcd cluster is healthy (etcdctl exits non-zero when any is not), failing after
    ``seconds``. ``ctl``: :func:`container_ctl`."""
    probe = shlex.join([*ctl, "endpoint", "health", "--cluster"])
    return (
        f"i=0; until {probe} >/dev/null 2>&1; do i=$((i+1)); [ $i -lt {seconds} ] || "
        f"{{ echo 'etcd: not every member healthy after {seconds} s' >&2; exit 1; }}; "
        "sleep 1; done"
    )
