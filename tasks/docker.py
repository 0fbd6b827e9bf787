"""Docker engine and compose: installed, running, and which compose CLI the host has."""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.facts.deb import DebPackages
from pyinfra.operations import apt, server, systemd

from pgsteady.settings import Settings
from tasks.facts import ComposeCommand, DockerServerVersion

PACKAGES = {
    "debian": ["docker.io", "docker-compose"],
    # Docker's own packages; the operator configures Docker's apt repository first.
    "docker-ce": ["docker-ce", "docker-ce-cli", "containerd.io", "docker-compose-plugin"],
}


def compose_command(s: Settings) -> str:
    """The compose CLI to use: what the host has, else what we are about to install."""
    found = host.get_fact(ComposeCommand)
    if found:
        return found
    return "docker-compose" if s.docker_packages == "debian" else "docker compose"


@deploy("Install and start Docker")
def install(s: Settings) -> None:
    packages = [*PACKAGES[s.docker_packages], "python3", "procps", "iproute2"]
    installed = host.get_fact(DebPackages) or {}
    apt.packages(
        name="Install Docker engine and compose",
        packages=packages,
        # Refresh the package lists only when something is missing: a converged host
        # must not report a change just because its apt cache aged.
        update=any(p not in installed for p in packages),
    )
    if s.host_has_systemd:
        systemd.service(
            name="Start and enable Docker", service="docker", running=True, enabled=True
        )
    elif not host.get_fact(DockerServerVersion):
        # No systemd (containers, WSL, minimal VMs): the init script first; where it cannot
        # work (seen: its `ulimit` is refused inside a container), the daemon itself.
        server.shell(
            name="Start Docker (no systemd)",
            commands=[
                "service docker start >/dev/null 2>&1 || true; i=0; "
                "until docker info >/dev/null 2>&1; do i=$((i+1)); "
                'if [ "$i" -eq 10 ]; then echo "init script did not start dockerd; '
                'starting it directly" >&2; setsid -f dockerd >>/var/log/pgsteady-dockerd.log '
                "2>&1 </dev/null; fi; "
                '[ "$i" -lt 90 ] || { echo "dockerd did not start: see '
                '/var/log/pgsteady-dockerd.log" >&2; exit 1; }; sleep 1; done'
            ],
        )
