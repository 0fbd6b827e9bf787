"""Settings: defaults, derived values and validation that reports every problem at once."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

from pgsteady.settings import HostFacts, SettingsError, build_settings, defaults

FACTS = HostFacts(ram_mb=8192, cpus=4)
REPO = Path(__file__).resolve().parents[2]


def errors_for(**data) -> list[str]:
    with pytest.raises(SettingsError) as exc:
        build_settings(data, FACTS)
    return exc.value.errors


def test_defaults_are_valid_and_derived_values_follow():
    s = build_settings({}, FACTS)
    assert s.app_dir == "/opt/pgsteady"
    assert s.container_name == "pgsteady-postgres"
    assert s.image_alias == "pgsteady/pgsteady-postgres:17"
    assert s.registry_image == "postgres:17"
    assert s.backup_path == "/opt/pgsteady/backups"
    assert s.memory_limit_mb == 6144  # auto: 75% of RAM
    assert s.cpu_limit == 4.0
    assert s.seconds("healthcheck_interval") == 10


def test_group_data_all_states_every_default():
    """group_data/all.py documents exactly the settings, with the same defaults."""
    documented = {
        k: v
        for k, v in runpy.run_path(str(REPO / "group_data" / "all.py")).items()
        if not k.startswith("__")
    }
    assert documented == defaults()


def test_explicit_limits_and_sizes():
    s = build_settings(
        {"postgres_memory_limit": "2GB", "postgres_cpus": 1.5, "app_dir": "/srv/db/"}, FACTS
    )
    assert s.memory_limit_bytes == 2 * 1024**3
    assert s.cpu_count == 2
    assert s.app_dir == "/srv/db"


def test_every_error_is_reported_together_with_key_value_and_accepted():
    errors = errors_for(
        postgres_port=0,
        postgres_bind="localhost",
        postgres_version=12,
        healthcheck_interval="ten",
        compose_project="Bad Name",
    )
    assert len(errors) == 5
    text = "\n".join(errors)
    assert "postgres_port = 0" in text
    assert "postgres_bind = 'localhost'" in text and "not an IP address" in text
    assert "postgres_version = 12" in text and "13 to 18" in text
    assert "healthcheck_interval = 'ten'" in text and "10s" in text
    assert "compose_project = 'Bad Name'" in text


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"postgres_memory_limit": "64GB"}, "above the host's RAM"),
        ({"postgres_cpus": 8}, "above the host's 4 CPUs"),
        ({"postgres_image_source": "debian", "postgres_version": 16}, "Debian packages only"),
        ({"postgres_image_source": "archive"}, "postgres_image_archive: required"),
        ({"postgres_user": "postgres"}, "the superuser"),
        ({"postgres_user": "pg_app"}, "reserves"),
        ({"postgres_db": "my-app"}, "lower-case SQL identifier"),
        ({"app_dir": "relative/path"}, "absolute path"),
        ({"app_dir": "/etc"}, "system directory"),
        ({"app_dir": "/srv/a b"}, "absolute path"),
        ({"postgres_allowed_networks": ["10.0.0.0/33"]}, "not a network"),
        ({"backup_schedule": "61 * * * *"}, "backup_schedule"),
        ({"backup_keep_weeks": -1}, "greater than or equal to 0"),
        ({"postgres_restart_policy": "sometimes"}, "'always'"),
        ({"postgres_settings": {"shared_bufers": "1GB"}}, "did you mean 'shared_buffers'"),
        ({"postgres_settings": {"work_mem": "4mb"}}, "unknown unit 'mb'"),
        ({"postgres_settings": {"port": 5433}}, "cannot be overridden"),
        ({"postgres_readonly_user": "app"}, "must differ"),
        ({"postgres_monitor_user": "app"}, "postgres_monitor_user = 'app': must differ"),
        ({"postgres_monitor_user": "pg_monitor"}, "starts with pg_"),
        ({"postgres_shm_size": "0MB"}, "larger than zero"),
        ({"backup_enabled": "yes"}, "backup_enabled = 'yes'"),
        ({"postgres_db": "template1"}, "is a system database"),
        ({"postgres_db": "postgres"}, "is a system database"),
        ({"postgres_schema_files": ["/nonexistent/schema.sql"]}, "no such file here"),
    ],
)
def test_invalid_values_are_rejected(data, fragment):
    assert fragment in "\n".join(errors_for(**data))


def test_unknown_keys_get_a_suggestion_and_foreign_keys_are_ignored():
    errors = errors_for(backup_keep_day=3, postgres_shared_bufers="1GB")
    assert "backup_keep_day: unknown setting; did you mean backup_keep_days?" in errors
    assert any("postgres_settings, e.g. {'shared_buffers'" in e for e in errors)
    # pyinfra's own connector data is not ours to judge.
    build_settings({"ssh_user": "deploy", "_sudo": True}, FACTS)


def test_networks_are_normalised():
    s = build_settings({"postgres_allowed_networks": ["10.1.2.3/8", "samenet"]}, FACTS)
    assert s.postgres_allowed_networks == ["10.0.0.0/8", "samenet"]


def test_schema_files_must_exist_and_have_safe_names(tmp_path):
    good = tmp_path / "01_tables.sql"
    good.write_text("SELECT 1;\n")
    odd = tmp_path / "my tables.sql"
    odd.write_text("SELECT 1;\n")
    assert build_settings({"postgres_schema_files": [str(good)]}, FACTS)
    assert "ending in .sql" in "\n".join(errors_for(postgres_schema_files=[str(odd)]))
