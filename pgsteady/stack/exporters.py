"""The Prometheus exporters of a database host, decided from Settings.

Two services of the compose stack, run from pgsteady's Debian-built Postgres image (it
holds the Debian packages prometheus-postgres-exporter and prometheus-node-exporter):

* ``postgres-exporter`` logs in as the monitoring role (pg_monitor) over the server's
  Unix socket (the socket volume it shares with Postgres), its password read from the
  mounted secret file (DATA_SOURCE_PASS_FILE): never in env, argv or the compose file.
* ``node-exporter`` reads the host's filesystem read-only (``--path.rootfs``) and the
  textfile ``app_dir/state/metrics/pgsteady.prom``, which ``pgsteady-metrics`` writes
  every minute (backup freshness, certificate expiry).

Both serve HTTPS (exporter-toolkit ``--web.config.file``) with the host's certificate and
demand a client certificate from the same CA (``make scrape-config`` issues Prometheus's).
Containers: a non-root uid, read-only root filesystem, no capabilities, no new
privileges, a memory limit, a health check, the server's restart policy.

Pure: Settings in, text and dicts out.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pgsteady.settings import Settings
from pgsteady.stack.layout import KEY_MOUNT, TLS_MOUNT, secret_mount
from pgsteady.tls import CA_FILE, CERT_FILE, KEY_FILE

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
#: The host's root filesystem inside node-exporter (read-only).
ROOTFS_MOUNT = "/host"
#: Mounts of the host below / that node-exporter never sees (each under an empty tmpfs).
MASKED_HOST_DIRS = ("proc", "sys", "dev", "run")
#: node-exporter runs as nobody, with the server's group only to read the TLS key.
NOBODY = 65534
MEM_LIMIT = "128m"
#: Collectors node-exporter runs (every other is off): disk space, the textfile, load.
NODE_COLLECTORS = ("filesystem", "textfile", "meminfo", "loadavg", "cpu")


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
    taken = {"postgres_port": s.postgres_port}
    if s.pgbackrest_enabled:
        taken["pgbackrest_tls_port"] = s.pgbackrest_tls_port
    for key in ("postgres_exporter_port", "node_exporter_port"):
        port = getattr(s, key)
        clash = [k for k, v in taken.items() if v == port]
        if clash:
            errors.append(
                f"{key} = {port}: also {clash[0]}'s port; use a port of its own "
                "(1024-65535, distinct from postgres_port, pgbackrest_tls_port and the "
                "other exporter's)"
            )
        taken[key] = port
    return errors


def container_names(s: Settings) -> dict[str, str]:
    """Compose service -> container name of each exporter (empty when metrics are off)."""
    if not s.metrics_enabled:
        return {}
    return {
        "postgres-exporter": f"{s.compose_project}-postgres-exporter",
        "node-exporter": f"{s.compose_project}-node-exporter",
    }


def textfile_dir(s: Settings) -> str:
    return f"{s.layout.state}/metrics"


def textfile_path(s: Settings) -> str:
    return f"{textfile_dir(s)}/{TEXTFILE}"


def render_web_config() -> str:
    """exporter-toolkit's web config: HTTPS with the host's certificate, and a client
    certificate from the same CA required and verified on every connection."""
    return (
        "# Managed by pgsteady: the exporters' HTTPS (exporter-toolkit web config).\n"
        "tls_server_config:\n"
        f"  cert_file: {TLS_MOUNT}/{CERT_FILE}\n"
        f"  key_file: {KEY_MOUNT}\n"
        f"  client_ca_file: {TLS_MOUNT}/{CA_FILE}\n"
        "  client_auth_type: RequireAndVerifyClientCert\n"
        "  min_version: TLS12\n"
    )


def _tls_volumes(s: Settings) -> list[str]:
    return [
        f"{s.layout.config}/{WEB_CONFIG}:{WEB_CONFIG_MOUNT}:ro",
        f"{s.app_dir}/tls:{TLS_MOUNT}:ro",
        f"{s.app_dir}/tls/{KEY_FILE}:{KEY_MOUNT}:ro",
    ]


def _healthcheck(port: int) -> list[str]:
    """HTTPS with the host's certificate as the client's, verified against the CA: the
    landing page answers 200 (no database query, unlike /metrics)."""
    tls = (
        f"-cert {TLS_MOUNT}/{CERT_FILE} -key {KEY_MOUNT} -CAfile {TLS_MOUNT}/{CA_FILE} "
        "-verify_return_error"
    )
    return [
        "CMD-SHELL",
        f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | openssl s_client -quiet -connect "
        f"127.0.0.1:{port} {tls} 2>/dev/null | head -n 1 | grep -q ' 200 '",
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
        f"--path.rootfs={ROOTFS_MOUNT}",
        "--collector.disable-defaults",
        *(f"--collector.{c}" for c in NODE_COLLECTORS),
        f"--collector.textfile.directory={TEXTFILE_MOUNT}",
        # The container's own files (resolv.conf ...) are no filesystem of the host.
        "--collector.filesystem.mount-points-exclude="
        r"^/(dev|proc|run|sys|etc/hostname|etc/hosts|etc/resolv\.conf|var/lib/docker/.+)($|/)",
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
            # The server's uid: it reads the monitor password through the secret's group.
            "user": f"{s.postgres_uid}:{s.postgres_uid}",
            "command": pg_command,
            "environment": {
                # The socket directory as host: no password crosses a network.
                "DATA_SOURCE_URI": f"/postgres?host={SOCKET_DIR}&sslmode=disable",
                "DATA_SOURCE_USER": s.postgres_monitor_user,
                "DATA_SOURCE_PASS_FILE": secret_mount("monitor_password"),
            },
            "secrets": ["monitor_password"],
            "ports": [f"{s.metrics_bind}:{s.postgres_exporter_port}:{POSTGRES_EXPORTER_PORT}"],
            "volumes": pg_volumes,
            "tmpfs": [],
            "healthcheck": _healthcheck(POSTGRES_EXPORTER_PORT),
            **common,
        },
        {
            "name": "node-exporter",
            "container_name": names["node-exporter"],
            "user": f"{NOBODY}:{s.postgres_uid}",
            "command": node_command,
            "environment": {},
            "secrets": [],
            "ports": [f"{s.metrics_bind}:{s.node_exporter_port}:{NODE_EXPORTER_PORT}"],
            # Read-only, and not recursively: the host's procfs, sysfs, devices and /run
            # below it are hidden under empty read-only tmpfs (no host process list, no
            # writable /dev/shm of the host).
            "tmpfs": [f"{ROOTFS_MOUNT}/{d}:ro,size=4k" for d in MASKED_HOST_DIRS],
            "volumes": [
                f"/:{ROOTFS_MOUNT}:ro",
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


def writer_config(s: Settings) -> dict[str, Any]:
    """What pgsteady-metrics reads (root-only app_dir/etc/metrics.json)."""
    return {
        "textfile": textfile_path(s),
        "cache": f"{s.layout.state}/metrics-cache.json",
        "project": s.compose_project,
        "postgres_version": s.postgres_version,
        "container": s.container_name,
        "docker": "docker",
        "backup_status": f"{s.backup_path}/status.json",
        "backups": backup_max_ages(s),
        "certificates": certificates(s),
    }


def render_writer_config(s: Settings) -> str:
    return json.dumps(writer_config(s), indent=2, sort_keys=True) + "\n"
