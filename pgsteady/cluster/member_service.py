"""A cluster member's compose services: Postgres run by Patroni, and HAProxy (issue 15, M3).

The ``postgres`` service keeps the single host's image, volumes, limits and health check,
and changes only what a member needs: ``command: [patroni]`` (docker-entrypoint.sh's
Patroni mode), the host's network (peers dial the private address; pg_hba and Patroni's
allowlist see real sources), ``SIGTERM`` (Patroni stops Postgres fast and releases the
leader key), a private tmpfs for the configuration with passwords, and three more
secrets. HAProxy runs under a uid of its own, read-only, with no capabilities, and routes
``postgres_port`` to the leader and ``postgres_replica_port`` to the replicas.
"""

from __future__ import annotations

import hashlib
from typing import Any

from pgsteady.settings import EXPORTER_UID, Settings
from pgsteady.stack.layout import CONFIG_MOUNT, TLS_MOUNT

#: The cluster's shared secrets beside the single host's (app_dir/secrets/NAME, mounted at
#: /run/secrets/NAME); the entrypoint writes them into /run/patroni/90-secrets.yml.
CLUSTER_SECRETS = (
    "replication_password",
    "rewind_password",
    "patroni_rest_password",
    "etcd_patroni_password",
)
PATRONI_DIR = "/run/patroni"
PATRONI_YML = "patroni.yml"
HAPROXY_CFG = "haproxy.cfg"
#: app_dir/config/NAME (root 0644): the SHA-256 of the haproxy.cfg the running HAProxy
#: was told to load, written only after ``haproxy -c`` passed and SIGUSR2 was delivered
#: (tasks/haproxy_reload.py); HAProxy's own verdict on the reload is not read (R11 L1).
HAPROXY_LOADED = "haproxy.cfg.loaded"
#: HAProxy's uid/gid: after etcd's (64189); it owns nothing but its stats socket.
HAPROXY_UID = EXPORTER_UID + 3
HAPROXY_RUN = "/run/haproxy"
STATS_SOCKET = f"{HAPROXY_RUN}/stats.sock"
ETCD_CLIENT_CERT = "etcd-client.crt"
#: app_dir/tls/etcd-ca.crt: the cluster's etcd CA, Patroni's trust anchor for etcd only
ETCD_CA_CERT = "etcd-ca.crt"
ETCD_CLIENT_KEY = "private/etcd-client.key"
ETCD_CLIENT_KEY_MOUNT = "/etc/pgsteady-tls-key/etcd-client.key"
#: HAProxy's client certificate for its checks of Patroni's REST API (verify_client:
#: required; review R8 L1): app_dir/tls/NAME and its key app_dir/tls/private/NAME.key,
#: mounted side by side (HAProxy loads ``<crt>.key`` beside a ``crt`` without a key).
HAPROXY_CLIENT_CERT = "haproxy-client.crt"
HAPROXY_CLIENT_MOUNT = f"{TLS_MOUNT}/{HAPROXY_CLIENT_CERT}"


def postgres_overrides(s: Settings) -> dict[str, Any]:
    """What a member's ``postgres`` service changes in the single host's context."""
    uid = s.postgres_uid
    return {
        "command": ["patroni"],
        "ports": [],
        "network_mode": "host",
        "stop_signal": "SIGTERM",
        "tmpfs": [f"{PATRONI_DIR}:mode=0700,uid={uid},gid={uid}"],
        "extra_environment": {
            "PGSTEADY_PATRONI_CONFIG": f"{CONFIG_MOUNT}/{PATRONI_YML}",
            # psql in the container (docker exec: pgsteady-ctl, the init scripts) reaches
            # the member's port; Patroni sets the server's own port itself
            "PGPORT": str(s.postgres_member_port),
        },
        "extra_volumes": [
            f"{s.app_dir}/tls/{ETCD_CLIENT_KEY}:{ETCD_CLIENT_KEY_MOUNT}:ro",
        ],
    }


def client_sources(s: Settings) -> list[str]:
    """Who may connect to HAProxy: loopback and postgres_allowed_networks, as pg_hba
    admits them on a single host (never empty, which haproxy.cfg would read as "any")."""
    from pgsteady.postgres.parameters import LOOPBACK

    return [*LOOPBACK, *s.postgres_allowed_networks]


def haproxy_container(s: Settings) -> str:
    return f"{s.compose_project}-haproxy"


def haproxy_service(s: Settings) -> dict[str, Any]:
    """The ``haproxy`` service: the rendered haproxy.cfg and the CA, read-only."""
    return {
        "name": "haproxy",
        "container_name": haproxy_container(s),
        "user": f"{HAPROXY_UID}:{HAPROXY_UID}",
        "command": ["haproxy", "-W", "-db", "-f", f"{CONFIG_MOUNT}/{HAPROXY_CFG}"],
        "volumes": [
            f"{s.layout.config}/{HAPROXY_CFG}:{CONFIG_MOUNT}/{HAPROXY_CFG}:ro",
            f"{s.app_dir}/tls/ca.crt:{TLS_MOUNT}/ca.crt:ro",
            f"{s.app_dir}/tls/{HAPROXY_CLIENT_CERT}:{HAPROXY_CLIENT_MOUNT}:ro",
            f"{s.app_dir}/tls/private/{HAPROXY_CLIENT_CERT}.key:{HAPROXY_CLIENT_MOUNT}.key:ro",
        ],
        "tmpfs": [f"{HAPROXY_RUN}:mode=0700,uid={HAPROXY_UID},gid={HAPROXY_UID}"],
        "security_opt": ["no-new-privileges:true"],
        "cap_drop": ["ALL"],
        "mem_limit": "128m",
        # the running HAProxy answers on its stats socket (the image has python3, no socat)
        "healthcheck": [
            "CMD",
            "python3",
            "-c",
            "import socket; s = socket.socket(socket.AF_UNIX); "
            f"s.connect({STATS_SOCKET!r}); s.sendall(b'show info\\n'); assert s.recv(64)",
        ],
    }


def haproxy_marker(cfg_text: str) -> str:
    """What HAPROXY_LOADED holds once HAProxy was reloaded with ``cfg_text``."""
    return hashlib.sha256(cfg_text.encode()).hexdigest() + "\n"
