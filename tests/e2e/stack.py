"""Moved to :mod:`tests.support.stack`; this re-export keeps ``from stack import ...`` working
for code that still puts tests/e2e on ``sys.path`` (tests/lab/conftest.py, bench/stacks.py).
Delete it once they import ``tests.support.stack``."""

from tests.support.stack import (
    DOCKER,
    PYINFRA,
    REPO,
    ROOT,
    DeployResult,
    Stack,
    docker,
    free_port,
    parse_grand_total,
)

__all__ = [
    "DOCKER",
    "PYINFRA",
    "REPO",
    "ROOT",
    "DeployResult",
    "Stack",
    "docker",
    "free_port",
    "parse_grand_total",
]
