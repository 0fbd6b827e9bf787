"""Fixtures for end-to-end tests: isolated stacks converged by the real pyinfra CLI.

A converge costs a minute or two, so modules that only need "a converged default stack"
share one (``shared_stack``); a module that changes the stack in ways others must not see
takes its own (``deployed``) or builds one with its own data.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.stack import Stack


def deploy_or_fail(stack: Stack) -> Stack:
    """Converge ``stack``; if that fails, destroy it and fail with pyinfra's output."""
    result = stack.deploy()
    if result.returncode != 0:
        stack.destroy()
        pytest.fail(f"deploy failed:\n{result.output[-4000:]}")
    return stack


@pytest.fixture
def new_stack() -> Iterator[Stack]:
    """A fresh, not yet deployed stack, destroyed afterwards."""
    stack = Stack()
    yield stack
    stack.destroy()


@pytest.fixture(scope="module")
def deployed() -> Iterator[Stack]:
    """A converged stack of one test module, destroyed afterwards."""
    stack = deploy_or_fail(Stack())
    yield stack
    stack.destroy()


@pytest.fixture(scope="session")
def _shared_stacks() -> Iterator[dict[str, Stack]]:
    """Holds the shared stack between modules; destroys it if a run stops early."""
    stacks: dict[str, Stack] = {}
    yield stacks
    for stack in stacks.values():
        stack.destroy()


def _used_after_this_module(request: pytest.FixtureRequest, fixture: str) -> bool:
    """True when a test of a later module of this run (after -k, --lf ...) uses ``fixture``."""
    items = request.session.items
    last = max(i for i, item in enumerate(items) if item.path == request.path)
    return any(fixture in item.fixturenames for item in items[last + 1 :])


@pytest.fixture(scope="module")
def shared_stack(
    request: pytest.FixtureRequest, _shared_stacks: dict[str, Stack]
) -> Iterator[Stack]:
    """One converged default stack for every module that asks for it.

    Each such module must hand it on converged and healthy, with nothing of its own left
    in it (test_converge_round_trips, test_health_probe_quiet, test_host_files,
    test_monitor, test_prometheus_alerts, test_update_image, test_verify_durability:
    their faults are undone or re-converged; a module whose kills leave restarts that
    `make status` warns about, test_client_container, keeps a stack of its own). It is destroyed
    after the last module of the run that uses it, not at the end of the session, so it
    does not hold the CPUs while the session's other modules run.
    """
    stack = _shared_stacks.get("default")
    if stack is None:
        stack = _shared_stacks["default"] = deploy_or_fail(Stack())
    else:
        stack.wait_healthy()
    yield stack
    if not _used_after_this_module(request, "shared_stack"):
        _shared_stacks.pop("default").destroy()
