"""A lab of host containers: systemd, sshd and a disk of their own, each with its own IP.

``Lab(name).up(count, suite)`` builds (or reuses) the host image, creates the lab's
network, starts the hosts, authorizes the lab's SSH key for root, pre-collects each
host's SSH key into a known_hosts file and writes a pyinfra inventory. ``down()``
removes every container, disk, network and file the lab made.

State lives in ``/var/lib/pgsteady-lab/<name>/`` (root only, 0700): the SSH key pair,
known_hosts, the Postgres image tarball and each host's disk (a sparse ext4 image,
loop-mounted and bound to the host's /var/lib/docker, so that a full disk is the
host's alone and survives reboots).
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from pgsteady.lab import pgimage
from pgsteady.lab.engine import LabError, docker, exists, networks, run
from pgsteady.lab.hostimage import ensure_host_image
from pgsteady.lab.recipe import (
    IP_LABEL,
    LAB_LABEL,
    NETWORK_LABEL,
    check_count,
    check_layout,
    check_name,
    check_suite,
    for_host,
    host_data,
    host_ip,
    host_names,
    known_hosts_line,
    layout_data,
    pick_subnet,
    render_inventory,
)

STATE_ROOT = Path("/var/lib/pgsteady-lab")
#: How hosts get the Postgres image: debian, built on each host; seed, the Debian source
#: with the image built here once and shipped as its seed (postgres_image_archive);
#: archive, that tarball as the archive source (pgBackRest and the exporters off).
IMAGE_SOURCES = ("debian", "seed", "archive")
#: Capabilities a systemd host with its own dockerd needs (``--privileged`` is refused
#: on machines without CAP_SYS_RESOURCE; nested ``docker exec`` needs SYS_PTRACE).
CAPS = ("SYS_ADMIN", "NET_ADMIN", "SYS_PTRACE")
BOOT_TIMEOUT_S = 120


@dataclass(frozen=True)
class LabHost:
    """One host of a lab: its container (= host) name and its address."""

    name: str
    ip: str


@dataclass
class Lab:
    """A named lab; ``make lab`` uses the name ``pgsteady-lab``, tests a unique one."""

    name: str = "pgsteady-lab"
    state_root: Path = STATE_ROOT
    log: object = field(default=print, repr=False)

    def __post_init__(self) -> None:
        check_name(self.name)

    # --- where things are -----------------------------------------------------------
    @property
    def dir(self) -> Path:
        return self.state_root / self.name

    @property
    def key(self) -> Path:
        return self.dir / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.dir / "known_hosts"

    @property
    def network(self) -> str:
        return self.name

    def disk_image(self, host: str) -> Path:
        return self.dir / "disks" / f"{host}.ext4"

    def disk_mount(self, host: str) -> Path:
        return self.dir / "disks" / host

    def _say(self, message: str) -> None:
        self.log(f"lab {self.name}: {message}")  # type: ignore[operator]

    # --- up -----------------------------------------------------------------------
    def up(
        self,
        count: int = 3,
        suite: str = "bookworm",
        inventory: Path | None = None,
        image_source: str = "debian",
        postgres_version: int = 17,
        disk_size: str = "8G",
        extra_data: dict[str, object] | None = None,
        backup_host: bool = False,
        cluster: str | None = None,
    ) -> list[LabHost]:
        """Start ``count`` hosts (reusing running ones) and write ``inventory``.

        ``extra_data`` is added to every host's inventory data (tests shorten schedules).
        ``backup_host``: the last host forms the inventory's ``backup`` group, keeping
        the other hosts' off-host pgBackRest repository.
        ``cluster``: one Patroni/etcd cluster of that name, lab timings (etcd heartbeat 250 ms).
        """
        check_layout(count, backup_host, cluster, image_source)
        check_count(count)
        check_suite(suite)
        if image_source not in IMAGE_SOURCES:
            raise LabError(f"image_source={image_source!r}: use one of {', '.join(IMAGE_SOURCES)}")
        self._state_dir()
        self._keypair()
        image = ensure_host_image(suite, log=self._say)
        subnet = self._network()
        hosts = [
            LabHost(n, host_ip(subnet, i)) for i, n in enumerate(host_names(self.name, count), 1)
        ]
        for h in hosts:
            self._start(h, image, disk_size)
        started = time.monotonic()
        for h in hosts:
            self.wait_booted(h.name)
            self._authorize(h)
        self._collect_host_keys(hosts)
        for h in hosts:
            self.wait_ssh(h)
        self._say(f"{count} host(s) up in {time.monotonic() - started:.1f} s after start")
        settings = {
            # The inventory's CA lives and dies with the lab.
            "postgres_tls_ca_dir": str(self.dir / "ca"),
            **self._image_settings(hosts, image_source, postgres_version),
            **layout_data(hosts[-1].name if backup_host else None, cluster),
            **(extra_data or {}),
        }
        if inventory is not None:
            entries = [
                (h.name, host_data(h.ip, subnet, str(self.key), str(self.known_hosts),
                                   for_host(settings, backup_host and h is hosts[-1])))
                for h in hosts
            ]  # fmt: skip
            groups = {"backup": [hosts[-1].name]} if backup_host else {}
            inventory.write_text(render_inventory(self.name, entries, groups))
            self._say(f"wrote {inventory}")
        return hosts

    def _state_dir(self) -> None:
        for d in (self.state_root, self.dir, self.dir / "disks"):
            d.mkdir(mode=0o700, exist_ok=True)
            if d.is_symlink() or d.stat().st_uid != 0 and os.geteuid() == 0:
                raise LabError(f"{d} is not a root-owned directory")
            d.chmod(0o700)

    def _keypair(self) -> None:
        if not self.key.exists():
            run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"pgsteady {self.name}",
                 "-f", str(self.key)])  # fmt: skip
        self.key.chmod(0o600)

    def _network(self) -> str:
        if exists("network", self.network):
            return self._subnet()
        for _ in range(5):
            subnet = pick_subnet(_used_networks())
            created = docker(
                "network", "create", "--driver", "bridge", "--subnet", subnet,
                "--label", f"{LAB_LABEL}={self.name}", self.network, check=False,
            )  # fmt: skip
            if created.returncode == 0:
                self._say(f"network {self.network} {subnet}")
                return subnet
            if exists("network", self.network):  # created by a parallel `make lab`
                return self._subnet()
        raise LabError(f"could not create network {self.network}: {created.stderr.strip()}")

    def _subnet(self) -> str:
        out = docker("network", "inspect", "--format", "{{(index .IPAM.Config 0).Subnet}}",
                     self.network).stdout  # fmt: skip
        return out.strip()

    def _disk(self, host: str, size: str) -> Path:
        """A fixed-size ext4 for the host's /var/lib/docker, loop-mounted on this machine."""
        image, mount = self.disk_image(host), self.disk_mount(host)
        if not image.exists():
            run(["truncate", "-s", size, str(image)])
            image.chmod(0o600)
            run(["mkfs.ext4", "-q", "-F", "-m", "0", "-E", "nodiscard", str(image)])
        mount.mkdir(mode=0o700, exist_ok=True)
        if not os.path.ismount(mount):
            run(["mount", "-o", "loop", str(image), str(mount)])
        return mount

    def _start(self, h: LabHost, image: str, disk_size: str) -> None:
        if exists("container", h.name):
            if docker("inspect", "-f", "{{.State.Running}}", h.name).stdout.strip() != "true":
                self._disk(h.name, disk_size)
                docker("start", h.name)
            return
        disk = self._disk(h.name, disk_size)
        caps = [a for c in CAPS for a in ("--cap-add", c)]
        docker(
            "run", "-d", "--name", h.name, "--hostname", h.name,
            "--network", self.network, "--ip", h.ip,
            *caps,
            "--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
            "--cgroupns=host", "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw",
            "-v", f"{disk}:/var/lib/docker",
            "--tmpfs", "/run", "--tmpfs", "/run/lock",
            "-e", "container=docker", "--stop-timeout", "60",
            "--label", f"{LAB_LABEL}={self.name}", "--label", f"{IP_LABEL}={h.ip}",
            "--label", f"{NETWORK_LABEL}={self.network}",
            image, "/sbin/init",
        )  # fmt: skip
        self._say(f"started {h.name} ({h.ip})")

    def wait_booted(self, host: str, timeout: float = BOOT_TIMEOUT_S) -> str:
        """Wait until systemd says running (or degraded); return what it said."""
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            proc = docker("exec", host, "systemctl", "is-system-running", check=False)
            state = proc.stdout.strip()
            if state in ("running", "degraded"):
                return state
            time.sleep(0.5)
        raise LabError(f"{host} did not finish booting in {timeout:.0f} s (systemd: {state!r})")

    def _authorize(self, h: LabHost) -> None:
        public = self.key.with_suffix(".pub").read_text()
        docker("exec", "-i", h.name, "sh", "-c",
               "umask 077 && mkdir -p /root/.ssh && cat > /root/.ssh/authorized_keys",
               input=public)  # fmt: skip

    def _collect_host_keys(self, hosts: list[LabHost]) -> None:
        """known_hosts from each host's own key file (read over docker exec, not trusted on
        first use over the network)."""
        lines = []
        for h in hosts:
            deadline = time.monotonic() + 30
            while True:
                proc = docker("exec", h.name, "cat", "/etc/ssh/ssh_host_ed25519_key.pub",
                              check=False)  # fmt: skip
                if proc.returncode == 0 or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            if proc.returncode != 0:
                raise LabError(f"{h.name} has no SSH host key: {proc.stderr.strip()}")
            lines.append(known_hosts_line(h.ip, proc.stdout))
        old = os.umask(0o077)
        try:
            self.known_hosts.write_text("\n".join(lines) + "\n")
        finally:
            os.umask(old)

    def ssh_argv(self, h: LabHost, command: str) -> list[str]:
        """argv that runs ``command`` on ``h`` over SSH as root, checking its host key."""
        return [
            "ssh", "-i", str(self.key), "-o", "BatchMode=yes", "-o", "ConnectTimeout=5",
            "-o", f"UserKnownHostsFile={self.known_hosts}", "-o", "StrictHostKeyChecking=yes",
            f"root@{h.ip}", command,
        ]  # fmt: skip

    def wait_ssh(self, h: LabHost, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            proc = run(self.ssh_argv(h, "true"), check=False, timeout=30)
            if proc.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise LabError(f"ssh to {h.name} ({h.ip}) fails: {proc.stderr.strip()}")
            time.sleep(0.5)

    def _image_settings(self, hosts: list[LabHost], source: str, version: int) -> dict[str, object]:
        settings: dict[str, object] = {"postgres_version": version}
        if source == "debian":
            return {**settings, "postgres_image_source": "debian"}
        started = time.monotonic()
        tag, tarball = pgimage.save_archive(version, self.dir, log=self._say)
        for h in hosts:
            pgimage.copy_to_host(h.name, tarball, version)
        self._say(f"Postgres image archive on {len(hosts)} host(s) in "
                  f"{time.monotonic() - started:.1f} s")  # fmt: skip
        if source == "seed":
            # The Debian source, everything on (pgBackRest, exporters, restore-on-empty):
            # the deploy loads the tarball and its build finds the recipe's image.
            return {
                **settings,
                "postgres_image_source": "debian",
                "postgres_image_archive": pgimage.host_archive_path(version),
            }
        return {
            **settings,
            # pgsteady refuses WAL archiving and the exporters with an archive image (it
            # cannot prove the tarball has pgBackRest or them inside), so this faster path
            # runs without both.
            "pgbackrest_enabled": False,
            "metrics_enabled": False,
            "postgres_image_source": "archive",
            "postgres_image": tag,
            "postgres_image_archive": pgimage.host_archive_path(version),
        }

    def destroy(self, host: str) -> None:
        """Lose ``host`` for good: its container, root file system and Docker disk (the
        next ``up`` makes a new host of the same name and address, as a replacement)."""
        docker("rm", "-f", "-v", host, check=False, timeout=120)
        mount, image = self.disk_mount(host), self.disk_image(host)
        if os.path.ismount(mount):
            run(["umount", str(mount)], check=False)
        image.unlink(missing_ok=True)
        self._say(f"destroyed {host} (container and disk)")

    # --- looking at a lab -----------------------------------------------------------
    def hosts(self) -> list[LabHost]:
        """The lab's host containers (running or not), in name order."""
        out = docker("ps", "-a", "--filter", f"label={LAB_LABEL}={self.name}", "--format",
                     f'{{{{.Names}}}} {{{{.Label "{IP_LABEL}"}}}}').stdout  # fmt: skip
        found = [LabHost(*line.split()) for line in out.splitlines() if line.strip()]
        return sorted(found, key=lambda h: (len(h.name), h.name))

    # --- down -----------------------------------------------------------------------
    def down(self, inventory: Path | None = None) -> list[str]:
        """Remove the lab's hosts, disks, network, state and inventory; return leftovers."""
        for h in self.hosts():
            docker("rm", "-f", "-v", h.name, check=False, timeout=120)
            self._say(f"removed {h.name}")
        disks = self.dir / "disks"
        if disks.is_dir():
            for mount in disks.iterdir():
                if mount.is_dir() and os.path.ismount(mount):
                    run(["umount", str(mount)], check=False)
        if exists("network", self.network):
            docker("network", "rm", self.network, check=False)
        if self.dir.exists():
            run(["rm", "-rf", "--one-file-system", str(self.dir)], check=False)
        if self._owns(inventory):
            inventory.unlink()
        if self.state_root.exists() and not any(self.state_root.iterdir()):
            shutil.rmtree(self.state_root, ignore_errors=True)
        return self.leftovers(inventory)

    def _owns(self, inventory: Path | None) -> bool:
        """True when ``inventory`` exists and was written for this lab."""
        return (
            inventory is not None
            and inventory.exists()
            and f"LAB = {self.name!r}" in inventory.read_text()
        )

    def leftovers(self, inventory: Path | None = None) -> list[str]:
        """What of this lab still exists (empty after a complete ``down``)."""
        found = [f"container {h.name}" for h in self.hosts()]
        if exists("network", self.network):
            found.append(f"network {self.network}")
        if self.dir.exists():
            found.append(f"directory {self.dir}")
        if (
            inventory is not None
            and inventory.exists()
            and (f"LAB = {self.name!r}" in inventory.read_text())
        ):
            found.append(f"file {inventory}")
        mounts = Path("/proc/mounts").read_text()
        if f" {self.dir}/" in mounts:
            found.append(f"mounts below {self.dir}")
        return found


def _used_networks() -> list[str]:
    """Subnets of every Docker network and every route of this machine."""
    used: list[str] = []
    for net in networks():
        used += [c["Subnet"] for c in (net.get("IPAM") or {}).get("Config") or []
                 if c.get("Subnet")]  # fmt: skip
    routes = run(["ip", "-4", "route", "show"]).stdout
    for line in routes.splitlines():
        dest = line.split()[0]
        if dest != "default":
            try:
                used.append(str(ipaddress.ip_network(dest, strict=False)))
            except ValueError:
                continue
    return used
