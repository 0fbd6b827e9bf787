"""PgBouncer on a cluster member: every member pools toward the current primary.

Each member runs the single host's pooler (pgsteady.stack.pgbouncer) on the host's
network, listening on its private address and loopback at ``pgbouncer_port``, and opens
its server connections to its OWN HAProxy's primary route, ``127.0.0.1:postgres_port``,
which leads to whichever member holds Patroni's leader lock. The pooler never learns who
leads: after a switchover or failover its next server connection lands on the new leader.

* TLS to the server with ``server_tls_sslmode = verify-full`` against the inventory's CA.
  HAProxy passes TLS through, so the certificate PgBouncer checks is the LEADER's, against
  the name it dialled, ``127.0.0.1``: every member's certificate lists loopback and every
  member's name and address (tasks/tls.py), whichever member leads.
* Old connections: a leader that steps down restarts its Postgres (switchover) or is
  marked down by HAProxy, which cuts its sessions (``on-marked-down shutdown-sessions``);
  PgBouncer drops a server connection that closes and opens a new one for the next
  transaction. A transaction in flight at that moment fails; the client retries.
* ``server_login_retry = 1``: while there is no leader HAProxy closes new connections at
  once; PgBouncer then fails clients fast and retries a login only after this many
  seconds (15 by default, which would hold every client that long after a new leader).
* auth_query runs on the leader too (same route); its role and function come from
  init_db.sql on the leader and replicate, and its password is a cluster secret, the
  same on every member, so any member's pooler logs in after a failover.
* Pool sizes: the members' pools all land on one server, so the spare connections are
  shared by the members (:func:`pool_errors`, run by tasks/pgbouncer.py before any
  operation, refuses an explicit size that does not fit).
"""

from __future__ import annotations

import ipaddress
from typing import Any

from pgsteady.cluster.topology import Cluster, Member
from pgsteady.settings import Settings
from pgsteady.stack import pgbouncer
from pgsteady.stack.pooler_route import Route

#: The address PgBouncer dials: its member's HAProxy (host network) on loopback.
HAPROXY_ADDRESS = "127.0.0.1"
#: Seconds between PgBouncer's login attempts after a failed one (no leader yet).
LOGIN_RETRY_S = 1


def listen_addresses(member: Member) -> list[str]:
    """The member's private address, and loopback (the health check, make verify)."""
    if ipaddress.ip_address(member.address).is_loopback:
        return [member.address]
    return [member.address, HAPROXY_ADDRESS]


def route(s: Settings, cluster: Cluster, member: Member) -> Route:
    """Member ``member``'s pooler: its addresses, the leader through its own HAProxy."""
    return Route(
        listen=",".join(listen_addresses(member)),
        port=s.pgbouncer_port,
        server=f"host={HAPROXY_ADDRESS} port={s.postgres_port}",
        pool_size=pgbouncer.default_pool_size(s, len(cluster.members)),
        upstream=(
            "server_tls_sslmode = verify-full",
            f"server_tls_ca_file = {pgbouncer.CA_MOUNT}",
            "server_tls_protocols = tlsv1.2,tlsv1.3",
            f"server_login_retry = {LOGIN_RETRY_S}",
        ),
    )


def member_service(s: Settings, svc: dict[str, Any]) -> dict[str, Any]:
    """The single host's service on the host's network (it listens on the member's own
    addresses; HAProxy's loopback port is the host's): no published port, no socket."""
    from pgsteady.backup.pgbackrest import SOCKET_VOLUME

    check = svc["healthcheck"][1].replace(
        f"127.0.0.1:{pgbouncer.PORT}", f"127.0.0.1:{s.pgbouncer_port}"
    )
    return {
        **svc,
        "ports": [],
        "network_mode": "host",
        "volumes": [v for v in svc["volumes"] if not v.startswith(f"{SOCKET_VOLUME}:")],
        "healthcheck": [svc["healthcheck"][0], check],
    }


def port_errors(s: Settings) -> list[str]:
    """pgbouncer_port taken by another listener of a cluster member's host network."""
    if not s.pgbouncer_enabled:
        return []
    taken = {
        "postgres_replica_port": s.postgres_replica_port,
        "postgres_member_port": s.postgres_member_port,
        "patroni_rest_port": s.patroni_rest_port,
        "etcd_client_port": s.etcd_client_port,
        "etcd_peer_port": s.etcd_peer_port,
    }
    clash = [k for k, v in taken.items() if v == s.pgbouncer_port]
    if not clash:
        return []
    return [
        f"pgbouncer_port = {s.pgbouncer_port}: also {clash[0]}'s port on a cluster member "
        "(the pooler uses the host's network); accepted: a port (1024-65535) distinct from "
        f"postgres_port, {', '.join(taken)}"
    ]


def pool_errors(s: Settings, members: int) -> list[str]:
    """A pool size that does not fit when ``members`` poolers share the leader."""
    if not s.pgbouncer_enabled:
        return []
    spare = pgbouncer.spare_connections(s, members)
    size = s.pgbouncer_default_pool_size
    if (size is not None and size > spare) or spare < 1:
        conns, reserved = pgbouncer.server_max_connections(s)
        key, value = (
            ("pgbouncer_default_pool_size", size)
            if size is not None
            else ("postgres_max_connections", conns)
        )
        return [
            f"{key} = {value}: the {members} members' poolers all connect to the leader; "
            f"each pool may take 1 to {max(spare, 0)} ((max_connections {conns} - "
            f"{reserved} superuser-reserved - {pgbouncer.DIRECT_RESERVE} direct) / {members} "
            f"- {pgbouncer.SESSION_POOL_SIZE} session pool); lower pgbouncer_default_pool_size "
            "or raise postgres_max_connections"
        ]
    return []
