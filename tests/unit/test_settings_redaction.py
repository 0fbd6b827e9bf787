"""A refused value of a setting that may hold a secret never appears in the error text.

Settings errors reach CI logs (``make deploy``, ``make ci``) and ``make ci``'s JUnit
artifact, which no CI log masking covers; the key and the rule are enough to fix it.
"""

from __future__ import annotations

import pytest

from pgsteady.settings import SENSITIVE, HostFacts, Settings, SettingsError, build_settings

FACTS = HostFacts(ram_mb=4096, cpus=2)
TOKEN = "T0KEN-ab12cd34ef56"


def errors_for(**data: object) -> str:
    with pytest.raises(SettingsError) as err:
        build_settings(data, FACTS, host="db1")
    return str(err.value)


@pytest.mark.parametrize(
    ("key", "value", "rule"),
    [
        (
            "watchdog_on_failure_command",
            f"curl https://hooks.slack.com/services/T/B/{TOKEN}%20x",
            "without '%'",
        ),
        ("backup_on_failure_command", f"curl -H 'X-Token: {TOKEN}'\nmail", "one line"),
        ("postgres_debian_mirror", f"https://ops:{TOKEN}@mirror.internal/debian", "mirror URI"),
        ("postgres_debian_security_mirror", f"https://ops:{TOKEN}@m/debian sec", "mirror URI"),
        ("watchdog_on_failure_command", ["curl", TOKEN], "valid string"),
    ],
)
def test_a_refused_secret_bearing_value_is_redacted(key: str, value: object, rule: str) -> None:
    text = errors_for(**{key: value})
    assert TOKEN not in text
    assert f"{key} = <redacted, {len(str(value))} characters>: " in text
    assert rule in text


def test_other_settings_still_show_their_value() -> None:
    text = errors_for(postgres_port=70000, watchdog_on_failure_command=f"x {TOKEN} %")
    assert "postgres_port = 70000: " in text
    assert TOKEN not in text


def test_commands_and_urls_are_the_sensitive_settings() -> None:
    """The rule (docs/security.md): a setting holding a shell command or a URL is sensitive."""
    kinds = ("_command", "_mirror", "_url", "_hook", "_webhook")
    assert {n for n in Settings.model_fields if n.endswith(kinds)} == set(SENSITIVE)
    assert "watchdog_on_failure_command" in SENSITIVE and "postgres_port" not in SENSITIVE
