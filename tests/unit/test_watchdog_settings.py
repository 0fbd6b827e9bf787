"""Watchdog settings: validated before anything runs, and rendered into ctl.env."""

from __future__ import annotations

import pytest

from pgsteady.settings import HostFacts, SettingsError, build_settings
from pgsteady.stack.compose import render_ctl_env

FACTS = HostFacts(ram_mb=4096, cpus=2)


def test_ctl_env_carries_the_watchdog_policy() -> None:
    s = build_settings(
        {
            "postgres_restart_policy": "no",
            "watchdog_backoff": "2m",
            "watchdog_backoff_max": "2h",
            "watchdog_on_failure_command": "mail -s 'pg loop' ops@example.org",
        },
        FACTS,
    )
    env = render_ctl_env(s, "docker-compose")
    assert "PGSTEADY_RESTART_POLICY=no\n" in env
    assert "PGSTEADY_WATCHDOG_BACKOFF=120\n" in env
    assert "PGSTEADY_WATCHDOG_BACKOFF_MAX=7200\n" in env
    assert "PGSTEADY_WATCHDOG_ON_FAILURE='mail -s '\"'\"'pg loop'\"'\"' ops@example.org'" in env
    assert f"PGSTEADY_STATE_DIR={s.layout.state}\n" in env


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"watchdog_backoff": "2h"}, "watchdog_backoff = '2h': longer than watchdog_backoff_max"),
        ({"watchdog_backoff": "500ms"}, "watchdog_backoff = '500ms': below 1s"),
        ({"watchdog_backoff_max": "soon"}, "watchdog_backoff_max"),
        ({"watchdog_on_failure_command": "a\nb"}, "watchdog_on_failure_command"),
    ],
)
def test_bad_watchdog_settings_are_refused(data: dict[str, object], message: str) -> None:
    with pytest.raises(SettingsError) as exc:
        build_settings(data, FACTS)
    assert message in str(exc.value)
