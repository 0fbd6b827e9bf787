"""The host facts Settings depend on, read with any ``run(command) -> stdout`` callable.

The deploy reads them with pyinfra facts (``tasks/settings.py``); verify and other tools
that are not inside a pyinfra run read them here, with the very same commands and the
same arithmetic, so both build identical Settings for a host. A unit test keeps the
parsing equal to pyinfra's own facts' ``process()``.
"""

from __future__ import annotations

from collections.abc import Callable

from pgsteady.settings import HostFacts

#: pyinfra.facts.hardware.Memory
MEMORY_COMMAND = "LANG=C vmstat -s"
#: pyinfra.facts.hardware.Cpus
CPUS_COMMAND = "getconf NPROCESSORS_ONLN 2> /dev/null || getconf _NPROCESSORS_ONLN"
#: tasks.facts.HasSystemd
SYSTEMD_COMMAND = "test -d /run/systemd/system && echo yes || echo no"
#: The Docker client that verify and its lookups run on the host: the package's
#: /usr/bin/docker before any other on PATH.
DOCKER_PATH_COMMAND = "test -x /usr/bin/docker && echo /usr/bin/docker || command -v docker"

_BSD_PAGE_KEYS = (
    "pages active",
    "pages inactive",
    "pages wired down",
    "pages free",
    "pages in the laundry queue",
)


def parse_memory_mb(output: str) -> int | None:
    """Total RAM in MB from ``vmstat -s`` (Linux ``K total memory``; BSD pages)."""
    data: dict[str, float] = {}
    for line in output.splitlines():
        line = line.strip()
        if " " not in line:
            continue
        value, key = line.split(" ", 1)
        try:
            data[key.strip()] = float(value)
        except ValueError:
            continue
    total_kb = data.get("K total memory", data.get("total memory"))
    if not total_kb:
        page_size = data.get("bytes per page")
        pages = data.get("pages managed") or sum(data.get(k, 0) for k in _BSD_PAGE_KEYS)
        if page_size and pages:
            total_kb = pages * page_size / 1024
    return int(round(total_kb / 1024)) if total_kb else None


def parse_cpus(output: str) -> int | None:
    """Online CPUs from ``getconf``'s first line."""
    lines = output.splitlines()
    try:
        return int(lines[0]) if lines else None
    except ValueError:
        return None


def parse_has_systemd(output: str) -> bool:
    lines = output.splitlines()
    return bool(lines) and lines[0].strip() == "yes"


def read_host_facts(run: Callable[[str], str]) -> HostFacts:
    """HostFacts of the host ``run`` executes on, exactly as tasks/settings.py builds them
    (a missing value falls back the same way: 0 MB, 1 CPU)."""
    return HostFacts(
        ram_mb=parse_memory_mb(run(MEMORY_COMMAND)) or 0,
        cpus=parse_cpus(run(CPUS_COMMAND)) or 1,
        has_systemd=parse_has_systemd(run(SYSTEMD_COMMAND)),
    )
