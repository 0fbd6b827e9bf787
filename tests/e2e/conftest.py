"""Fixtures for end-to-end tests: isolated stacks converged by the real pyinfra CLI."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from stack import Stack  # noqa: E402


@pytest.fixture
def new_stack() -> Iterator[Stack]:
    """A fresh, not yet deployed stack, destroyed afterwards."""
    stack = Stack()
    yield stack
    stack.destroy()


@pytest.fixture(scope="module")
def deployed() -> Iterator[Stack]:
    """A converged stack shared by one test module, destroyed afterwards."""
    stack = Stack()
    result = stack.deploy()
    if result.returncode != 0:
        stack.destroy()
        pytest.fail(f"deploy failed:\n{result.output[-4000:]}")
    yield stack
    stack.destroy()
