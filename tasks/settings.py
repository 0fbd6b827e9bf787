"""Build the host's Settings from host.data and facts, before any operation runs."""

from __future__ import annotations

from pyinfra import host, logger
from pyinfra.api.exceptions import DeployError
from pyinfra.facts.hardware import Cpus, Memory

from pgsteady.postgres import safety
from pgsteady.settings import HostFacts, Settings, SettingsError, build_settings
from tasks.facts import HasSystemd


def current_host_facts() -> HostFacts:
    """The facts Settings depend on, read from the current host."""
    return HostFacts(
        ram_mb=int(host.get_fact(Memory) or 0),
        cpus=int(host.get_fact(Cpus) or 1),
        has_systemd=bool(host.get_fact(HasSystemd)),
    )


def load_settings() -> Settings:
    """Validated Settings for the current host, or a DeployError listing every problem.

    Valid but risky settings (statement logging that records passwords, accepted
    asynchronous commits) are logged as warnings before any operation.
    """
    try:
        settings = build_settings(host.data.dict(), current_host_facts(), host=host.name)
    except SettingsError as exc:
        raise DeployError(str(exc)) from None
    for text in safety.warnings(settings):
        logger.warning("%s: %s", host.name, text)
    return settings


def load_database_settings() -> Settings | None:
    """Settings of a database host for the one-shot runs (backup, down, restore...);
    None on a host of the ``backup`` group, which runs no Postgres."""
    if "backup" in host.groups:
        logger.info("%s: a backup host (no Postgres): nothing to do here", host.name)
        return None
    return load_settings()
