"""What a lab host is: its image recipe, its network address and its inventory entry.

Pure functions (no Docker, no files): the lab's modules compute names, hashes, apt
sources, subnets and the inventory text here, and tests check them without a host.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Iterable, Sequence
from typing import Any

#: Debian suites a lab host can run (``make lab OS=...``).
SUITES = ("bookworm", "trixie")
#: Packages of a freshly installed minimal server: systemd, sshd, python3 and sudo.
#: No Docker: the deploy installs it, as on a fresh server.
PACKAGES = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "openssh-server",
    "iproute2",
    "procps",
    "python3",
    "sudo",
    "ca-certificates",
)
HOST_IMAGE_REPOSITORY = "pgsteady/lab-host"
#: Labels on everything the lab creates: the lab's name, and the recipe of host images.
LAB_LABEL = "io.pgsteady.lab"
RECIPE_LABEL = "io.pgsteady.lab-recipe"
IP_LABEL = "io.pgsteady.lab.ip"
NETWORK_LABEL = "io.pgsteady.lab.network"
#: Bumped when the way the image is shaped changes without the inputs below changing.
RECIPE_VERSION = "pgsteady-lab-host/1"
#: Where the lab looks for a free /24 (away from Docker's default 172.17-31 pools).
SUBNET_POOL = ipaddress.ip_network("10.77.0.0/16")
#: Address of the first host inside the lab's /24.
FIRST_HOST_OFFSET = 10
MAX_HOSTS = 50

_NAME = re.compile(r"^[a-z][a-z0-9-]{0,30}[a-z0-9]$")

#: Files written into the host image: sshd accepts keys only, and every host makes
#: its own host keys at first boot (the image ships none).
SSHD_CONFIG = """\
# pgsteady lab host: key logins only.
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
"""
SSH_HOSTKEYS_DROPIN = """\
[Service]
# The image ships no host keys: each host makes its own on first boot.
ExecStartPre=
ExecStartPre=/usr/bin/ssh-keygen -A
ExecStartPre=/usr/sbin/sshd -t
"""
IMAGE_FILES: dict[str, str] = {
    "/etc/ssh/sshd_config.d/pgsteady-lab.conf": SSHD_CONFIG,
    "/etc/systemd/system/ssh.service.d/pgsteady-lab-hostkeys.conf": SSH_HOSTKEYS_DROPIN,
}


def check_name(name: str) -> str:
    """Return ``name`` if it can name a lab (docker names, host names), else raise."""
    if not _NAME.match(name):
        raise ValueError(
            f"lab name {name!r}: use 2-32 lower-case letters, digits and '-', "
            "starting with a letter"
        )
    return name


def check_suite(suite: str) -> str:
    """Return ``suite`` if a lab host can run it, else raise ValueError."""
    if suite not in SUITES:
        raise ValueError(f"OS={suite!r} is not a lab suite; accepted: {', '.join(SUITES)}")
    return suite


def check_count(count: int) -> int:
    """Return ``count`` if it is a valid number of lab hosts, else raise ValueError."""
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_HOSTS:
        raise ValueError(f"N={count!r}: the lab runs 1 to {MAX_HOSTS} hosts")
    return count


def check_layout(count: int, backup_host: bool, cluster: str | None, image_source: str) -> None:
    """Refuse a lab layout that cannot work: a backup host without a database host, or a
    cluster (issue 15) with fewer than 3 members or a non-debian image."""
    if backup_host and count < 2:
        raise ValueError("a backup host needs at least 2 hosts (one database host)")
    members = count - 1 if backup_host else count
    if cluster is not None and (members < 3 or image_source != "debian"):
        raise ValueError(
            "a cluster lab needs at least 3 members (4 hosts with a backup host) and image "
            "source debian (the cluster image is built on each host)"
        )


def rewrite_sources(text: str, from_suite: str, to_suite: str) -> str:
    """Apt sources of this machine for a host running ``to_suite``.

    Suite names are replaced as whole words, with their -updates/-security/-backports
    forms; comments and URIs are left as they are.
    """
    if from_suite == to_suite:
        return text
    pattern = re.compile(rf"(?<![\w.-]){re.escape(from_suite)}(?=$|[\s/-])", re.MULTILINE)
    lines = []
    for line in text.splitlines(keepends=True):
        if line.lstrip().startswith("#"):
            lines.append(line)
        else:
            lines.append(pattern.sub(to_suite, line))
    return "".join(lines)


def recipe_hash(suite: str, sources: Sequence[tuple[str, str]]) -> str:
    """sha256 hex of everything that shapes a host image (suite, packages, files, sources)."""
    digest = hashlib.sha256(RECIPE_VERSION.encode() + b"\0")
    parts: list[str] = [suite, *PACKAGES]
    for path, content in sorted(IMAGE_FILES.items()):
        parts += [path, content]
    for name, content in sources:
        parts += [name, content]
    for part in parts:
        data = part.encode()
        digest.update(len(data).to_bytes(8, "big"))
        digest.update(data)
    return digest.hexdigest()


def host_image_tag(suite: str, digest: str) -> str:
    """``pgsteady/lab-host:<suite>-<hash12>``."""
    return f"{HOST_IMAGE_REPOSITORY}:{suite}-{digest[:12]}"


def pick_subnet(used: Iterable[str]) -> str:
    """The first /24 of :data:`SUBNET_POOL` overlapping none of ``used`` (CIDR strings)."""
    taken = [ipaddress.ip_network(u, strict=False) for u in used]
    for candidate in SUBNET_POOL.subnets(new_prefix=24):
        if not any(candidate.overlaps(t) for t in taken if t.version == 4):
            return str(candidate)
    raise RuntimeError(f"no free /24 left in {SUBNET_POOL} for a lab network")


def host_ip(subnet: str, index: int) -> str:
    """Address of host ``index`` (1-based) in the lab's ``subnet``."""
    net = ipaddress.ip_network(subnet)
    return str(net.network_address + FIRST_HOST_OFFSET + index - 1)


def host_names(lab: str, count: int) -> list[str]:
    """Container and host names: ``<lab>-1`` ... ``<lab>-N``."""
    return [f"{lab}-{i}" for i in range(1, check_count(count) + 1)]


def known_hosts_line(ip: str, public_key: str) -> str:
    """A known_hosts line for ``ip`` from an ``ssh_host_*_key.pub`` file's text."""
    fields = public_key.split()
    if len(fields) < 2 or not fields[0].startswith("ssh-"):
        raise ValueError(f"not an OpenSSH public key: {public_key[:40]!r}")
    return f"{ip} {fields[0]} {fields[1]}"


def host_data(
    ip: str,
    subnet: str,
    key: str,
    known_hosts: str,
    image: dict[str, str],
) -> dict[str, Any]:
    """Inventory data for one lab host: SSH as root with the lab key, strict host keys.

    Postgres listens on the host's lab address and admits the lab's subnet, as a real
    server on a private network would; ``image`` holds the postgres_image_* settings.
    """
    return {
        "ssh_hostname": ip,
        "ssh_user": "root",
        "ssh_key": key,
        "ssh_known_hosts_file": known_hosts,
        "ssh_strict_host_key_checking": "yes",
        "postgres_bind": ip,
        "postgres_allowed_networks": [subnet],
        "postgres_memory_limit": "1GB",
        "postgres_cpus": 1,
        **image,
    }


def render_inventory(
    lab: str,
    hosts: Sequence[tuple[str, dict[str, Any]]],
    groups: dict[str, list[str]] | None = None,
) -> str:
    """The text of a pyinfra inventory file for the lab's hosts; ``groups`` (e.g.
    ``backup``) take some of them out of the ``hosts`` group into their own."""
    groups = groups or {}
    grouped = {name for names in groups.values() for name in names}
    for group in groups:
        if not group.isidentifier() or group == "hosts":
            raise ValueError(f"inventory group {group!r}: use a Python identifier, not 'hosts'")
    lines = [
        f'"""The lab {lab!r}: written by `make lab`, removed by `make lab-down` (do not edit).',
        "",
        "Each host is a container with systemd, sshd and its own address; pyinfra, verify",
        'and status reach them over SSH with the lab\'s key."""',
        "",
        f"LAB = {lab!r}",
        "hosts = [",
    ]
    for name, data in hosts:
        if name not in grouped:
            lines.append(f"    ({name!r}, {data!r}),")
    lines.append("]")
    for group, names in sorted(groups.items()):
        lines.append(f"{group} = [")
        for name, data in hosts:
            if name in names:
                lines.append(f"    ({name!r}, {data!r}),")
        lines.append("]")
    lines.append("")
    return "\n".join(lines)


def backup_group_data(backup_host: str, cluster: bool = False) -> dict[str, Any]:
    """Data of every lab host when the last one is a backup host: each database host keeps
    a local repository and one on the backup host; a cluster's members only the one on
    the backup host (every member archives into it)."""
    local = [] if cluster else [{"kind": "posix"}]
    return {"pgbackrest_repos": [*local, {"kind": "host", "host": backup_host}]}


def layout_data(backup_host: str | None, cluster: str | None) -> dict[str, Any]:
    """Data of every lab host for the layout (a backup host: the last host's name)."""
    data = backup_group_data(backup_host, cluster is not None) if backup_host else {}
    if cluster:
        data.update(cluster_data(cluster))
        if backup_host:
            data["pgbackrest_enabled"] = True  # the cluster archives into the backup host
    return data


def for_host(data: dict[str, Any], backup_host: bool) -> dict[str, Any]:
    """A host's share of ``data``: the backup host is no member of the cluster."""
    if not backup_host:
        return data
    return {k: v for k, v in data.items() if k != "postgres_cluster_name"}


def cluster_data(name: str) -> dict[str, Any]:
    """Data of every lab host of a cluster lab: one cluster, the lab's timing profile
    (etcd's 100 ms heartbeat starves on 2 shared cores and triggers false elections)."""
    return {
        "postgres_cluster_name": name,
        "etcd_heartbeat_interval_ms": 250,
        "etcd_election_timeout_ms": 2500,
        # pgBackRest only with a backup host (layout_data); the pooler and the exporters
        # only where a lab module turns them on (shorter deploys)
        "pgbackrest_enabled": False,
        "pgbouncer_enabled": False,
        "metrics_enabled": False,
    }
