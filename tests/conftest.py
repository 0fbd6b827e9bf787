"""Guards for every test directory.

The umask: the suite runs with umask 022 or stricter (a looser one is tightened once, at
start), so what tests create for each other is never group/other-writable by accident;
a test that changes the umask must put it back (a leak fails that test). Tests that
prove the product does not depend on the caller's umask ask for ``loose_umask`` (000):
pgsteady sets every mode it relies on itself.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

REQUIRED_UMASK_BITS = 0o022


def current_umask() -> int:
    """The process umask (reading it means setting it: set it straight back)."""
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


def pytest_configure(config: pytest.Config) -> None:
    mask = current_umask()
    if mask & REQUIRED_UMASK_BITS != REQUIRED_UMASK_BITS:
        os.umask(mask | REQUIRED_UMASK_BITS)


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
