"""The cluster engines the cluster integration tests run (Debian packages installed by
scripts/ensure-test-host; Patroni from the hash-pinned test virtualenv `make` builds): a
missing one skips the test on a developer machine and fails it in CI (CI=true), where
`make test` must have installed it."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

#: The test-only virtualenv with Patroni 4.0.7 (Makefile: requirements/patroni.txt), the
#: version of the product's trixie image; Debian bookworm's 3.0.2 has the etcd3 leader
#: update without a revision compare that split-brained 2 of 12 pause trials.
PATRONI_VENV = Path(__file__).resolve().parents[2] / ".venv-patroni"


def patroni() -> str:
    """The pinned Patroni's path; skip (or, in CI, fail) when `make` has not built it."""
    path = PATRONI_VENV / "bin" / "patroni"
    if (PATRONI_VENV / ".installed").exists() and os.access(path, os.X_OK):
        return str(path)
    reason = f"{path} is missing (make .venv-patroni/.installed builds it)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI: {reason}")
    pytest.skip(reason)


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
