"""Bad input: each invalid setting gives exactly one clear error naming the key, the value
and what is accepted, through build_settings and through the preflight check."""

from __future__ import annotations

from typing import Any

import pytest

from pgsteady.settings import HostFacts, SettingsError, build_settings
from pgsteady.stack.preflight import PreflightInput, check

FACTS = HostFacts(ram_mb=8192, cpus=4)

#: (data, key, value as shown, a fragment naming what is accepted)
BAD_SETTINGS: list[tuple[dict[str, Any], str, str, str]] = [
    # wrong types
    ({"postgres_port": "5432"}, "postgres_port", "'5432'", "valid integer"),
    ({"postgres_port": True}, "postgres_port", "True", "valid integer"),
    ({"postgres_version": "17"}, "postgres_version", "'17'", "valid integer"),
    ({"backup_enabled": "yes"}, "backup_enabled", "'yes'", "valid boolean"),
    ({"postgres_cpus": "two"}, "postgres_cpus", "'two'", "number of CPUs"),
    ({"postgres_cpus": True}, "postgres_cpus", "True", "number of CPUs"),
    ({"healthcheck_interval": 10}, "healthcheck_interval", "10", "'10s'"),
    ({"postgres_memory_limit": 1024}, "postgres_memory_limit", "1024", "'512MB'"),
    ({"postgres_allowed_networks": "10.0.0.0/8"}, "postgres_allowed_networks", "'10.0.0.0/8'",
     "valid list"),
    ({"postgres_extensions": "pg_trgm"}, "postgres_extensions", "'pg_trgm'", "valid list"),
    ({"postgres_settings": "work_mem=4MB"}, "postgres_settings", "'work_mem=4MB'",
     "valid dictionary"),
    # out of range, negative or zero
    ({"postgres_port": 70000}, "postgres_port", "70000", "less than or equal to 65535"),
    ({"postgres_port": 0}, "postgres_port", "0", "greater than or equal to 1"),
    ({"postgres_memory_limit": "-1GB"}, "postgres_memory_limit", "'-1GB'", "e.g. 16GB"),
    ({"postgres_shm_size": "0MB"}, "postgres_shm_size", "'0MB'", "larger than zero"),
    ({"postgres_cpus": -1}, "postgres_cpus", "-1", "above 0"),
    ({"backup_keep_days": -1}, "backup_keep_days", "-1", "greater than or equal to 1"),
    ({"healthcheck_retries": 0}, "healthcheck_retries", "0", "greater than or equal to 1"),
    ({"healthcheck_interval": "0s"}, "healthcheck_interval", "'0s'", "longer than zero"),
    ({"postgres_max_connections": 5}, "postgres_max_connections", "5",
     "greater than or equal to 10"),
    # above what the host has
    ({"postgres_memory_limit": "64GB"}, "postgres_memory_limit", "'64GB'",
     "a size up to the RAM"),
    ({"postgres_cpus": 16}, "postgres_cpus", "16", "above the host's 4 CPUs"),
    # schedules and durations
    ({"backup_schedule": "every day"}, "backup_schedule", "'every day'", "5-field cron"),
    ({"backup_schedule": "61 * * * *"}, "backup_schedule", "'61 * * * *'", "outside 0-59"),
    ({"postgres_stop_grace_period": "1 minute"}, "postgres_stop_grace_period", "'1 minute'",
     "10s, 500ms, 5m or 1h"),
    # versions and sources
    ({"postgres_version": 12}, "postgres_version", "12", "13 to 18"),
    ({"postgres_image_source": "debian", "postgres_version": 16}, "postgres_version", "16",
     "Debian packages only 15 or 17"),
    ({"postgres_image_source": "floppy"}, "postgres_image_source", "'floppy'",
     "'auto', 'registry', 'debian' or 'archive'"),
    ({"postgres_image": "Postgres Latest"}, "postgres_image", "'Postgres Latest'",
     "image reference like postgres:17"),
    # addresses and networks
    ({"postgres_bind": "localhost"}, "postgres_bind", "'localhost'", "IP address"),
    ({"postgres_bind": "10.0.0.300"}, "postgres_bind", "'10.0.0.300'", "IP address"),
    ({"postgres_allowed_networks": ["10.0.0.0/33"]}, "postgres_allowed_networks.0",
     "'10.0.0.0/33'", "CIDR like 10.0.0.0/8"),
    ({"postgres_allowed_networks": ["everyone"]}, "postgres_allowed_networks.0", "'everyone'",
     "samenet/samehost"),
    # names and paths
    ({"compose_project": "My Project"}, "compose_project", "'My Project'",
     "lower-case letters, digits, _ and -"),
    ({"postgres_db": "my-app"}, "postgres_db", "'my-app'", "lower-case SQL identifier"),
    ({"postgres_user": "pg_app"}, "postgres_user", "'pg_app'", "Postgres reserves"),
    ({"postgres_user": "postgres"}, "postgres_user", "'postgres'", "its own role"),
    ({"postgres_readonly_user": "app"}, "postgres_readonly_user", "'app'",
     "must differ from postgres_user"),
    ({"app_dir": "relative/dir"}, "app_dir", "'relative/dir'", "absolute path"),
    ({"app_dir": "/srv/my db"}, "app_dir", "'/srv/my db'", "absolute path of letters"),
    ({"app_dir": "/etc"}, "app_dir", "'/etc'", "a directory of its own"),
    ({"backup_dir": "/srv/../etc"}, "backup_dir", "'/srv/../etc'", "absolute path"),
    # server parameter overrides
    ({"postgres_settings": {"Work-Mem": "4MB"}}, "postgres_settings", "'Work-Mem'",
     "not a Postgres setting name"),
    ({"postgres_settings": {"shared_bufers": "1GB"}}, "postgres_settings['shared_bufers']",
     "'1GB'", "did you mean 'shared_buffers'"),
    ({"postgres_settings": {"work_mem": "lots"}}, "postgres_settings['work_mem']", "'lots'",
     "expected a number in 64..2147483647"),
    ({"postgres_settings": {"work_mem": None}}, "postgres_settings", "None",
     "string, number or boolean"),
    ({"postgres_settings": {"port": 5433}}, "postgres_settings['port']", "5433",
     "cannot be overridden"),
    ({"postgres_settings": {"search_path": "a\nb"}}, "postgres_settings", "'a\\nb'",
     "line break"),
    ({"postgres_version": 16, "postgres_settings": {"work_mem": "1MB\nfsync = off"}},
     "postgres_settings", "fsync = off", "line break"),
    ({"postgres_version": 16, "postgres_settings": {"hba_file": "/tmp/hba"},
      "pgbackrest_enabled": False, "metrics_enabled": False},
     "postgres_settings['hba_file']", "'/tmp/hba'", "cannot be overridden"),
    ({"postgres_version": 18, "postgres_settings": {"include_dir": "/tmp"},
      "pgbackrest_enabled": False, "metrics_enabled": False},
     "postgres_settings['include_dir']", "'/tmp'", "accepted: any other server parameter"),
    # durability and resources
    ({"postgres_settings": {"fsync": "off"}}, "postgres_settings['fsync']", "'off'",
     "accepted: on"),
    ({"postgres_settings": {"full_page_writes": False}}, "postgres_settings['full_page_writes']",
     "False", "accepted: on"),
    ({"postgres_settings": {"synchronous_commit": "off"}},
     "postgres_settings['synchronous_commit']", "'off'", "postgres_accept_async_commit_loss"),
    ({"postgres_memory_limit": "64MB"}, "postgres_memory_limit", "'64MB'", "at least 536MB"),
    # unknown keys
    ({"backup_keep_day": 3}, "backup_keep_day", "unknown setting",
     "did you mean backup_keep_days?"),
    ({"postgres_shared_bufers": "1GB"}, "postgres_shared_bufers", "unknown setting",
     "server parameters go in postgres_settings"),
    ({"watchdog_flavour": "x"}, "watchdog_flavour", "unknown setting", "docs/settings.md"),
    ({"docker_log_max_sise": "10m"}, "docker_log_max_sise", "unknown setting",
     "did you mean docker_log_max_size?"),
    # cron safety; a command may carry a secret (a webhook token): its value is redacted
    ({"backup_on_failure_command": "echo 100% failed"}, "backup_on_failure_command",
     "<redacted, 16 characters>", "without '%'"),
]  # fmt: skip


def _id(case: tuple[dict[str, Any], str, str, str]) -> str:
    data = case[0]
    return ",".join(f"{k}={v!r}" for k, v in data.items())[:60]


def test_the_table_is_large_and_varied() -> None:
    assert len(BAD_SETTINGS) >= 25
    assert len({case[1].split(".")[0].split("[")[0] for case in BAD_SETTINGS}) >= 25


@pytest.mark.parametrize(("data", "key", "shown", "accepted"), BAD_SETTINGS, ids=map(_id,
                         BAD_SETTINGS))  # fmt: skip
def test_one_clear_error_naming_key_value_and_accepted(
    data: dict[str, Any], key: str, shown: str, accepted: str
) -> None:
    with pytest.raises(SettingsError) as exc:
        build_settings(data, FACTS, host="db1")
    errors = exc.value.errors
    assert len(errors) == 1, errors
    error = errors[0]
    assert error.startswith(key), error
    assert shown in error, error
    assert accepted in error, error
    # The message is for humans: no pydantic internals, no Python type names.
    for noise in ("pydantic", "type=", "For further information", "literal_error"):
        assert noise not in error
    assert "1 invalid setting(s) for host db1" in str(exc.value)


def test_every_problem_is_reported_at_once() -> None:
    data: dict[str, Any] = {}
    for case in BAD_SETTINGS:
        data.update(case[0])
    with pytest.raises(SettingsError) as exc:
        build_settings(data, FACTS)
    # Later duplicates of a key replace earlier ones, so count the distinct keys.
    assert len(exc.value.errors) >= 20


# --------------------------------------------------------------------------------------
# Preflight: what the host reports
# --------------------------------------------------------------------------------------

GOOD_HOST = PreflightInput(
    distro="Debian", distro_major=12, free_disk_bytes=50 * 2**30, port_owner=None, container=None
)


def _preflight(data: dict[str, Any] | None = None, facts: HostFacts = FACTS, **host: Any):
    s = build_settings(data or {}, facts)
    fields = {**GOOD_HOST.__dict__, **host}
    return check(s, PreflightInput(**fields))


def test_a_good_host_passes() -> None:
    assert _preflight() == []


@pytest.mark.parametrize(
    ("data", "facts", "host", "fragments"),
    [
        ({"postgres_port": 6000}, FACTS, {"port_owner": "nginx"},
         ["port 6000 is in use by 'nginx'", "postgres_port to a free port"]),
        ({}, FACTS, {"distro": "Alpine"}, ["unsupported OS 'Alpine'", "Debian 11+"]),
        ({}, FACTS, {"distro": "Ubuntu", "distro_major": 18}, ["Ubuntu 18 is too old",
         "Ubuntu 20+"]),
        ({}, HostFacts(ram_mb=512, cpus=1), {}, ["RAM 0.5 GB", "preflight_min_ram=1GB"]),
        ({"app_dir": "/srv/pg"}, FACTS, {"free_disk_bytes": 2**29},
         ["app_dir=/srv/pg is 0.5 GB", "preflight_min_disk=2GB"]),
    ],
    ids=["port-in-use", "unsupported-os", "old-release", "small-ram", "small-disk"],
)  # fmt: skip
def test_preflight_gives_one_clear_failure(
    data: dict[str, Any], facts: HostFacts, host: dict[str, Any], fragments: list[str]
) -> None:
    failures = _preflight(data, facts, **host)
    assert len(failures) == 1, failures
    for fragment in fragments:
        assert fragment in failures[0]


def test_our_own_container_on_the_port_is_not_a_conflict() -> None:
    ours = {"HostConfig": {"PortBindings": {"5432/tcp": [{"HostPort": "5432"}]}}}
    assert _preflight(port_owner="docker-proxy", container=ours) == []
    other = {"HostConfig": {"PortBindings": {"5432/tcp": [{"HostPort": "6543"}]}}}
    assert len(_preflight(port_owner="docker-proxy", container=other)) == 1
