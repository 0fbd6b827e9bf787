"""PgBouncer in front of the server, decided from Settings (issue 18).

One service of the compose stack, ``pgbouncer``, run from pgsteady's Debian-built image
(it holds the Debian package pgbouncer) as ``pgbouncer_uid``, never the server's uid:

* clients reach it on ``postgres_bind:pgbouncer_port`` with TLS required
  (``client_tls_sslmode = require``; with pgsteady's CA a key and certificate of its own
  for the server's names, never the server's key; with operator-supplied certificates a
  copy of the server's, readable by the pooler's gid only) and SCRAM-SHA-256.
  ``postgres_port`` stays direct.
* it reaches the server over the shared Unix socket volume, as each client's own role
  (SCRAM pass-through: no application password is stored by the pooler). On a cluster
  member it reaches the leader through the member's HAProxy instead, over verified TLS
  (pgsteady.cluster.pooler).
* the SCRAM verifiers come from ``auth_query``: a SECURITY DEFINER function
  (``pgsteady_pooler.user_secret``, init_db.sql) owned by a NOLOGIN role, EXECUTE only
  for the ``pgbouncer_auth`` login role, returning nothing for superusers, replication
  roles and pgsteady's own roles. The pooler's auth file (``secrets/pgbouncer_userlist``,
  root:pgbouncer_uid 0440, written on the host by root) holds only that role's password
  and the admin console's: no list of application users.
* databases: ``postgres_db`` in ``pgbouncer_pool_mode`` and ``<postgres_db>_session`` in
  session mode (migrations: advisory locks, SET), both the same server database.

Pool sizes are bounded by the server's max_connections: the pools, the superuser's
reserved slots and ``DIRECT_RESERVE`` direct connections must fit. Pure.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from pgsteady.settings import Settings
from pgsteady.stack.layout import secret_mount
from pgsteady.stack.pooler_route import Route

#: Port inside the container (published on postgres_bind:pgbouncer_port).
PORT = 6432
BINARY = "/usr/sbin/pgbouncer"
#: The login role auth_query runs as, and the admin console's user (auth file only).
AUTH_USER = "pgbouncer_auth"
ADMIN_USER = "pgsteady_pooler_admin"
#: The NOLOGIN owner of the auth schema and function, and their names.
OWNER_ROLE = "pgsteady_pooler_owner"
AUTH_SCHEMA = "pgsteady_pooler"
AUTH_FUNCTION = f"{AUTH_SCHEMA}.user_secret"
#: The server secret (init_db.sql sets the auth role's password from it) and the pooler's
#: auth file made from it on the host (root:pgbouncer_uid 0440).
AUTH_SECRET = "pgbouncer_auth_password"
USERLIST = "pgbouncer_userlist"
#: pgbouncer.ini on the host (app_dir/config, root:pgbouncer_uid 0640) and in the container.
CONFIG = "pgbouncer.ini"
CONFIG_MOUNT = "/etc/pgsteady-pgbouncer/pgbouncer.ini"
#: Its client rules (auth_type = hba), beside it: host file and container path.
HBA = "pgbouncer_hba.conf"
HBA_MOUNT = "/etc/pgsteady-pgbouncer/hba.conf"
#: The pooler's certificate (app_dir/tls, root 0644) and key (root:pgbouncer_uid 0440):
#: issued by the inventory's CA for the server's names (serverAuth), or copies of the
#: operator's server certificate and key (postgres_tls_cert_file).
POOLER_CERT = "pgbouncer.crt"
POOLER_KEY = "private/pgbouncer.key"
CERT_MOUNT = "/etc/pgsteady-pgbouncer/tls/server.crt"
CA_MOUNT = "/etc/pgsteady-pgbouncer/tls/ca.crt"
KEY_MOUNT = "/etc/pgsteady-pgbouncer-key/server.key"
#: The admin console's socket directory (a tmpfs: the root filesystem is read-only).
RUN_DIR = "/run/pgbouncer"
#: Server connections kept outside the pools (exporter, backups, verify, direct clients).
DIRECT_RESERVE = 10
#: The session pool of <db>_session (migrations).
SESSION_POOL_SIZE = 5
#: File descriptors beyond one per client and server connection.
NOFILE_MARGIN = 256


def session_db(s: Settings) -> str:
    """The pooler's database name for session-mode connections (migrations)."""
    return f"{s.postgres_db}_session"


def server_max_connections(s: Settings) -> tuple[int, int]:
    """The server's max_connections and superuser_reserved_connections, overrides applied."""
    from pgsteady.postgres.tuning import max_connections

    conns = max_connections(s.postgres_db_type, s.postgres_max_connections)
    conns = int(s.postgres_settings.get("max_connections", conns))
    reserved = int(s.postgres_settings.get("superuser_reserved_connections", 3))
    return conns, reserved


def spare_connections(s: Settings, poolers: int = 1) -> int:
    """Server connections the pool of each of ``poolers`` poolers may take (a cluster's
    members share the leader): max_connections less the reserved ones, shared."""
    conns, reserved = server_max_connections(s)
    return (conns - reserved - DIRECT_RESERVE) // poolers - SESSION_POOL_SIZE


def default_pool_size(s: Settings, poolers: int = 1) -> int:
    """pgbouncer_default_pool_size, or half of the spare connections (at least 1)."""
    if s.pgbouncer_default_pool_size is not None:
        return s.pgbouncer_default_pool_size
    return max(1, spare_connections(s, poolers) // 2)


def max_client_conn(s: Settings) -> int:
    """pgbouncer_max_client_conn, or 10 per server connection, at least 1000."""
    if s.pgbouncer_max_client_conn is not None:
        return s.pgbouncer_max_client_conn
    return max(1000, 10 * server_max_connections(s)[0])


def nofile(s: Settings) -> int:
    """The open-files limit: a descriptor per client and per possible server connection
    (max_connections bounds the pools; a pool size change then only reloads the config,
    it does not recreate the container), and a margin."""
    return max_client_conn(s) + server_max_connections(s)[0] + NOFILE_MARGIN


def mem_limit(s: Settings) -> str:
    """64 MB plus about 16 kB per client connection (two packet buffers and state)."""
    return f"{64 + max_client_conn(s) // 64}m"


def settings_errors(s: Settings) -> list[str]:
    """Combinations the pooler cannot run with: key, value and what works."""
    if not s.pgbouncer_enabled:
        return []
    errors = []
    if s.postgres_image_source in ("registry", "archive"):
        errors.append(
            f"postgres_image_source = {s.postgres_image_source!r}: PgBouncer "
            "(pgbouncer_enabled = True) runs from pgsteady's Debian-built image; use "
            "'debian' (or 'auto'), or set pgbouncer_enabled = False"
        )
    if s.pgbouncer_uid in (s.postgres_uid, s.metrics_exporter_uid):
        errors.append(
            f"pgbouncer_uid = {s.pgbouncer_uid}: also "
            f"{'postgres_uid' if s.pgbouncer_uid == s.postgres_uid else 'metrics_exporter_uid'};"
            " the pooler needs a uid of its own (the server's files, the exporters' key); use "
            "one no user of the host or the image has (default 64188)"
        )
    errors += _network_errors(s)
    taken = {"postgres_port": s.postgres_port}
    if s.metrics_enabled:
        taken |= {
            "postgres_exporter_port": s.postgres_exporter_port,
            "node_exporter_port": s.node_exporter_port,
        }
    if s.pgbackrest_enabled:
        taken["pgbackrest_tls_port"] = s.pgbackrest_tls_port
    clash = [k for k, v in taken.items() if v == s.pgbouncer_port]
    if clash:
        errors.append(
            f"pgbouncer_port = {s.pgbouncer_port}: also {clash[0]}'s port; use a port of its "
            f"own (1024-65535, distinct from {', '.join(taken)})"
        )
    if s.pgbouncer_default_pool_size is not None:
        spare = spare_connections(s)
        if s.pgbouncer_default_pool_size > spare:
            conns, reserved = server_max_connections(s)
            errors.append(
                f"pgbouncer_default_pool_size = {s.pgbouncer_default_pool_size}: above the "
                f"server's spare connections; accepted: 1 to {max(spare, 0)} (max_connections "
                f"{conns} - {reserved} superuser-reserved - {DIRECT_RESERVE} direct - "
                f"{SESSION_POOL_SIZE} session pool), or raise postgres_max_connections"
            )
    elif spare_connections(s) < 1:
        errors.append(
            f"postgres_max_connections = {server_max_connections(s)[0]}: leaves no server "
            "connection for PgBouncer's pool; raise it or set pgbouncer_enabled = False"
        )
    if max_client_conn(s) < default_pool_size(s):
        errors.append(
            f"pgbouncer_max_client_conn = {s.pgbouncer_max_client_conn}: below the pool size "
            f"{default_pool_size(s)}; accepted: {default_pool_size(s)} to 100000"
        )
    return errors


def container_name(s: Settings) -> str:
    return f"{s.compose_project}-pgbouncer"


def secret_names(s: Settings) -> list[str]:
    """Files of app_dir/secrets only the pooler reads (root:pgbouncer_uid 0440)."""
    return [USERLIST] if s.pgbouncer_enabled else []


def local_route(s: Settings) -> Route:
    """A single host's pooler: every address of its container, the server's socket."""
    from pgsteady.backup.pgbackrest import SOCKET_DIR

    return Route("0.0.0.0", PORT, f"host={SOCKET_DIR} port=5432", default_pool_size(s))


def render_config(s: Settings, route: Route | None = None) -> str:
    """pgbouncer.ini: the two databases, SCRAM with auth_query, TLS required."""
    r = route or local_route(s)
    server, pool = f"{r.server} dbname={s.postgres_db}", r.pool_size
    lines = [
        "; Managed by pgsteady (pgsteady/stack/pgbouncer.py): change settings in the inventory.",
        "[databases]",
        f"{s.postgres_db} = {server} pool_mode={s.pgbouncer_pool_mode} pool_size={pool} "
        f"max_db_connections={pool}",
        f"{session_db(s)} = {server} pool_mode=session pool_size={SESSION_POOL_SIZE} "
        f"max_db_connections={SESSION_POOL_SIZE}",
        "",
        "[pgbouncer]",
        f"listen_addr = {r.listen}",
        f"listen_port = {r.port}",
        f"unix_socket_dir = {RUN_DIR}",
        "unix_socket_mode = 0700",
        "pidfile =",
        "logfile =",
        "syslog = 0",
        "auth_type = hba",
        f"auth_hba_file = {HBA_MOUNT}",
        f"auth_file = {secret_mount(USERLIST)}",
        f"auth_user = {AUTH_USER}",
        f"auth_query = SELECT usename, passwd FROM {AUTH_FUNCTION}($1)",
        f"admin_users = {ADMIN_USER}",
        f"stats_users = {ADMIN_USER}",
        f"pool_mode = {s.pgbouncer_pool_mode}",
        f"default_pool_size = {pool}",
        "reserve_pool_size = 0",
        f"max_client_conn = {max_client_conn(s)}",
        "server_reset_query = DISCARD ALL",
        "ignore_startup_parameters = extra_float_digits",
        "client_tls_sslmode = require",
        f"client_tls_cert_file = {CERT_MOUNT}",
        f"client_tls_key_file = {KEY_MOUNT}",
        f"client_tls_ca_file = {CA_MOUNT}",
        "client_tls_protocols = tlsv1.2,tlsv1.3",
        *r.upstream,
        "log_connections = 0",
        "log_disconnections = 0",
        "",
    ]
    return "\n".join(lines)


def _network_errors(s: Settings) -> list[str]:
    """samenet/samehost with a bind beyond loopback: the server reads them as its
    container's network, PgBouncer (which has neither) would admit every address."""
    from pgsteady.postgres.parameters import normalize_network

    try:
        loopback = ipaddress.ip_address(s.postgres_bind).is_loopback
        words = [
            n
            for n in s.postgres_allowed_networks
            if normalize_network(n) in ("samenet", "samehost")
        ]
    except ValueError:
        return []  # not an address or a network: refused with its own error
    if loopback or not words:
        return []
    return [
        f"postgres_allowed_networks = {list(s.postgres_allowed_networks)!r}: {words[0]!r} "
        f"with postgres_bind = {s.postgres_bind!r} would let PgBouncer (which has no "
        f"samenet/samehost) admit every address reaching port {s.pgbouncer_port}; accepted: "
        "the client networks as CIDRs (e.g. ['10.0.1.0/24']), a loopback postgres_bind, "
        "or pgbouncer_enabled = False"
    ]


def render_hba(s: Settings) -> str:
    """Who may log in to the pooler, and how: the auth file's two users never over TCP
    (the admin console only on the container's own socket), everyone else with SCRAM over
    TLS to the two pooled databases from postgres_allowed_networks' addresses, as the
    server's pg_hba.conf. (auth_query answers only for roles that may pool.) PgBouncer has
    no samenet/samehost: those admit every address, which only a loopback postgres_bind
    may bound (settings_errors refuses them with any other bind)."""
    from pgsteady.postgres.parameters import normalize_network

    dbs = f"{s.postgres_db},{session_db(s)}"
    nets: list[str] = ["127.0.0.1/32", "::1/128"]
    for entry in s.postgres_allowed_networks:
        net = normalize_network(entry)
        nets += list(_ANY) if net in ("samenet", "samehost") else [net]
    rules = [
        ("local", "pgbouncer", ADMIN_USER, "", "scram-sha-256"),
        ("local", "all", "all", "", "reject"),
        *(("host", "all", u, n, "reject") for u in (AUTH_USER, ADMIN_USER) for n in _ANY),
        *(("hostssl", dbs, "all", n, "scram-sha-256") for n in dict.fromkeys(nets)),
        *(("host", "all", "all", n, "reject") for n in _ANY),
    ]
    lines = ["# Managed by pgsteady (pgsteady/stack/pgbouncer.py); first match wins."]
    lines += [" ".join(x for x in r if x) for r in rules]
    return "\n".join(lines) + "\n"


_ANY = ("0.0.0.0/0", "::/0")


def render_userlist_command(s: Settings, path: str) -> str:
    """Root's shell command writing the auth file from the auth role's password and a new
    admin password, on the host (no secret in argv: both are read and generated inside
    the shell, printf being a builtin)."""
    import shlex

    src = shlex.quote(f"{s.layout.secrets}/{AUTH_SECRET}")
    dest = shlex.quote(path)
    uid = s.pgbouncer_uid
    return (
        f"umask 077 && admin=$(tr -dc 'A-Za-z0-9' </dev/urandom | head -c 40) && "
        f'auth=$(cat {src}) && [ -n "$auth" ] && '
        f'printf \'"%s" "%s"\\n"%s" "%s"\\n\' {AUTH_USER} "$auth" {ADMIN_USER} '
        f'"$admin" > {dest}.new && chown 0:{uid} {dest}.new && chmod 0440 {dest}.new && '
        f"mv -f {dest}.new {dest}"
    )


#: Seconds an admin console command may take (a PAUSE waits for running transactions).
ADMIN_TIMEOUT = 60


def admin_script() -> str:
    """sh script run inside the pooler's container (as its uid) with the SQL as ``$1``:
    the admin password read from the auth file into a pgpass file of the container's 0700
    tmpfs (never in argv or env), removed afterwards; psql over the pooler's own Unix
    socket, at most ADMIN_TIMEOUT seconds. Output: a header line, then rows (``parse_show``)."""
    pgpass = f"{RUN_DIR}/admin.pgpass"
    return (
        "umask 077 && "
        f'sed -n \'s/^"{ADMIN_USER}" "\\(.*\\)"$/*:*:*:{ADMIN_USER}:\\1/p\' '
        f"{secret_mount(USERLIST)} > {pgpass} && "
        f"PGPASSFILE={pgpass} timeout {ADMIN_TIMEOUT} psql -X -A -q -P footer=off "
        f'-v ON_ERROR_STOP=1 -h {RUN_DIR} -p {PORT} -U {ADMIN_USER} -d pgbouncer -c "$1"; '
        f"rc=$?; rm -f {pgpass}; exit $rc"
    )


def admin_command(s: Settings, sql: str, docker: str = "docker") -> list[str]:
    """argv running ``sql`` on the pooler's admin console (SHOW POOLS, PAUSE, RESUME ...)."""
    return [docker, "exec", "-u", f"{s.pgbouncer_uid}:{s.pgbouncer_uid}",
            container_name(s), "sh", "-c", admin_script(), "sh", sql]  # fmt: skip


def parse_show(output: str) -> list[dict[str, str]]:
    """The rows of an admin console command's output (header line first, ``|`` between
    fields)."""
    lines = [x for x in output.splitlines() if x]
    if not lines:
        return []
    header = lines[0].split("|")
    return [dict(zip(header, x.split("|"), strict=False)) for x in lines[1:]]


def server_connections(pool: dict[str, str]) -> int:
    """Server connections a SHOW POOLS row holds (active, idle, used, tested, logging in)."""
    return sum(int(pool.get(k) or 0) for k in ("sv_active", "sv_idle", "sv_used", "sv_tested",
                                                  "sv_login"))  # fmt: skip


def service(s: Settings) -> dict[str, Any] | None:
    """The pgbouncer service of docker-compose.yml (None when the pooler is off)."""
    if not s.pgbouncer_enabled:
        return None
    from pgsteady.backup.pgbackrest import SOCKET_DIR, SOCKET_VOLUME
    from pgsteady.tls import CA_FILE

    tls = s.layout.tls
    svc = {
        "name": "pgbouncer",
        "container_name": container_name(s),
        "user": f"{s.pgbouncer_uid}:{s.pgbouncer_uid}",
        "command": [BINARY, CONFIG_MOUNT],
        "secrets": [USERLIST],
        "ports": [f"{s.postgres_bind}:{s.pgbouncer_port}:{PORT}"],
        "volumes": [
            f"{SOCKET_VOLUME}:{SOCKET_DIR}:ro",
            f"{s.layout.config}/{CONFIG}:{CONFIG_MOUNT}:ro",
            f"{s.layout.config}/{HBA}:{HBA_MOUNT}:ro",
            f"{tls}/{POOLER_CERT}:{CERT_MOUNT}:ro",
            f"{tls}/{CA_FILE}:{CA_MOUNT}:ro",
            f"{tls}/{POOLER_KEY}:{KEY_MOUNT}:ro",
        ],
        "tmpfs": [f"{RUN_DIR}:mode=0700,uid={s.pgbouncer_uid},gid={s.pgbouncer_uid}"],
        # The TLS handshake with its certificate (of the CA clients verify): it listens.
        "healthcheck": [
            "CMD-SHELL",
            f"openssl s_client -brief -starttls postgres -connect 127.0.0.1:{PORT} "
            f"-CAfile {CA_MOUNT} -verify_return_error </dev/null 2>&1 "
            "| grep -q '^Verification: OK'",
        ],
        "nofile": nofile(s),
        "security_opt": ["no-new-privileges:true"],
        "cap_drop": ["ALL"],
        "mem_limit": mem_limit(s),
    }
    if s.postgres_cluster_name is None:
        return svc
    from pgsteady.cluster.pooler import member_service

    return member_service(s, svc)
