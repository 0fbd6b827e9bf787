"""Fixtures of the verify suite and the plugin that turns outcomes into fix lines.

Run through ``make verify`` (pgsteady/verify.py), which passes the host's context
(inventory data + host facts) in ``PGSTEADY_VERIFY_CONTEXT`` and collects the results
from ``PGSTEADY_VERIFY_RESULTS``. A failing check says what is wrong and how to fix it:
with :func:`pgsteady.verify.check` (``fix=`` overrides), or by its ``fix`` marker,
or, by default, ``make deploy``.
"""

from __future__ import annotations

import functools
import json
import os
import shlex
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from pgsteady.postgres.session import SUPERUSER_PGOPTIONS
from pgsteady.settings import Settings
from pgsteady.stack.hostfacts import DOCKER_PATH_COMMAND
from pgsteady.verify import (
    CONTEXT_ENV,
    RESULTS_ENV,
    CheckFailed,
    CheckResult,
    Fixes,
    VerifyContext,
    check,
    check_name,
)

_RESULTS: list[CheckResult] = []


# --- plugin -------------------------------------------------------------------------------


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "fix(template): the command that fixes this check")


@functools.cache
def _context() -> VerifyContext:
    path = os.environ.get(CONTEXT_ENV)
    if not path:
        raise pytest.UsageError(f"run the suite with `make verify` ({CONTEXT_ENV} is not set)")
    return VerifyContext.load(Path(path).read_text())


@functools.cache
def _settings() -> Settings:
    return _context().settings


def _marker_fix(item: pytest.Item, ctx: VerifyContext) -> str:
    marker = item.get_closest_marker("fix")
    if marker is None:
        return ctx.fixes.deploy
    s = _settings()
    template = marker.args[0]
    text = template.format(deploy=ctx.fixes.deploy, s=s, paths=s.layout)
    return ctx.fixes.on_host(text) if marker.kwargs.get("on_host") else text


def _what(call: pytest.CallInfo[Any]) -> tuple[str, str | None]:
    exc = call.excinfo.value if call.excinfo else None
    if isinstance(exc, CheckFailed):
        return exc.what, exc.fix
    if isinstance(exc, AssertionError):
        return (str(exc).splitlines() or ["assertion failed"])[0], None
    first = (str(exc).splitlines() or [""])[0]
    return f"could not check: {type(exc).__name__}: {first}", None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" and report.passed:
        return
    if report.when == "teardown" and not report.failed:
        return
    callspec = getattr(item, "callspec", None)
    function = getattr(item, "originalname", item.name)
    group, name = check_name(str(item.path), function, callspec.params if callspec else None)
    host = _context().host
    if report.skipped:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        result = CheckResult(host, group, name, "skipped", reason.removeprefix("Skipped: "))
    elif report.failed:
        what, fix = _what(call)
        result = CheckResult(
            host, group, name, "failed", what, fix or _marker_fix(item, _context())
        )
        item.user_properties += [("what", result.what), ("fix", result.fix)]
    else:
        result = CheckResult(host, group, name, "passed")
    if any(r.check_id == result.check_id for r in _RESULTS):
        return  # a teardown error after a call result: keep the first
    _RESULTS.append(result)


def pytest_sessionfinish(session: pytest.Session) -> None:
    path = os.environ.get(RESULTS_ENV)
    if path:
        Path(path).write_text(json.dumps([asdict(r) for r in _RESULTS], indent=1))


# --- fixtures -----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def ctx() -> VerifyContext:
    return _context()


@pytest.fixture(scope="session")
def s() -> Settings:
    return _settings()


@pytest.fixture(scope="session")
def fixes(ctx: VerifyContext) -> Fixes:
    return ctx.fixes


class Host:
    """Commands on the host under test (through testinfra), Docker and psql included."""

    def __init__(self, host: Any, s: Settings) -> None:
        self.ti = host
        self.s = s
        found = host.run(DOCKER_PATH_COMMAND)
        self.docker = found.stdout.strip() or "docker"

    def run(self, command: str) -> Any:
        return self.ti.run(command)

    def out(self, command: str) -> str:
        return self.ti.check_output(command)

    def inspect(self, kind: str, name: str) -> dict[str, Any] | None:
        res = self.run(f"{self.docker} {kind} inspect {shlex.quote(name)}")
        items = json.loads(res.stdout or "[]") if res.rc == 0 else []
        return items[0] if items else None

    def psql(self, sql: str, db: str = "postgres", port: int | None = None) -> list[list[str]]:
        """Rows of a query run as the superuser inside the container (tab-separated);
        ``port``: a cluster member's Postgres port instead of the container's default.

        search_path is pinned to pg_catalog, pg_temp: nothing the application role
        creates is resolved in these superuser sessions; role and read-only mode are
        the superuser's whatever the app set on its database.
        """
        env = f"-e PGPORT={int(port)} " if port is not None else ""
        cmd = (
            f"{self.docker} exec {env}-e {shlex.quote('PGOPTIONS=' + SUPERUSER_PGOPTIONS)} "
            f"-u postgres {shlex.quote(self.s.container_name)} psql -XAtq "
            f"-v ON_ERROR_STOP=1 -F '\t' -d {shlex.quote(db)} -c {shlex.quote(sql)}"
        )
        res = self.run(cmd)
        if res.rc != 0:
            raise RuntimeError(f"psql failed: {res.stderr.strip()}")
        return [line.split("\t") for line in res.stdout.splitlines()]

    def value(self, sql: str, db: str = "postgres") -> str:
        rows = self.psql(sql, db)
        return rows[0][0] if rows else ""

    def stat(self, path: str) -> tuple[int, int, int] | None:
        """(uid, gid, mode) by number, or None when the path does not exist."""
        res = self.run(f"stat -c '%u %g %a' {shlex.quote(path)}")
        if res.rc != 0:
            return None
        uid, gid, mode = res.stdout.split()
        return int(uid), int(gid), int(mode, 8)

    def free_bytes(self, path: str) -> int:
        """Free bytes on the filesystem of ``path`` (or of its nearest existing parent)."""
        line = self.out(
            f'p={shlex.quote(path)}; while [ ! -e "$p" ]; do p=$(dirname "$p"); done; '
            'df -Pk "$p" | tail -n 1'
        )
        return int(line.split()[3]) * 1024

    def read(self, path: str) -> str | None:
        res = self.run(f"cat {shlex.quote(path)}")
        return res.stdout if res.rc == 0 else None

    def certificate(self, path: str) -> Any:
        """The PEM certificate at ``path`` (an x509.Certificate); a failed check when it
        is missing or not one."""
        from cryptography import x509

        text = self.read(path)
        check(text, f"{path} is missing")
        try:
            return x509.load_pem_x509_certificate(text.encode())
        except ValueError:
            check(False, f"{path} is not a PEM certificate")
            raise


#: How long a just (re)started service container may stay "starting": its first health
#: check is due within seconds (first check after 10 s).
STARTING_WAIT = 30


def wait_healthy(on: Host, name: str, starting_wait: float = STARTING_WAIT) -> None:
    """Fail unless container ``name`` runs and is healthy; a container still "starting"
    (just started with the stack) is given ``starting_wait`` seconds first."""
    deadline = time.monotonic() + starting_wait
    while True:
        info = on.inspect("container", name)
        check(info is not None, f"container {name} does not exist")
        state: dict[str, Any] = info["State"]  # type: ignore[index]
        health = (state.get("Health") or {}).get("Status")
        if health != "starting" or time.monotonic() > deadline:
            break
        time.sleep(1)
    check(
        state.get("Running") and health == "healthy",
        f"{name} is {state.get('Status')} (health: {health}); see docker logs {name}",
    )


@pytest.fixture(name="wait_healthy", scope="session")
def _wait_healthy() -> Callable[[Host, str], None]:
    """:func:`wait_healthy` for the checks (a fixture: the suite's modules are also loaded
    outside it, where ``conftest`` is another module)."""
    return wait_healthy


@pytest.fixture(scope="module")
def on(host: Any, s: Settings) -> Host:
    return Host(host, s)


@pytest.fixture(scope="module")
def container(on: Host, s: Settings) -> dict[str, Any]:
    """``docker inspect`` of the Postgres container; the check fails when it is missing."""
    info = on.inspect("container", s.container_name)
    if info is None:
        pytest.skip(f"container {s.container_name} does not exist (see container/running)")
    return info


@pytest.fixture(scope="module")
def pg(on: Host, s: Settings) -> Host:
    """The host, once Postgres answers inside the container; dependent checks skip otherwise."""
    res = on.run(f"{on.docker} exec -u postgres {shlex.quote(s.container_name)} pg_isready -q -t 5")
    if res.rc != 0:
        pytest.skip(f"Postgres in {s.container_name} is not answering (see container/running)")
    return on
