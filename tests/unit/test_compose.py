"""The rendered compose file carries every production property, quoted safely."""

from __future__ import annotations

import pytest
import yaml

from pgsteady.settings import HostFacts, build_settings
from pgsteady.stack.compose import compose_context, render_compose
from pgsteady.stack.layout import BACKUP_MOUNT

FACTS = HostFacts(ram_mb=4096, cpus=2)


def compose(**data) -> dict:
    return yaml.safe_load(render_compose(build_settings(data, FACTS)))


def test_service_has_restart_health_limits_and_logging():
    doc = compose(postgres_memory_limit="1GB", postgres_cpus=1.5, healthcheck_interval="7s")
    svc = doc["services"]["postgres"]
    assert svc["restart"] == "always"
    assert svc["container_name"] == "pgsteady-postgres"
    assert svc["image"] == "pgsteady/pgsteady-postgres:17"
    assert svc["mem_limit"] == svc["memswap_limit"] == "1024m"
    assert svc["cpus"] == 1.5
    assert svc["healthcheck"]["interval"] == "7s"
    assert svc["healthcheck"]["test"][0] == "CMD-SHELL"
    assert "postmaster.pid" in svc["healthcheck"]["test"][1]
    assert svc["stop_signal"] == "SIGINT"
    assert svc["logging"] == {
        "driver": "json-file",
        "options": {"max-size": "10m", "max-file": "5"},
    }
    assert svc["ports"] == ["127.0.0.1:5432:5432"]
    assert svc["command"] == ["postgres", "-c", "config_file=/etc/pgsteady/postgresql.conf"]
    assert "--data-checksums" in svc["environment"]["POSTGRES_INITDB_ARGS"]


def test_secrets_are_files_never_values():
    doc = compose(postgres_readonly_user="app_ro")
    svc = doc["services"]["postgres"]
    assert "POSTGRES_PASSWORD" not in svc["environment"]
    assert svc["environment"]["POSTGRES_PASSWORD_FILE"] == "/run/secrets/postgres_password"
    assert svc["secrets"] == [
        "postgres_password",
        "app_password",
        "monitor_password",
        "readonly_password",
        "pgbouncer_auth_password",  # init_db.sql sets the pooler's auth role's password
    ]
    assert doc["secrets"]["app_password"] == {"file": "/opt/pgsteady/secrets/app_password"}


def test_bind_address_and_paths_follow_settings():
    doc = compose(
        postgres_bind="10.0.0.5",
        postgres_allowed_networks=["10.0.0.0/24"],
        postgres_port=6543,
        app_dir="/srv/pg-1",
    )
    svc = doc["services"]["postgres"]
    assert svc["ports"] == ["10.0.0.5:6543:5432"]
    assert "/srv/pg-1/config:/etc/pgsteady:ro" in svc["volumes"]
    assert "pgdata:/var/lib/postgresql/data" in svc["volumes"]
    # pgrun: the socket directory postgres-exporter shares (metrics_enabled by default)
    assert doc["volumes"] == {"pgdata": {}, "pgrun": {}}


def test_restart_policy_is_configurable():
    assert (
        compose(postgres_restart_policy="unless-stopped")["services"]["postgres"]["restart"]
        == "unless-stopped"
    )


def test_dollar_signs_survive_compose_interpolation():
    from pgsteady.render import yaml_str

    assert yaml.safe_load(yaml_str("a$b")) == "a$$b"  # compose turns $$ back into $


@pytest.mark.parametrize("restore_on_empty", [False, True])
def test_backups_reach_the_container_only_read_only_and_only_to_restore(restore_on_empty):
    s = build_settings(
        {"postgres_image_source": "debian", "postgres_restore_on_empty": restore_on_empty}, FACTS
    )
    mounts = [v for v in compose_context(s)["volumes"] if v.split(":")[1] == BACKUP_MOUNT]
    assert mounts == ([f"{s.backup_path}:{BACKUP_MOUNT}:ro"] if restore_on_empty else [])
