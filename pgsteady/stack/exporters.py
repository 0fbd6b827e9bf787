"""The Prometheus exporters of a database host, decided from Settings.

Two services of the compose stack, run from pgsteady's Debian-built Postgres image (it
holds the Debian packages prometheus-postgres-exporter and prometheus-node-exporter):

* ``postgres-exporter`` logs in as the monitoring role (pg_monitor) over the server's
  Unix socket (the socket volume it shares with Postgres; a cluster member's own port
  there, so a replica reports itself), its password read from its own
  copy of the secret (``secrets/monitor_password_exporter``, root:the exporters' gid 0440;
  DATA_SOURCE_PASS_FILE): never in env, argv or the compose file. It runs as
  ``metrics_exporter_uid``, never the server's uid: peer authentication (the superuser's
  ``local ... peer`` line) finds no user of that uid, so ``/probe?target=...user=postgres``
  is refused and the monitoring role is the only one it reaches.
* ``node-exporter`` sees none of the host's filesystem: only the textfile
  ``app_dir/state/metrics/pgsteady.prom``, which root's ``pgsteady-metrics`` writes every
  minute (backup freshness, certificate expiry, the host's filesystems' size and free
  space), plus memory, load and CPU from the kernel.

Both serve HTTPS (exporter-toolkit ``--web.config.file``) with a certificate of their own
(serverAuth only) from the inventory's **metrics CA** (``<CA dir>/metrics-ca``, apart from
the inventory's CA), and admit only client certificates of that CA: Prometheus's (``make
scrape-config``) and the host's verify client. The server's key, gid and files are out of
their reach. Containers: a uid of their own, read-only root filesystem, no capabilities,
no new privileges, a memory limit, a health check, the server's restart policy.

Pure: Settings in, text and dicts out.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pgsteady.settings import Settings
from pgsteady.stack.layout import secret_mount
from pgsteady.tls import CA_FILE, CERT_FILE

#: Ports inside the containers (published on metrics_bind:<setting>).
POSTGRES_EXPORTER_PORT = 9187
NODE_EXPORTER_PORT = 9100
#: Binaries of the Debian packages in the image.
POSTGRES_EXPORTER = "/usr/bin/prometheus-postgres-exporter"
NODE_EXPORTER = "/usr/bin/prometheus-node-exporter"
#: exporter-toolkit's web configuration: host file under app_dir/config, container path.
WEB_CONFIG = "exporter-web.yml"
WEB_CONFIG_MOUNT = "/etc/pgsteady-exporter/web.yml"
#: The custom queries (helper file of this repository), host file and container path.
QUERIES_SOURCE = (
    Path(__file__).resolve().parents[2] / "files/metrics/postgres-exporter-queries.yaml"
)
QUERIES = "postgres-exporter-queries.yaml"
QUERIES_MOUNT = "/etc/pgsteady-exporter/queries.yaml"
#: The textfile collector's directory: host app_dir/state/metrics, container path.
TEXTFILE_MOUNT = "/var/lib/pgsteady-metrics"
TEXTFILE = "pgsteady.prom"
#: The metrics CA's directory on the deploy machine, inside the inventory's CA directory.
METRICS_CA_DIR = "metrics-ca"
#: The metrics CA's certificate and the exporters' certificate and key under app_dir/tls
#: (the key in private/, root:metrics_exporter_uid 0440), and their container paths.
METRICS_CA = "metrics-ca.crt"
EXPORTER_CERT = "exporter.crt"
EXPORTER_KEY = "private/exporter.key"
METRICS_CA_MOUNT = "/etc/pgsteady-exporter/tls/ca.crt"
EXPORTER_CERT_MOUNT = "/etc/pgsteady-exporter/tls/exporter.crt"
EXPORTER_KEY_MOUNT = "/etc/pgsteady-exporter-key/exporter.key"
#: The host's client certificate of the metrics CA: `make verify` scrapes with it (root 0600).
VERIFY_CLIENT_CERT = "metrics-client.crt"
VERIFY_CLIENT_KEY = "private/metrics-client.key"
VERIFY_CLIENT_NAME = "pgsteady-verify"
#: postgres-exporter's own copy of the monitor password (app_dir/secrets, root:its gid 0440).
EXPORTER_SECRET = "monitor_password_exporter"
MEM_LIMIT = "128m"
#: Collectors node-exporter runs (every other is off): the textfile, memory, load, CPU.
#: No filesystem collector: it would see only the container's; pgsteady-metrics reports
#: the host's filesystems in the textfile instead.
NODE_COLLECTORS = ("textfile", "meminfo", "loadavg", "cpu")


def settings_errors(s: Settings) -> list[str]:
    """Combinations the exporters cannot run with: key, value and what works."""
    if not s.metrics_enabled:
        return []
    from pgsteady.stack.image import SUITES

    errors = []
    if s.postgres_image_source in ("registry", "archive"):
        errors.append(
            f"postgres_image_source = {s.postgres_image_source!r}: the exporters "
            "(metrics_enabled = True) run from pgsteady's Debian-built image, which holds "
            "prometheus-postgres-exporter and prometheus-node-exporter; use 'debian' (or "
            "'auto'), or set metrics_enabled = False and run exporters of your own"
        )
    elif s.postgres_image_source == "auto" and s.postgres_version not in SUITES:
        errors.append(
            f"postgres_version = {s.postgres_version}: with metrics_enabled = True the image "
            f"is built from Debian packages, which have only {' or '.join(map(str, SUITES))}; "
            "use one of those or set metrics_enabled = False"
        )
    if s.metrics_exporter_uid == s.postgres_uid:
        errors.append(
            f"metrics_exporter_uid = {s.metrics_exporter_uid}: also postgres_uid; the exporters "
            "need a uid of their own (peer login as the superuser, the server's files); use "
            "one no user of the host or the image has (default 64187)"
        )
    taken = {"postgres_port": s.postgres_port, **_cluster_ports(s)}
    if s.pgbackrest_enabled:
        taken["pgbackrest_tls_port"] = s.pgbackrest_tls_port
    for key in ("postgres_exporter_port", "node_exporter_port"):
        port = getattr(s, key)
        clash = [k for k, v in taken.items() if v == port]
        if clash:
            errors.append(
                f"{key} = {port}: also {clash[0]}'s port; use a port of its own "
                "(1024-65535, distinct from postgres_port, pgbackrest_tls_port, a "
                "cluster's ports and the other exporter's)"
            )
        taken[key] = port
    return errors


def _cluster_ports(s: Settings) -> dict[str, int]:
    """A cluster member's own ports (host network): none on a single host."""
    if s.postgres_cluster_name is None:
        return {}
    keys = (
        "postgres_replica_port",
        "postgres_member_port",
        "patroni_rest_port",
        "etcd_client_port",
        "etcd_peer_port",
    )
    return {key: getattr(s, key) for key in keys}


def data_source_uri(s: Settings) -> str:
    """postgres-exporter's DSN: the server's socket directory as host (no password
    crosses a network); a cluster member's own port there, the one Patroni runs Postgres
    on (postgres_port is HAProxy's, which leads to the leader: a replica's exporter would
    report the leader)."""
    from pgsteady.backup.pgbackrest import SOCKET_DIR

    port = "" if s.postgres_cluster_name is None else f"&port={s.postgres_member_port}"
    return f"/postgres?host={SOCKET_DIR}{port}&sslmode=disable"


def container_names(s: Settings) -> dict[str, str]:
    """Compose service -> container name of each exporter (empty when metrics are off)."""
    if not s.metrics_enabled:
        return {}
    return {
        "postgres-exporter": f"{s.compose_project}-postgres-exporter",
        "node-exporter": f"{s.compose_project}-node-exporter",
    }


def secret_names(s: Settings) -> list[str]:
    """Files of app_dir/secrets only the exporters read (root:metrics_exporter_uid 0440)."""
    return [EXPORTER_SECRET] if s.metrics_enabled else []


def textfile_dir(s: Settings) -> str:
    return f"{s.layout.state}/metrics"


def textfile_path(s: Settings) -> str:
    return f"{textfile_dir(s)}/{TEXTFILE}"


def cache_path(s: Settings) -> str:
    """pgsteady-metrics' last known backup times (root 0600)."""
    return f"{s.layout.state}/metrics-cache.json"


def render_web_config() -> str:
    """exporter-toolkit's web config: HTTPS with the exporters' own certificate, and a
    client certificate of the metrics CA required and verified on every connection.
    (No ``client_allowed_sans``: bookworm's node-exporter 1.5 refuses the key; the metrics
    CA issues client certificates to Prometheus and the hosts' verify only.)"""
    return (
        "# Managed by pgsteady: the exporters' HTTPS (exporter-toolkit web config).\n"
        "tls_server_config:\n"
        f"  cert_file: {EXPORTER_CERT_MOUNT}\n"
        f"  key_file: {EXPORTER_KEY_MOUNT}\n"
        f"  client_ca_file: {METRICS_CA_MOUNT}\n"
        "  client_auth_type: RequireAndVerifyClientCert\n"
        "  min_version: TLS12\n"
    )


def _tls_volumes(s: Settings) -> list[str]:
    tls = s.layout.tls
    return [
        f"{s.layout.config}/{WEB_CONFIG}:{WEB_CONFIG_MOUNT}:ro",
        f"{tls}/{METRICS_CA}:{METRICS_CA_MOUNT}:ro",
        f"{tls}/{EXPORTER_CERT}:{EXPORTER_CERT_MOUNT}:ro",
        f"{tls}/{EXPORTER_KEY}:{EXPORTER_KEY_MOUNT}:ro",
    ]


def _healthcheck(port: int) -> list[str]:
    """A TLS handshake whose server certificate verifies against the metrics CA: the
    exporter listens with its key. (The container holds no client certificate, so no
    request reaches a page.)"""
    return [
        "CMD-SHELL",
        f"openssl s_client -brief -connect 127.0.0.1:{port} -CAfile {METRICS_CA_MOUNT} "
        "-verify_return_error </dev/null 2>&1 | grep -q '^Verification: OK'",
    ]


def services(s: Settings) -> list[dict[str, Any]]:
    """The exporter services of docker-compose.yml (none when metrics are off)."""
    if not s.metrics_enabled:
        return []
    from pgsteady.backup.pgbackrest import SOCKET_DIR, SOCKET_VOLUME

    names = container_names(s)
    web = f"--web.config.file={WEB_CONFIG_MOUNT}"
    pg_command = [POSTGRES_EXPORTER, f"--web.listen-address=:{POSTGRES_EXPORTER_PORT}", web]
    pg_volumes = [f"{SOCKET_VOLUME}:{SOCKET_DIR}:ro", *_tls_volumes(s)]
    if QUERIES_SOURCE.is_file():
        pg_command.append(f"--extend.query-path={QUERIES_MOUNT}")
        pg_volumes.append(f"{s.layout.config}/{QUERIES}:{QUERIES_MOUNT}:ro")
    node_command = [
        NODE_EXPORTER,
        f"--web.listen-address=:{NODE_EXPORTER_PORT}",
        web,
        "--collector.disable-defaults",
        *(f"--collector.{c}" for c in NODE_COLLECTORS),
        f"--collector.textfile.directory={TEXTFILE_MOUNT}",
    ]
    common = {
        "security_opt": ["no-new-privileges:true"],
        "cap_drop": ["ALL"],
        "mem_limit": MEM_LIMIT,
    }
    return [
        {
            "name": "postgres-exporter",
            "container_name": names["postgres-exporter"],
            # A uid of its own: the socket's peer authentication knows no user of it.
            "user": f"{s.metrics_exporter_uid}:{s.metrics_exporter_uid}",
            "command": pg_command,
            "environment": {
                "DATA_SOURCE_URI": data_source_uri(s),
                "DATA_SOURCE_USER": s.postgres_monitor_user,
                "DATA_SOURCE_PASS_FILE": secret_mount(EXPORTER_SECRET),
            },
            "secrets": [EXPORTER_SECRET],
            "ports": [f"{s.metrics_bind}:{s.postgres_exporter_port}:{POSTGRES_EXPORTER_PORT}"],
            "volumes": pg_volumes,
            "tmpfs": [],
            "healthcheck": _healthcheck(POSTGRES_EXPORTER_PORT),
            **common,
        },
        {
            "name": "node-exporter",
            "container_name": names["node-exporter"],
            "user": f"{s.metrics_exporter_uid}:{s.metrics_exporter_uid}",
            "command": node_command,
            "environment": {},
            "secrets": [],
            "ports": [f"{s.metrics_bind}:{s.node_exporter_port}:{NODE_EXPORTER_PORT}"],
            # No mount of the host's / (docker 20.10 leaves submounts of a :ro bind
            # writable): the textfile directory only.
            "tmpfs": [],
            "volumes": [
                f"{textfile_dir(s)}:{TEXTFILE_MOUNT}:ro",
                *_tls_volumes(s),
            ],
            "healthcheck": _healthcheck(NODE_EXPORTER_PORT),
            **common,
        },
    ]


# --- the textfile writer's configuration (app_dir/etc/metrics.json) ------------------


def backup_max_ages(s: Settings) -> list[dict[str, Any]]:
    """Each backup tool/repository of this host with the age its newest backup may reach:
    what `make verify` allows (the schedule's longest gap plus its BACKUP_GRACE)."""
    from pgsteady.backup.pgbackrest import repos
    from pgsteady.verify import backup_deadline

    out: list[dict[str, Any]] = []
    if s.backup_enabled:
        deadline = backup_deadline(s.backup_schedule)
        if deadline is not None:
            out.append({"tool": "pg_dump", "max_age": int(deadline.total_seconds())})
    if s.pgbackrest_enabled:
        # The newest backup of either kind counts: the more frequent schedule bounds it.
        deadlines = [
            backup_deadline(x) for x in (s.pgbackrest_full_schedule, s.pgbackrest_diff_schedule)
        ]
        known = [d for d in deadlines if d is not None]
        if known:
            max_age = int(min(known).total_seconds())
            out += [{"tool": "pgbackrest", "repo": str(n), "max_age": max_age} for n, _ in repos(s)]
    return out


def certificates(s: Settings) -> dict[str, str]:
    """Certificate name -> host path of each certificate pgsteady manages on the host."""
    from pgsteady.backup import pgbackrest

    tls = f"{s.app_dir}/tls"
    out = {"postgres": f"{tls}/{CERT_FILE}", "ca": f"{tls}/{CA_FILE}"}
    if pgbackrest.remote_repos(s):
        out["pgbackrest"] = f"{tls}/{pgbackrest.TLS_CERT}"
    return out


def filesystem_paths(s: Settings) -> list[str]:
    """Host paths whose filesystem pgsteady-metrics reports (statvfs, as root): app_dir,
    the backup directory and each posix pgBackRest repository. The data volume's
    mountpoint (Docker's data root) is asked of docker on each run (``volume``)."""
    from pgsteady.backup.pgbackrest import server_written_dirs

    paths = [s.app_dir, s.backup_path, *server_written_dirs(s)]
    return list(dict.fromkeys(paths))


def writer_config(s: Settings) -> dict[str, Any]:
    """What pgsteady-metrics reads (root-only app_dir/etc/metrics.json)."""
    return {
        "filesystems": filesystem_paths(s),
        "volume": s.data_volume,
        "textfile": textfile_path(s),
        "cache": cache_path(s),
        "project": s.compose_project,
        "postgres_version": s.postgres_version,
        "container": s.container_name,
        "docker": "docker",
        "backup_status": f"{s.backup_path}/status.json",
        "backups": backup_max_ages(s),
        "certificates": certificates(s),
        "cluster": cluster_thresholds(s),
    }


def cluster_thresholds(s: Settings) -> dict[str, int]:
    """A cluster member's thresholds the alert rules compare with (textfile metrics
    ``pgsteady_cluster_<key>``): the rules file is the same for every inventory."""
    if s.postgres_cluster_name is None:
        return {}
    from pgsteady.units import parse_size

    return {"replica_max_lag_bytes": parse_size(s.postgres_replica_max_lag)}


def render_writer_config(s: Settings) -> str:
    return json.dumps(writer_config(s), indent=2, sort_keys=True) + "\n"
