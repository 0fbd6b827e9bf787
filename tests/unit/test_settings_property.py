"""Property-based: any input gives Settings or a SettingsError (never another exception),
and any valid Settings render every template."""

from __future__ import annotations

import string
from typing import Any

import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from pgsteady.backup.tool_config import render_backup_config
from pgsteady.postgres.conf_files import (
    render_init_db_sql,
    render_pg_hba_conf,
    render_postgresql_conf,
)
from pgsteady.settings import HostFacts, Settings, SettingsError, build_settings, defaults
from pgsteady.stack.compose import render_compose, render_ctl_env
from pgsteady.stack.jobs import backup_job, render_cron, render_service, render_timer, watchdog_job

KEYS = sorted(defaults())

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                max_size=4),
    max_leaves=8,
)  # fmt: skip

random_keys = st.text(alphabet=string.ascii_lowercase + "_", min_size=1, max_size=20)
random_keys |= st.sampled_from(
    ["postgres_shared_buffers", "postgres_x", "postgres_", "app_", "backup_foo", "ssh_user"]
)
#: What pyinfra's facts can report (tasks/settings.py: Memory in MB, Cpus at least 1).
facts = st.builds(
    HostFacts,
    ram_mb=st.integers(min_value=1, max_value=2**22),
    cpus=st.integers(min_value=1, max_value=256),
    has_systemd=st.booleans(),
)

#: Values that are often valid, so the second property sees many valid Settings.
PLAUSIBLE: dict[str, st.SearchStrategy[Any]] = {
    "app_dir": st.sampled_from(["/opt/pgsteady", "/srv/pg.data-1/", "/var/lib/x_y"]),
    "compose_project": st.from_regex(r"\A[a-z0-9][a-z0-9_-]{0,20}\Z"),
    "postgres_version": st.integers(min_value=12, max_value=19),
    "postgres_image_source": st.sampled_from(["auto", "registry", "debian", "archive"]),
    "postgres_image": st.none() | st.sampled_from(["postgres:17", "reg.example/pg:16@x"]),
    "postgres_image_archive": st.none() | st.just("/srv/images/pg.tar"),
    "postgres_port": st.integers(min_value=-1, max_value=70000),
    "postgres_bind": st.sampled_from(["127.0.0.1", "0.0.0.0", "::1", "::", "10.1.2.3"]),
    "postgres_allowed_networks": st.lists(
        st.sampled_from(["samenet", "samehost", "10.0.0.0/8", "10.1.2.3/8", "fd00::/8"]),
        max_size=3,
    ),
    "postgres_db": st.from_regex(r"\A[a-z_][a-z0-9_]{0,62}\Z"),
    "postgres_user": st.from_regex(r"\A[a-z_][a-z0-9_]{0,62}\Z"),
    "postgres_readonly_user": st.none() | st.from_regex(r"\A[a-z_][a-z0-9_]{0,20}\Z"),
    "postgres_extensions": st.lists(st.from_regex(r"\A[a-z_][a-z0-9_]{0,20}\Z"), max_size=3),
    "postgres_schema_files": st.lists(st.sampled_from(["/srv/a.sql", "b.sql"]), max_size=2),
    "postgres_memory_limit": st.sampled_from(["auto", "256MB", "1GB", "1.5GB", "64GB", "0"]),
    "postgres_cpus": st.sampled_from(["auto", 0.5, 1, 2, 3.5, 300]),
    "postgres_shm_size": st.sampled_from(["64MB", "256MB", "1g"]),
    "postgres_max_connections": st.none() | st.integers(min_value=1, max_value=20000),
    "postgres_settings": st.dictionaries(
        st.sampled_from(
            [
                "work_mem",
                "statement_timeout",
                "search_path",
                "log_line_prefix",
                "jit",
                "application_name",
                "DateStyle",
            ]
        ),
        st.text(max_size=12) | st.integers(-5, 10**6) | st.booleans() | st.floats(),
        max_size=3,
    ),  # fmt: skip
    "postgres_stop_grace_period": st.sampled_from(["60s", "500ms", "2m", "1h"]),
    "healthcheck_interval": st.sampled_from(["10s", "500ms", "1m"]),
    "healthcheck_retries": st.integers(min_value=0, max_value=200),
    "docker_log_max_size": st.sampled_from(["10m", "1g", "500k"]),
    "docker_log_max_file": st.integers(min_value=0, max_value=200),
    "backup_enabled": st.booleans(),
    "backup_dir": st.none() | st.just("/mnt/backups"),
    "backup_schedule": st.sampled_from(["15 2 * * *", "@daily", "*/5 * * * 1-5", "0 0 1 jan *"]),
    "backup_keep_days": st.integers(min_value=0, max_value=4000),
    "backup_on_failure_command": st.none() | st.text(max_size=30),
}


def _mixed_value(key: str) -> st.SearchStrategy[Any]:
    plausible = PLAUSIBLE.get(key)
    return json_values if plausible is None else plausible | json_values


@st.composite
def inputs(draw: st.DrawFn, plausible_only: bool = False) -> dict[str, Any]:
    chosen = draw(st.lists(st.sampled_from(KEYS), max_size=10, unique=True))
    data: dict[str, Any] = {}
    for key in chosen:
        strategy = PLAUSIBLE.get(key, st.nothing()) if plausible_only else _mixed_value(key)
        if plausible_only and key not in PLAUSIBLE:
            continue
        data[key] = draw(strategy)
    if not plausible_only:
        extra = draw(st.dictionaries(random_keys, json_values, max_size=3))
        data.update(extra)
    return data


def _build(data: dict[str, Any], host: HostFacts) -> Settings | None:
    try:
        result = build_settings(data, host)
    except SettingsError as exc:
        assert exc.errors, "a SettingsError lists at least one problem"
        assert all(isinstance(e, str) and e for e in exc.errors)
        return None
    assert isinstance(result, Settings)
    return result


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=inputs(), host=facts)
@example(data={"postgres_cpus": True}, host=HostFacts(8192, 4))
@example(data={"postgres_settings": {"work_mem": None}}, host=HostFacts(8192, 4))
@example(data={"postgres_version": 16, "postgres_settings": {"x": "a\nb"}}, host=HostFacts(1, 1))
def test_any_input_gives_settings_or_settings_error(data: dict[str, Any], host: HostFacts) -> None:
    _build(data, host)


def render_everything(s: Settings) -> dict[str, str]:
    """Every file a deploy renders from Settings."""
    watchdog, backup = watchdog_job(s), backup_job(s)
    return {
        "compose": render_compose(s),
        "postgresql.conf": render_postgresql_conf(s),
        "pg_hba.conf": render_pg_hba_conf(s),
        "init_db.sql": render_init_db_sql(s),
        "ctl.env": render_ctl_env(s, "docker-compose"),
        "backup.json": render_backup_config(s),
        **{f"{job.unit}.cron": render_cron(job) for job in (watchdog, backup)},
        **{f"{job.unit}.service": render_service(job) for job in (watchdog, backup)},
        **{f"{job.unit}.timer": render_timer(job) for job in (watchdog, backup)},
    }


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=inputs(plausible_only=True), host=facts)
@example(data={}, host=HostFacts(1, 1))
@example(data={"postgres_memory_limit": "256MB", "postgres_cpus": 0.5}, host=HostFacts(512, 1))
@example(data={"postgres_version": 16, "postgres_settings": {"x": "a\rb"}}, host=HostFacts(1, 1))
def test_valid_settings_render_every_template(data: dict[str, Any], host: HostFacts) -> None:
    s = _build(data, host)
    if s is None:
        return
    rendered = render_everything(s)
    assert all(rendered.values())
    compose = yaml.safe_load(rendered["compose"])
    assert compose["services"]["postgres"]["container_name"] == s.container_name
