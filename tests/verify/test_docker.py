"""docker: the engine runs, the deploy's compose CLI works, container logs are rotated."""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING, Any

from pgsteady.settings import Settings
from pgsteady.verify import Fixes, check

if TYPE_CHECKING:
    from conftest import Host


def _ctl_env(on: Host, s: Settings) -> dict[str, str]:
    text = on.read(s.layout.ctl_env) or ""
    pairs = (line.split("=", 1) for line in text.splitlines() if "=" in line)
    return {k.strip(): " ".join(shlex.split(v)) for k, v in pairs if not k.startswith("#")}


def test_engine_running(on: Host, s: Settings, fixes: Fixes) -> None:
    res = on.run(f"{on.docker} info --format '{{{{.ServerVersion}}}}'")
    start = "systemctl start docker" if s.host_has_systemd else "service docker start"
    check(
        res.rc == 0 and res.stdout.strip(),
        f"the Docker engine does not answer: {res.stderr.strip()[:120]}",
        fixes.on_host(start),
    )


def test_compose_available(on: Host, s: Settings) -> None:
    """The compose CLI the deploy detected (app_dir/etc/ctl.env) runs and owns the container."""
    compose = _ctl_env(on, s).get("PGSTEADY_COMPOSE")
    check(compose, f"no PGSTEADY_COMPOSE in {s.layout.ctl_env}")
    res = on.run(f"{compose} version")
    check(res.rc == 0, f"`{compose} version` fails: {res.stderr.strip()[:120]}")
    container = on.inspect("container", s.container_name)
    if container is None:
        return  # container/running reports it
    ids = on.run(
        f"{compose} -p {s.compose_project} -f {s.layout.compose} ps -q postgres"
    ).stdout.split()
    check(
        container["Id"] in ids,
        f"compose project {s.compose_project} does not manage {s.container_name}",
    )


def test_log_rotation(container: dict[str, Any], s: Settings) -> None:
    log = container["HostConfig"]["LogConfig"]
    want = {"max-size": s.docker_log_max_size, "max-file": str(s.docker_log_max_file)}
    got = {k: (log.get("Config") or {}).get(k) for k in want}
    check(
        log.get("Type") == "json-file" and got == want,
        f"container logs: driver {log.get('Type')} {got}; settings say json-file {want}",
    )
