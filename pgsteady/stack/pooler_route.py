"""Where PgBouncer listens and how it reaches the server: the single host's socket
(pgsteady.stack.pgbouncer.local_route) or a cluster member's HAProxy
(pgsteady.cluster.pooler.route)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Route:
    """pgbouncer.ini's listen_addr and listen_port, the servers' connection keywords (before
    dbname), the application pool's size and the lines about the server connections."""

    listen: str
    port: int
    server: str
    pool_size: int
    upstream: tuple[str, ...] = ("server_tls_sslmode = disable",)
