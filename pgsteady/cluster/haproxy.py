"""haproxy.cfg for one cluster member (templates/cluster/haproxy.cfg.j2).

``postgres_port`` reaches the member whose Patroni REST API answers ``GET /primary`` with
200 (only the leader-lock holder does); ``postgres_replica_port`` reaches a member whose
``GET /replica?lag=<bytes>`` answers 200 (Patroni 3.0.2 parses ``lag`` as a size in bytes
or with a unit; pgsteady sends bytes). The checks are HTTPS, verified against the CA and
the member's name; a member marked down has its sessions cut (``on-marked-down
shutdown-sessions``). TLS between clients and Postgres passes through (TCP mode).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from pgsteady.cluster.topology import Cluster, Member
from pgsteady.render import render

MAXCONN = 2000


@dataclass(frozen=True)
class Listen:
    name: str
    port: int
    uri: str
    balance: str


def _host(address: str) -> str:
    return f"[{address}]" if ipaddress.ip_address(address).version == 6 else address


def listens(cluster: Cluster) -> list[Listen]:
    """The two routes: the primary, and replicas within ``postgres_replica_max_lag``."""
    return [
        Listen("primary", cluster.postgres_port, "/primary", "first"),
        Listen(
            "replicas", cluster.replica_port, f"/replica?lag={cluster.replica_max_lag}", "leastconn"
        ),
    ]


def render_haproxy_cfg(
    cluster: Cluster,
    member: Member,
    ca_file: str,
    stats_socket: str,
    allowed_sources: list[str] | tuple[str, ...] = (),
    client_cert: str | None = None,
) -> str:
    """The haproxy.cfg of ``member``: binds on its private address (and 127.0.0.1 when
    that address is not loopback); ``allowed_sources``: client CIDRs (empty = any);
    ``client_cert``: the certificate (key in ``<it>.key``) the checks present to Patroni's
    REST API, which requires one (review R8 L1)."""
    if member not in cluster.members:
        raise ValueError(f"{member.name} is not a member of cluster {cluster.name}")
    sources = [str(ipaddress.ip_network(s, strict=False)) for s in allowed_sources]
    binds = [_host(member.address)]
    if not ipaddress.ip_address(member.address).is_loopback:
        binds.append("127.0.0.1")
    inter = cluster.check_interval_ms
    return render(
        "cluster/haproxy.cfg.j2",
        cluster=cluster.name,
        member=member.name,
        maxconn=MAXCONN,
        stats_socket=stats_socket,
        listens=listens(cluster),
        binds=binds,
        allowed_sources=sources,
        inter_ms=inter,
        fastinter_ms=max(inter // 4, 100),
        ca_file=ca_file,
        client_cert=client_cert,
        servers=[{"name": m.name, "address": _host(m.address)} for m in cluster.members],
        member_port=cluster.member_port,
        rest_port=cluster.rest_port,
    )
