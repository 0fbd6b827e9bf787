"""What goes into app_dir/docker-compose.yml, decided from Settings."""

from __future__ import annotations

from typing import Any

from pgsteady.render import render
from pgsteady.settings import Settings
from pgsteady.stack import healthprobe
from pgsteady.stack.layout import (
    BACKUP_MOUNT,
    CONFIG_MOUNT,
    DATA_MOUNT,
    INIT_MOUNT,
    KEY_MOUNT,
    PGDATA,
    TLS_MOUNT,
    secret_mount,
)
from pgsteady.tls import KEY_FILE

SUPERUSER = "postgres"
#: init_db.sql's name in app_dir/init (mounted at INIT_MOUNT); sorts before operator files.
INIT_SQL = "10-init_db.sql"


def secret_names(s: Settings) -> list[str]:
    """Password files under app_dir/secrets/, each mounted at /run/secrets/NAME."""
    names = ["postgres_password", "app_password", "monitor_password"]
    if s.postgres_cluster_name is not None:
        from pgsteady.cluster.member_service import CLUSTER_SECRETS

        names.extend(CLUSTER_SECRETS)
    if s.postgres_readonly_user:
        names.append("readonly_password")
    if s.pgbouncer_enabled:
        from pgsteady.stack.pgbouncer import AUTH_SECRET

        names.append(AUTH_SECRET)  # init_db.sql sets the pooler's auth role's password
    return names


def compose_context(s: Settings, etcd: dict[str, Any] | None = None) -> dict[str, Any]:
    """Template context for docker-compose.yml.j2; ``etcd`` is a cluster member's etcd
    service (pgsteady.cluster.etcd_service), None on a single host."""
    from pgsteady.backup import pgbackrest
    from pgsteady.stack import exporters, pgbouncer

    return {
        "service": "postgres",
        "image": s.image_alias,
        "container_name": s.container_name,
        "restart": s.postgres_restart_policy,
        "init": s.pgbackrest_enabled,
        "command": ["postgres", "-c", f"config_file={CONFIG_MOUNT}/postgresql.conf"],
        # None: compose's own name, <compose_project>_pgdata.
        "data_volume": s.postgres_data_volume,
        "environment": {
            "POSTGRES_USER": SUPERUSER,
            "POSTGRES_DB": SUPERUSER,
            "POSTGRES_PASSWORD_FILE": secret_mount("postgres_password"),
            "POSTGRES_INITDB_ARGS": "--data-checksums --auth-local=peer --auth-host=scram-sha-256",
            "PGDATA": PGDATA,
            "PGSTEADY_RESTORE_ON_EMPTY": "1" if s.postgres_restore_on_empty else "0",
            **pgbackrest.environment(s),
        },
        "secrets": {n: f"{s.layout.secrets}/{n}" for n in secret_names(s)},
        # The compose file's secrets: the server's, postgres-exporter's own copy, the pooler's.
        "all_secrets": {
            n: f"{s.layout.secrets}/{n}"
            for n in [*secret_names(s), *exporters.secret_names(s), *pgbouncer.secret_names(s)]
        },
        "ports": [f"{s.postgres_bind}:{s.postgres_port}:5432"],
        "volumes": [
            f"pgdata:{DATA_MOUNT}",
            f"{s.layout.config}:{CONFIG_MOUNT}:ro",
            f"{s.layout.init}:{INIT_MOUNT}:ro",
            f"{s.app_dir}/tls:{TLS_MOUNT}:ro",
            f"{s.app_dir}/tls/{KEY_FILE}:{KEY_MOUNT}:ro",
            # Backups are written from the host (docker exec streams); the container reads
            # them only to restore an empty volume, and never gets to write one root trusts.
            *([f"{s.backup_path}:{BACKUP_MOUNT}:ro"] if s.postgres_restore_on_empty else []),
            *pgbackrest.volumes(s),
            *_socket_volume(s),
        ],
        "mem_limit": f"{s.memory_limit_mb}m",
        "cpus": s.cpu_limit,
        "shm_size": s.postgres_shm_size.lower().replace("b", ""),
        "stop_grace_period": s.postgres_stop_grace_period,
        # Accepting TCP connections, read from postmaster.pid and /proc rather than by
        # connecting (pg_isready), so probes write no `connection received` line.
        "healthcheck": {
            "test": healthprobe.compose_test(),
            "interval": s.healthcheck_interval,
            "timeout": s.healthcheck_timeout,
            "retries": s.healthcheck_retries,
            "start_period": s.healthcheck_start_period,
        },
        "logging": {"max-size": s.docker_log_max_size, "max-file": str(s.docker_log_max_file)},
        "labels": {"io.pgsteady.project": s.compose_project},
        "sidecar": pgbackrest.sidecar(s),
        "socket_volume": pgbackrest.SOCKET_VOLUME,
        "socket_volume_used": bool(
            pgbackrest.sidecar(s) or s.metrics_enabled or s.pgbouncer_enabled
        ),
        "exporters": exporters.services(s),
        "pgbouncer": pgbouncer.service(s),
        "etcd": etcd,
        "stop_signal": "SIGINT",
        **_cluster_member(s),
    }


def _cluster_member(s: Settings) -> dict[str, Any]:
    """A cluster member's changes to the context (none on a single host)."""
    if s.postgres_cluster_name is None:
        return {}
    from pgsteady.cluster import member_service as m

    return {"haproxy": m.haproxy_service(s), **m.postgres_overrides(s)}


def _socket_volume(s: Settings) -> list[str]:
    """The server's socket directory as a volume the exporter and the pooler share
    (pgBackRest's off-host setup mounts it already)."""
    from pgsteady.backup import pgbackrest

    line = f"{pgbackrest.SOCKET_VOLUME}:{pgbackrest.SOCKET_DIR}"
    shared = s.metrics_enabled or s.pgbouncer_enabled
    return [line] if shared and line not in pgbackrest.volumes(s) else []


def render_compose(s: Settings, etcd: dict[str, Any] | None = None) -> str:
    return render("docker-compose.yml.j2", **compose_context(s, etcd))


def render_ctl_env(s: Settings, compose_cmd: str) -> str:
    """app_dir/etc/ctl.env, sourced by pgsteady-ctl (as root): the stack, the compose CLI,
    the state directory (lock, watchdog.json) and the watchdog's policy."""
    return render(
        "ctl.env.j2",
        project=s.compose_project,
        container=s.container_name,
        compose=compose_cmd,
        compose_file=s.layout.compose,
        healthy_timeout=int(s.seconds("postgres_healthy_timeout")),
        state_dir=s.layout.state,
        restart_policy=s.postgres_restart_policy,
        backoff=int(s.seconds("watchdog_backoff")),
        backoff_max=int(s.seconds("watchdog_backoff_max")),
        on_failure=s.watchdog_on_failure_command or "",
        **_pooler_env(s),
        data_volume=s.data_volume,
        data_mount=DATA_MOUNT,
        image=s.image_alias,
        config_file=f"{CONFIG_MOUNT}/postgresql.conf",
        backup_dir=s.backup_path,
        backup_mounted=int(s.postgres_restore_on_empty),
        pgbackrest_stanza=s.pgbackrest_stanza if s.pgbackrest_enabled else "",
    )


def _pooler_env(s: Settings) -> dict[str, str]:
    """What pgsteady-ctl needs to PAUSE the pooler's pool around a server restart (empty
    container name: no pooler; a cluster member's pooler does not use its own server)."""
    from pgsteady.stack import pgbouncer

    if not s.pgbouncer_enabled or s.postgres_cluster_name is not None:
        return {"pooler": "", "pooler_uid": "", "pooler_db": "", "pooler_admin": ""}
    return {
        "pooler": pgbouncer.container_name(s),
        "pooler_uid": str(s.pgbouncer_uid),
        "pooler_db": s.postgres_db,
        "pooler_admin": pgbouncer.admin_script(),
    }
