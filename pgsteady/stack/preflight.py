"""Preflight checks as a pure function of Settings and what the host reports."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pgsteady.settings import Settings
from pgsteady.stack import upgrade
from pgsteady.units import parse_size

SUPPORTED_DISTROS = {"Debian": 11, "Ubuntu": 20}
#: The label compose.py puts on every container of a stack (its compose project).
PROJECT_LABEL = "io.pgsteady.project"


@dataclass(frozen=True)
class PreflightInput:
    distro: str
    distro_major: int | None
    free_disk_bytes: int
    port_owner: str | None
    container: dict[str, Any] | None
    volumes: upgrade.VolumeState = upgrade.VolumeState(None, False, None)


def _gb(n: int) -> str:
    return f"{n / 1024**3:.1f} GB"


def port_is_ours(s: Settings, container: dict[str, Any] | None, owner: str | None = None) -> bool:
    """True when our own container publishes postgres_port; on a cluster member, when the
    owner is the running HAProxy of this stack (``container``: its inspect)."""
    if not container:
        return False
    if s.postgres_cluster_name is not None:
        labels = (container.get("Config") or {}).get("Labels") or {}
        running = bool((container.get("State") or {}).get("Running"))
        return running and owner == "haproxy" and labels.get(PROJECT_LABEL) == s.compose_project
    bindings = (container.get("HostConfig") or {}).get("PortBindings") or {}
    return any(
        str(b.get("HostPort")) == str(s.postgres_port)
        for binds in bindings.values()
        for b in binds or []
    )


def check(s: Settings, facts: PreflightInput) -> list[str]:
    """Every failed check, each with what is wrong and how to fix it."""
    failures = []
    oldest = SUPPORTED_DISTROS.get(facts.distro)
    if oldest is None:
        failures.append(
            f"unsupported OS {facts.distro!r}: pgsteady supports Debian 11+ and Ubuntu 20.04+"
        )
    elif facts.distro_major is not None and facts.distro_major < oldest:
        failures.append(
            f"{facts.distro} {facts.distro_major} is too old: upgrade to {facts.distro} {oldest}+"
        )
    min_ram = parse_size(s.preflight_min_ram)
    ram = s.host_ram_mb * 1024 * 1024
    if ram < min_ram:
        failures.append(
            f"RAM {_gb(ram)} is below preflight_min_ram={s.preflight_min_ram}: "
            "use a larger host or lower preflight_min_ram"
        )
    min_disk = parse_size(s.preflight_min_disk)
    if facts.free_disk_bytes < min_disk:
        failures.append(
            f"free disk for app_dir={s.app_dir} is {_gb(facts.free_disk_bytes)}, below "
            f"preflight_min_disk={s.preflight_min_disk}: free space or move app_dir"
        )
    if facts.port_owner and not port_is_ours(s, facts.container, facts.port_owner):
        failures.append(
            f"port {s.postgres_port} is in use by {facts.port_owner!r}: stop it or set "
            "postgres_port to a free port"
        )
    failures.extend(upgrade.refusals(s, facts.volumes))
    return failures
