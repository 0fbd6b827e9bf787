"""The rendered compose file carries every production property, quoted safely."""

from __future__ import annotations

import yaml

from pgsteady.compose import render_compose
from pgsteady.settings import HostFacts, build_settings

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
    assert svc["healthcheck"]["test"][:2] == ["CMD", "pg_isready"]
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
    ]
    assert doc["secrets"]["app_password"] == {"file": "/opt/pgsteady/secrets/app_password"}


def test_bind_address_and_paths_follow_settings():
    doc = compose(postgres_bind="10.0.0.5", postgres_port=6543, app_dir="/srv/pg-1")
    svc = doc["services"]["postgres"]
    assert svc["ports"] == ["10.0.0.5:6543:5432"]
    assert "/srv/pg-1/config:/etc/pgsteady:ro" in svc["volumes"]
    assert "pgdata:/var/lib/postgresql/data" in svc["volumes"]
    assert doc["volumes"] == {"pgdata": {}}


def test_restart_policy_is_configurable():
    assert (
        compose(postgres_restart_policy="unless-stopped")["services"]["postgres"]["restart"]
        == "unless-stopped"
    )


def test_dollar_signs_survive_compose_interpolation():
    from pgsteady.render import yaml_str

    assert yaml.safe_load(yaml_str("a$b")) == "a$$b"  # compose turns $$ back into $
