"""The cluster engines the cluster integration tests run (Debian packages installed by
scripts/ensure-test-host): a missing one skips the test on a developer machine and fails
it in CI (CI=true), where ensure-test-host must have installed it."""

from __future__ import annotations

import os
import shutil

import pytest


def require(binary: str) -> str:
    """The path of ``binary``; skip (or, in CI, fail) when it is not installed."""
    path = shutil.which(binary) or (
        f"/usr/sbin/{binary}" if os.path.exists(f"/usr/sbin/{binary}") else None
    )
    if path:
        return path
    reason = f"{binary} is not installed (sh scripts/ensure-test-host installs it)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI: {reason}")
    pytest.skip(reason)


def require_file(path: str, package: str) -> str:
    """``path`` when it exists; skip (or, in CI, fail) naming the package that ships it."""
    if os.path.exists(path):
        return path
    reason = f"{path} is missing (sh scripts/ensure-test-host installs {package})"
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI: {reason}")
    pytest.skip(reason)
