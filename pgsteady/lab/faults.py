"""Faults a lab host can suffer, for tests and by hand (``python -m pgsteady.lab FAULT HOST``).

Each function takes the host's container name; the lab's labels on the container give
its network and address, so a healed host gets its own address back.
"""

from __future__ import annotations

import shlex
import time

from pgsteady.lab.engine import LabError, docker
from pgsteady.lab.recipe import IP_LABEL, NETWORK_LABEL

#: The file :func:`fill_disk` allocates on the host's /var/lib/docker filesystem.
FILL_FILE = "/var/lib/docker/pgsteady-lab-fill"


def _label(host: str, label: str) -> str:
    out = docker("inspect", "--format", f'{{{{ index .Config.Labels "{label}" }}}}', host).stdout
    value = out.strip()
    if not value or value == "<no value>":
        raise LabError(f"{host} is not a lab host (no {label} label)")
    return value


def reboot(host: str, timeout: int = 60) -> float:
    """A clean reboot: systemd shuts down on the stop signal, then boots again.

    Returns the monotonic time at which the reboot command was issued.
    """
    _label(host, IP_LABEL)
    issued = time.monotonic()
    docker("restart", "-t", str(timeout), host, timeout=timeout + 60)
    return issued


def power_off(host: str) -> float:
    """Pull the plug: SIGKILL to every process of the host, no shutdown."""
    _label(host, IP_LABEL)
    issued = time.monotonic()
    docker("kill", host)
    return issued


def power_on(host: str) -> None:
    """Boot a powered-off host (its disk and files are as the power loss left them)."""
    _label(host, IP_LABEL)
    docker("start", host)


def power_cycle(host: str) -> float:
    """Power loss followed at once by power on; returns when the plug was pulled."""
    issued = power_off(host)
    power_on(host)
    return issued


def isolate(host: str) -> None:
    """Cut the host off the lab network (from the other hosts and from this machine)."""
    docker("network", "disconnect", _label(host, NETWORK_LABEL), host)


def heal(host: str) -> None:
    """Reconnect an isolated host with its own address."""
    network, ip = _label(host, NETWORK_LABEL), _label(host, IP_LABEL)
    attached = docker("inspect", "--format", "{{json .NetworkSettings.Networks}}", host).stdout
    if f'"{network}"' in attached:
        return
    docker("network", "connect", "--ip", ip, network, host)


def fill_disk(host: str, leave_bytes: int = 0) -> int:
    """Fill the host's /var/lib/docker filesystem (its own disk) to about ``leave_bytes`` free.

    Allocates a file with fallocate (leaving a margin for the file's own metadata), then,
    when ``leave_bytes`` is 0, appends zeros until the write fails with ENOSPC. Returns
    the file's size. The disk is the host's alone (a fixed-size filesystem of the lab),
    so this machine's disk is not touched.
    """
    _label(host, IP_LABEL)
    leave = int(leave_bytes)
    script = (
        f'f={shlex.quote(FILL_FILE)}; rm -f "$f"; : > "$f"; '
        "free=$(df -B1 --output=avail /var/lib/docker | tail -n 1 | tr -d ' '); "
        f"size=$((free - {leave} - 67108864)); "
        '[ "$size" -le 0 ] || fallocate -l "$size" "$f" || exit 1; '
        f'[ {leave} -gt 0 ] || dd if=/dev/zero bs=1M oflag=append conv=notrunc of="$f" '
        "2>/dev/null; "
        'sync; stat -c %s "$f"'
    )
    out = docker("exec", host, "sh", "-c", script).stdout.strip()
    return int(out.splitlines()[-1])


def free_disk(host: str) -> None:
    """Undo :func:`fill_disk`."""
    docker("exec", host, "rm", "-f", FILL_FILE)


def stop_docker(host: str, attempts: int = 5) -> None:
    """Stop the host's dockerd, and its socket first so that nothing starts it on demand.

    A start request arriving during the stop (a job calling ``docker``) cancels the stop
    job, so it is retried until systemd reports the service inactive.
    """
    state = ""
    for _ in range(attempts):
        docker("exec", host, "systemctl", "stop", "docker.socket", check=False)
        docker("exec", host, "systemctl", "stop", "docker.service", check=False)
        state = docker("exec", host, "systemctl", "is-active", "docker.service",
                       check=False).stdout.strip()  # fmt: skip
        if state in ("inactive", "failed"):
            return
        time.sleep(1)
    raise LabError(f"{host}: docker.service is still {state!r} after {attempts} stops")


def start_docker(host: str) -> None:
    """Start the host's dockerd again; on failure the error shows its journal."""
    docker("exec", host, "systemctl", "reset-failed", "docker.service", check=False)
    proc = docker("exec", host, "systemctl", "start", "docker.socket", "docker.service",
                  check=False)  # fmt: skip
    if proc.returncode != 0:
        journal = docker("exec", host, "journalctl", "-u", "docker.service", "-n", "30",
                         "--no-pager", "-o", "cat", check=False).stdout  # fmt: skip
        raise LabError(f"{host}: docker.service did not start:\n{journal}")


FAULTS = {
    "reboot": reboot,
    "power-off": power_off,
    "power-on": power_on,
    "power-cycle": power_cycle,
    "isolate": isolate,
    "heal": heal,
    "fill-disk": fill_disk,
    "free-disk": free_disk,
    "stop-docker": stop_docker,
    "start-docker": start_docker,
}
