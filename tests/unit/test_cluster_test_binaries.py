"""The cluster tests' binary check (tests/support/cluster_binaries.py): a missing engine
skips on a developer machine and FAILS in CI, where ensure-test-host must install it."""

from __future__ import annotations

import pytest

from tests.support.cluster_binaries import require, require_file


def test_missing_binary_skips_outside_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(pytest.skip.Exception, match="ensure-test-host"):
        require("pgsteady-no-such-engine")


def test_missing_binary_or_file_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(pytest.fail.Exception, match="CI: pgsteady-no-such-engine"):
        require("pgsteady-no-such-engine")
    with pytest.raises(pytest.fail.Exception, match="installs postgresql-15"):
        require_file("/nonexistent/pg_ctl", "postgresql-15")


def test_present_binary_is_found(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/bin:/usr/bin")
    assert require("sh").endswith("/sh")
