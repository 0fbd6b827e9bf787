"""Settings: defaults, derived values and validation that reports every problem at once."""

from __future__ import annotations

import pytest

from pgsteady.postgres import safety
from pgsteady.postgres.tuning import PG_VERSIONS
from pgsteady.settings import HostFacts, SettingsError, build_settings

FACTS = HostFacts(ram_mb=8192, cpus=4)


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
        ({"postgres_user": "pgsteady_restore"}, "reserves for restores"),
        ({"postgres_user": "replicator"}, "a role Patroni makes"),
        ({"postgres_user": "pgsteady_rewind"}, "a role Patroni makes"),
        ({"postgres_readonly_user": "replicator"}, "a role Patroni makes"),
        ({"postgres_readonly_user": "pgsteady_rewind"}, "a role Patroni makes"),
        ({"postgres_monitor_user": "replicator"}, "a role Patroni makes"),
        ({"postgres_monitor_user": "pgsteady_rewind"}, "a role Patroni makes"),
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


@pytest.mark.parametrize(
    "data",
    [{"docker_version": "27.3"}, {"docker_users": ["deploy"]}, {"docker_daemon_config": {}},
     {"backup_bucket": "s3://x"}, {"app_name": "shop"}, {"compose_files": ["a.yml"]},
     {"healthcheck_url": "https://x/health"}, {"preflight_skip": True}, {"ssh_port": 2222}],
    ids=lambda d: next(iter(d)),
)  # fmt: skip
def test_other_packages_keys_in_the_same_inventory_pass(data: dict) -> None:
    """Keys of another deploy package (a Docker package's docker_version) are not typos of
    ours, even under a prefix pgsteady also uses: the settings build and ignore them."""
    s = build_settings(data, FACTS)
    assert s == build_settings({}, FACTS)


@pytest.mark.parametrize(
    ("key", "suggestion"),
    [("postgres_verison", "postgres_version"), ("postgres_prot", "postgres_port"),
     ("docker_log_max_sise", "docker_log_max_size"), ("docker_package", "docker_packages"),
     ("backup_keep_week", "backup_keep_weeks"), ("healthcheck_interal", "healthcheck_interval"),
     ("app_dri", "app_dir"), ("pgbackrest_repo", "pgbackrest_repos")],
)  # fmt: skip
def test_a_misspelled_setting_is_refused_with_the_one_it_means(key: str, suggestion: str) -> None:
    assert errors_for(**{key: 1}) == [f"{key}: unknown setting; did you mean {suggestion}?"]


@pytest.mark.parametrize("key", ["pgbackrest_bucket", "watchdog_mode", "postgres_flavour"])
def test_an_unknown_key_under_a_pgsteady_prefix_is_refused(key: str) -> None:
    (error,) = errors_for(**{key: "x"})
    assert error.startswith(f"{key}: unknown setting;"), error


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


# --------------------------------------------------------------------------------------
# Settings that bypass managed files, lose acknowledged data, or cannot work
# --------------------------------------------------------------------------------------

ALL_VERSIONS = PG_VERSIONS
FALSE_SPELLINGS = ["off", "OFF", "false", "False", "f", "no", "n", "0", 0, False, " off "]
TRUE_SPELLINGS = ["on", "true", "True", "yes", "1", 1, True]
MANAGED = [
    "hba_file", "ident_file", "config_file", "data_directory", "include", "include_dir",
    "include_if_exists", "ssl", "ssl_cert_file", "ssl_key_file", "ssl_ca_file",
    "listen_addresses", "port", "unix_socket_directories",
]  # fmt: skip


@pytest.mark.parametrize("version", ALL_VERSIONS)
@pytest.mark.parametrize("key", MANAGED)
def test_managed_keys_are_refused_for_every_version(version: int, key: str) -> None:
    errors = errors_for(
        postgres_version=version,
        postgres_settings={key: "/tmp/evil"},
        pgbackrest_enabled=False,
        metrics_enabled=False,
    )
    assert len(errors) == 1, errors
    assert errors[0].startswith(f"postgres_settings[{key!r}] = '/tmp/evil': cannot be overridden")
    assert "accepted: any other server parameter" in errors[0]


@pytest.mark.parametrize("version", ALL_VERSIONS)
@pytest.mark.parametrize("key", ["fsync", "full_page_writes"])
@pytest.mark.parametrize("value", FALSE_SPELLINGS, ids=repr)
def test_durability_off_is_refused_in_every_spelling(version: int, key: str, value) -> None:
    # pgbackrest off: versions without Debian packages would add the image error.
    errors = errors_for(
        postgres_version=version,
        postgres_settings={key: value},
        pgbackrest_enabled=False,
        metrics_enabled=False,
    )
    assert len(errors) == 1, errors
    assert errors[0].startswith(f"postgres_settings[{key!r}] = {value!r}: refused"), errors
    assert "accepted: on, or leave it out" in errors[0]


@pytest.mark.parametrize("key", ["fsync", "full_page_writes"])
@pytest.mark.parametrize("value", TRUE_SPELLINGS, ids=repr)
def test_durability_on_is_accepted(key: str, value) -> None:
    build_settings({"postgres_settings": {key: value}}, FACTS)


@pytest.mark.parametrize("value", ["off", "false", "no", "0", False, 0])
def test_async_commit_needs_the_acknowledgement(value) -> None:
    errors = errors_for(postgres_settings={"synchronous_commit": value})
    assert len(errors) == 1, errors
    assert errors[0].startswith(f"postgres_settings['synchronous_commit'] = {value!r}:")
    assert "postgres_accept_async_commit_loss = True" in errors[0]
    assert "accepted: on, local, remote_write, remote_apply" in errors[0]
    s = build_settings(
        {"postgres_settings": {"synchronous_commit": value},
         "postgres_accept_async_commit_loss": True}, FACTS,
    )  # fmt: skip
    assert safety.async_commit_in_use(s)
    assert any("synchronous_commit" in w for w in safety.warnings(s))


@pytest.mark.parametrize("value", ["on", "local", "remote_write", "remote_apply", True])
def test_sync_commit_values_that_keep_acknowledged_data_need_nothing(value) -> None:
    s = build_settings({"postgres_settings": {"synchronous_commit": value}}, FACTS)
    assert not safety.async_commit_in_use(s)
    assert safety.warnings(s) == []


@pytest.mark.parametrize(("value", "warns"), [("ddl", True), ("mod", True), ("all", True),
                                              ("ALL", True), ("none", False)])  # fmt: skip
def test_statement_logging_that_records_passwords_warns(value: str, warns: bool) -> None:
    s = build_settings({"postgres_settings": {"log_statement": value}}, FACTS)
    found = [w for w in safety.warnings(s) if "log_statement" in w]
    assert bool(found) == warns
    if warns:
        assert "ALTER ROLE ... PASSWORD in clear text" in found[0]
        assert f"= {value!r}" in found[0]


@pytest.mark.parametrize("name", ["debug_print_parse", "debug_print_rewritten", "debug_print_plan"])
@pytest.mark.parametrize(("value", "warns"), [("on", True), (True, True), ("1", True),
                                              ("off", False), (False, False)])  # fmt: skip
def test_parse_tree_logging_warns(name: str, value, warns: bool) -> None:
    s = build_settings({"postgres_settings": {name: value}}, FACTS)
    found = [w for w in safety.warnings(s) if name in w]
    assert bool(found) == warns
    if warns:
        assert "password literals" in found[0]


def test_the_reviewed_case_fsync_off_in_64mb_gives_both_reasons() -> None:
    errors = errors_for(postgres_settings={"fsync": "off"}, postgres_memory_limit="64MB")
    assert len(errors) == 2, errors
    assert errors[0].startswith("postgres_settings['fsync'] = 'off': refused")
    assert errors[1].startswith("postgres_memory_limit = '64MB': below the 536MB the server")
    assert "max_connections = 200" in errors[1] and "at least 536MB" in errors[1]


@pytest.mark.parametrize(
    "data",
    [{}, {"postgres_max_connections": 50}, {"postgres_max_connections": 1000},
     {"postgres_db_type": "dw"}, {"postgres_settings": {"shared_buffers": "1GB"}},
     {"postgres_settings": {"max_connections": 500, "shared_buffers": 65536}}],
    ids=["web", "50-conns", "1000-conns", "dw", "sb-1GB", "override-conns-and-blocks"],
)  # fmt: skip
def test_memory_minimum_is_the_exact_boundary(data: dict) -> None:
    """The reported minimum is accepted and 1 MB less is refused."""
    probe = build_settings({**data, "postgres_memory_limit": "8GB"}, FACTS)
    minimum_mb = safety.memory_minimum(probe) // 2**20
    ok = build_settings({**data, "postgres_memory_limit": f"{minimum_mb}MB"}, FACTS)
    assert safety.memory_errors(ok) == []
    errors = errors_for(**data, postgres_memory_limit=f"{minimum_mb - 1}MB")
    assert len(errors) == 1 and f"at least {minimum_mb}MB" in errors[0], errors


def test_memory_minimum_follows_the_documented_formula() -> None:
    s = build_settings(
        {"postgres_memory_limit": "4GB",
         "postgres_settings": {"shared_buffers": "1GB", "max_connections": 100}}, FACTS,
    )  # fmt: skip
    assert safety.memory_minimum(s) == (64 + 1024 * 9 // 8 + 2 * 100) * 2**20


def test_auto_limit_too_small_for_the_connections_is_refused() -> None:
    errors = errors_for(postgres_max_connections=3000)  # auto: 6 GB of 8 GB RAM
    assert len(errors) == 1, errors
    assert errors[0].startswith("postgres_memory_limit = 'auto' (75% of the host's RAM: 6144 MB)")


@pytest.mark.parametrize(
    ("key", "value"),
    [("app_dir", "/srv/pg\n"), ("backup_dir", "/srv/b\n"), ("compose_project", "shop\n"),
     ("postgres_user", "app\n"), ("postgres_db", "app\n"), ("healthcheck_interval", "10s\n"),
     ("app_dir", "/srv/./pg"), ("app_dir", "//srv/pg"), ("app_dir", "/srv//pg")],
)  # fmt: skip
def test_a_trailing_newline_or_an_unnormalised_path_is_refused(key: str, value: str) -> None:
    """`$` matches before a final newline: validators match the whole value, because these
    values reach shell commands, compose files and ini files."""
    errors = errors_for(**{key: value})
    assert any(key in e for e in errors), errors


def test_reserved_patroni_roles_are_the_ones_patroni_makes():
    """R8 M4: the names _check_role refuses are exactly Patroni's replication/rewind roles."""
    from pgsteady.cluster.patroni import REPLICATION_USER, REWIND_USER
    from pgsteady.setting_types import PATRONI_ROLES

    assert set(PATRONI_ROLES) == {REPLICATION_USER, REWIND_USER}
