"""Readiness decisions (role, lag) and the configurable prefix of the WSGI health app."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pgsteady.client.health import HealthApp, normalize_prefix
from pgsteady.client.readiness import BadRequest, Want, decide, parse_want, replay_lag_s


@pytest.mark.parametrize(
    ("query", "want"),
    [
        ({}, Want()),
        ({"role": "primary"}, Want("primary")),
        ({"role": "replica", "max_lag_s": "2.5"}, Want("replica", 2.5)),
        ({"max_lag_s": "0"}, Want(None, 0.0)),
        ({"role": ""}, Want()),
    ],
)
def test_parse_want(query: dict[str, str], want: Want) -> None:
    assert parse_want(query) == want


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ({"role": "standby"}, "role='standby'"),
        ({"max_lag_s": "-1"}, "max_lag_s='-1'"),
        ({"max_lag_s": "nan"}, "max_lag_s='nan'"),
        ({"max_lag_s": "inf"}, "max_lag_s='inf'"),
        ({"max_lag_s": "ten"}, "max_lag_s='ten'"),
        ({"role": "primary", "max_lag_s": "3"}, "role=primary"),
    ],
)
def test_parse_want_refuses_by_name(query: dict[str, str], named: str) -> None:
    with pytest.raises(BadRequest) as err:
        parse_want(query)
    assert named in str(err.value)


def test_replay_lag() -> None:
    assert replay_lag_s(receiving=True, caught_up=True, replay_age_s=900.0) == 0.0  # idle primary
    assert replay_lag_s(receiving=False, caught_up=True, replay_age_s=900.0) == 900.0
    assert replay_lag_s(receiving=True, caught_up=False, replay_age_s=3.0) == 3.0
    assert replay_lag_s(receiving=True, caught_up=False, replay_age_s=None) is None
    assert replay_lag_s(receiving=True, caught_up=False, replay_age_s=-0.2) == 0.0  # skew


@pytest.mark.parametrize(
    ("want", "in_recovery", "lag", "ok"),
    [
        (Want(), False, None, True),
        (Want(), True, None, True),
        (Want("primary"), False, None, True),
        (Want("primary"), True, 0.0, False),
        (Want("replica"), False, None, False),
        (Want("replica"), True, 999.0, True),  # no bound asked
        (Want("replica", 5), True, 5.0, True),
        (Want("replica", 5), True, 5.1, False),
        (Want("replica", 5), True, None, False),  # unknown lag is not "within"
        (Want(None, 5), False, None, True),  # a primary has no lag
        (Want(None, 5), True, 6.0, False),
    ],
)
def test_decide(want: Want, in_recovery: bool, lag: float | None, ok: bool) -> None:
    assert (decide(want, in_recovery, lag) is None) is ok


def test_prefix_normalized_and_checked() -> None:
    assert normalize_prefix("/api/health/") == "/api/health"
    assert normalize_prefix("/") == ""
    with pytest.raises(ValueError, match="prefix='api'"):
        normalize_prefix("api")


def test_wsgi_app_serves_under_its_prefix() -> None:
    """Routes move with the prefix; the old /health paths answer 404 there."""
    app = HealthApp(lambda: None, prefix="/api/health")  # live never asks for the pool
    statuses: dict[str, str] = {}

    def call(path: str) -> str:
        def start_response(status: str, headers: list[tuple[str, str]]) -> None:
            statuses[path] = status

        b"".join(app({"PATH_INFO": path, "REQUEST_METHOD": "GET"}, start_response))
        return statuses[path]

    assert call("/api/health/live") == "200 OK"
    assert call("/api/health/live/") == "200 OK"
    assert call("/health/live") == "404 Not Found"
    assert call("/api/healthz/live") == "404 Not Found"
    assert call("/api/health/other") == "404 Not Found"
    out: dict[str, str] = {}
    environ = {"PATH_INFO": "/api/health/ready", "QUERY_STRING": "role=x", "REQUEST_METHOD": "GET"}
    body = b"".join(app(environ, lambda status, headers: out.update(status=status)))
    assert out["status"] == "400 Bad Request" and b"role='x'" in body  # checked before probing


def test_frameworks_are_imported_only_by_their_adapters() -> None:
    """pgsteady.client works without Flask or Starlette installed (optional extras)."""
    code = (
        "import sys, pgsteady.client, pgsteady.client.health;"
        "print(sorted(m for m in ('flask', 'starlette', 'werkzeug') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_redact_drops_every_secret_parameter() -> None:
    from pgsteady.client.process_pool import redact

    text = redact(
        "host=db1 dbname=app user=app password=pw-secret-1 sslkey=/k sslpassword=key-secret-2"
    )
    assert "pw-secret-1" not in text and "key-secret-2" not in text
    assert "host=db1" in text and "sslkey=/k" in text
    uri = redact("postgresql://app:pw-secret-3@db1/app?sslpassword=key-secret-4")
    assert "pw-secret-3" not in uri and "key-secret-4" not in uri
