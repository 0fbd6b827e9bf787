"""Guards for every test directory.

The umask: the suite runs with umask 022 or stricter (a looser one is tightened once, at
start), so what tests create for each other is never group/other-writable by accident;
a test that changes the umask must put it back (a leak fails that test). Tests that
prove the product does not depend on the caller's umask ask for ``loose_umask`` (000):
pgsteady sets every mode it relies on itself.

Docker volumes: anonymous volumes the session created and left dangling (a ``docker rm``
without ``-v``) are named at the end; in CI (CI=true) they fail the session.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.support import volume_leaks

REQUIRED_UMASK_BITS = 0o022
_VOLUMES_AT_START = pytest.StashKey[set[str] | None]()


def current_umask() -> int:
    """The process umask (reading it means setting it: set it straight back)."""
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


def pytest_configure(config: pytest.Config) -> None:
    mask = current_umask()
    if mask & REQUIRED_UMASK_BITS != REQUIRED_UMASK_BITS:
        os.umask(mask | REQUIRED_UMASK_BITS)


def pytest_sessionstart(session: pytest.Session) -> None:
    session.stash[_VOLUMES_AT_START] = volume_leaks.snapshot()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    leaked = volume_leaks.leaked(session.stash.get(_VOLUMES_AT_START, None))
    if not leaked:
        return
    message = (
        f"{len(leaked)} anonymous Docker volume(s) created during this session were left "
        f"dangling (a docker rm without -v?): {', '.join(leaked)}"
    )
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(message, red=True)
    if os.environ.get("CI") == "true" and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(autouse=True)
def _umask_guard() -> Iterator[None]:
    before = current_umask()
    yield
    after = current_umask()
    if after != before:
        os.umask(before)
        pytest.fail(f"the test left the umask {after:04o} (was {before:04o}); restore it")


@pytest.fixture
def loose_umask() -> Iterator[int]:
    """umask 000 for this test (and the processes it starts), restored after."""
    before = os.umask(0)
    try:
        yield 0
    finally:
        os.umask(before)
