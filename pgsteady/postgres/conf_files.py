"""The files that configure the server: postgresql.conf, pg_hba.conf and init_db.sql.

Pure: Settings in, rendered text out. The deploy uploads what these return.
"""

from __future__ import annotations

import ipaddress
from pathlib import PurePosixPath

from pgsteady.backup import pgbackrest
from pgsteady.postgres.parameters import RESTORE_ROLE, conf_text, hba_rules
from pgsteady.postgres.tuning import TuningInput, TuningResult, tune
from pgsteady.render import render
from pgsteady.settings import Settings
from pgsteady.stack import pgbouncer
from pgsteady.stack.compose import SUPERUSER
from pgsteady.stack.layout import CONFIG_MOUNT, INIT_MOUNT, KEY_MOUNT, TLS_MOUNT, secret_mount
from pgsteady.tls import CA_FILE, CERT_FILE, KEY_FILE


def tuning_input(s: Settings) -> TuningInput:
    """What the tuner is told about this host and its container."""
    return TuningInput(
        pg_version=s.postgres_version,
        db_type=s.postgres_db_type,
        ram=s.host_ram_mb * 1024 * 1024,
        cpus=max(1, s.host_cpus),
        connections=s.postgres_max_connections,
        storage=s.postgres_storage,
        os="linux",
        memory_limit=s.memory_limit_bytes,
        cpu_limit=s.cpu_limit,
    )


def tuning(s: Settings) -> TuningResult:
    return tune(tuning_input(s))


def expected_settings(s: Settings) -> dict[str, str]:
    """Every setting the rendered postgresql.conf sets, overrides applied (for verify)."""
    values = tuning(s).as_dict()
    values.update(pgbackrest.server_settings(s))
    values.update({k: conf_text(v) for k, v in s.postgres_settings.items()})
    return values


def render_postgresql_conf(s: Settings) -> str:
    return render(
        "postgresql.conf.j2",
        settings=tuning(s).settings,
        overrides=s.postgres_settings,
        listen_addresses="*",
        port=5432,
        hba_file=f"{CONFIG_MOUNT}/pg_hba.conf",
        tls=tls_settings(TLS_MOUNT, KEY_MOUNT),
        archive=pgbackrest.server_settings(s),
    )


def tls_settings(directory: str, key: str | None = None) -> dict[str, str]:
    """postgresql.conf's TLS lines for certificate files under ``directory`` (the key at
    ``key`` when it is mounted apart)."""
    return {
        "ssl": "on",
        "ssl_cert_file": f"{directory}/{CERT_FILE}",
        "ssl_key_file": key or f"{directory}/{KEY_FILE}",
        "ssl_ca_file": f"{directory}/{CA_FILE}",
    }


def requires_tls(s: Settings) -> bool:
    """Plain TCP is refused unless the port is published on a loopback address only."""
    return not ipaddress.ip_address(s.postgres_bind).is_loopback


def render_pg_hba_conf(s: Settings) -> str:
    roles = [r for r in (s.postgres_user, s.postgres_readonly_user) if r]
    return render(
        "pg_hba.conf.j2",
        rules=hba_rules(
            s.postgres_allowed_networks,
            SUPERUSER,
            database=s.postgres_db,
            app_roles=roles,
            monitor_role=s.postgres_monitor_user,
            require_ssl=requires_tls(s),
            pooler_role=pgbouncer.AUTH_USER if s.pgbouncer_enabled else None,
        ),
    )


def schema_file_names(s: Settings) -> list[str]:
    """Where each operator schema file lands under app_dir/init/schema/, in order."""
    return [
        f"{i:02d}-{PurePosixPath(path).name}" for i, path in enumerate(s.postgres_schema_files, 1)
    ]


#: The application's password inside the container (compose mounts the secret there).
APP_PASSWORD_FILE = secret_mount("app_password")


def render_init_db_sql(s: Settings) -> str:
    return render(
        "init_db.sql.j2",
        app_user=s.postgres_user,
        app_password_file=APP_PASSWORD_FILE,
        readonly_user=s.postgres_readonly_user,
        readonly_password_file=secret_mount("readonly_password"),
        monitor_user=s.postgres_monitor_user,
        monitor_password_file=secret_mount("monitor_password"),
        database=s.postgres_db,
        extensions=s.postgres_extensions,
        auto_updated_at=s.postgres_auto_updated_at,
        pooler=pooler_sql_context(s),
        # With the pooler off: its roles (and the owner's schema) that a converge with it
        # on made, dropped.
        pooler_roles=[pgbouncer.AUTH_USER, pgbouncer.OWNER_ROLE],
    )


def pooler_sql_context(s: Settings) -> dict[str, str] | None:
    """init_db.sql's PgBouncer part: auth role, its owner role, schema and password file;
    the roles auth_query never answers for (pgsteady's own)."""
    if not s.pgbouncer_enabled:
        return None
    return {
        "auth_user": pgbouncer.AUTH_USER,
        "owner": pgbouncer.OWNER_ROLE,
        "schema": pgbouncer.AUTH_SCHEMA,
        "password_file": secret_mount(pgbouncer.AUTH_SECRET),
        "excluded": [
            SUPERUSER,
            s.postgres_monitor_user,
            pgbouncer.AUTH_USER,
            pgbouncer.OWNER_ROLE,
            RESTORE_ROLE,
        ],  # fmt: skip
    }


#: Where the rendered schema_files.psql.j2 lands under app_dir/init/ (not *.sql: the
#: image's entrypoint would run that as the superuser on a new cluster).
SCHEMA_PSQL = "schema.psql"


def render_schema_psql(s: Settings) -> str:
    """The psql script applying the operator's schema files as the app role (see ctl)."""
    return render(
        "schema_files.psql.j2",
        app_user=s.postgres_user,
        schema_files=[f"{INIT_MOUNT}/schema/{n}" for n in schema_file_names(s)],
    )
