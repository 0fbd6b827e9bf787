"""A deployed 3-host lab cluster as a *cluster under test* for failover trials
(:class:`pgsteady.lab.failover_trial.ClusterUnderTest`, issue 15).

Each lab host runs its own dockerd with the member's Postgres container (Patroni inside),
etcd and HAProxy (``make lab N=3 CLUSTER=1`` + ``make deploy``). The trial's writers run
on this machine and dial the hosts' addresses on the lab network: the proxy is HAProxy's
``postgres_port`` on a host other than the leader (so it survives the fault), as the
application role with TLS verified against the inventory's CA; the split-brain probe
dials each member's own port.

The faults (the victim is the leader; :data:`pgsteady.lab.failover.KINDS` and
:data:`~pgsteady.lab.failover.LAB_KINDS` name them):

- ``postmaster_kill``: ``kill -9`` of the postmaster inside its container;
- ``container_kill``: ``docker kill`` of the Postgres container on its host; repaired by
  ``docker start`` (the compose restart policy ignores a container that was killed);
- ``primary_pause``: ``docker pause`` of the Postgres container, unpaused once writes
  resumed on a new leader;
- ``host_power_loss``: the host container killed (:func:`pgsteady.lab.faults.power_off`),
  booted again by the repair;
- ``host_isolated``: the host off the lab network (:func:`pgsteady.lab.faults.isolate`),
  healed by the repair; the host is out of this machine's reach too, so the probe cannot
  write to it while it is cut off;
- ``etcd_member_lost`` / ``etcd_quorum_lost``: ``docker kill`` of the etcd container on
  the leader's host / on it and one more host, started again by the repair.
"""

from __future__ import annotations

import ast
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pgsteady.cluster import etcd_health
from pgsteady.cluster import etcd_service as svc
from pgsteady.cluster.status import ClusterStatus, fetch_cluster
from pgsteady.cluster.topology import etcd_count
from pgsteady.lab import faults
from pgsteady.lab.engine import LabError, docker
from pgsteady.lab.hosts import LabHost
from pgsteady.lab.member_tunnels import MemberTunnels
from pgsteady.lab.rest_client import client_pair
from pgsteady.settings import Settings

#: The CA file of a lab's inventory (``postgres_tls_ca_dir`` is ``<lab dir>/ca``).
CA_FILE = "ca.crt"
#: Patroni timings (ttl / loop_wait / retry_timeout) of the design's profiles (§6), as
#: inventory data; ``default`` is Settings' own.
TIMINGS: dict[str, dict[str, int]] = {
    "default": {"patroni_ttl": 24, "patroni_loop_wait": 4, "patroni_retry_timeout": 10},
    "tight": {"patroni_ttl": 20, "patroni_loop_wait": 2, "patroni_retry_timeout": 9},
}


def _host(name: str, *argv: str, timeout: float = 60, check: bool = True) -> str:
    """``argv`` run in lab host ``name``; its stdout."""
    proc = docker("exec", name, *argv, check=False, timeout=timeout)
    if check and proc.returncode != 0:
        raise LabError(f"{name}: {' '.join(argv[:4])} failed: {proc.stderr.strip()[-500:]}")
    return proc.stdout


def _quote(value: str) -> str:
    """``value`` as a libpq connection-string value (quoted, backslash-escaped)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


@dataclass
class LabCluster:
    """Faults, repairs and waits on a deployed lab cluster (hosts named as the members)."""

    hosts: list[LabHost]
    settings: Settings
    ca_dir: Path
    tunnels: MemberTunnels | None = None  # the probe's way to each member's own port
    down: list[str] = field(default_factory=list)  # etcd containers killed
    cut: list[str] = field(default_factory=list)  # hosts powered off or isolated
    paused: list[str] = field(default_factory=list)
    #: What the last trial's repair saw besides the writers (merged into its record).
    observed: dict[str, Any] = field(default_factory=dict)
    _fault_at: float = 0.0
    _password: str = field(default="", repr=False)
    _last_leader: str = ""

    # --- ClusterUnderTest ---------------------------------------------------------------

    def members(self) -> list[str]:
        return [h.name for h in self.hosts]

    def status(self) -> ClusterStatus:
        """``GET /cluster`` from the first reachable member, hosts cut off asked last."""
        order = sorted(self.hosts, key=lambda h: h.name in self.cut or h.name in self.paused)
        urls = [f"https://{h.ip}:{self.settings.patroni_rest_port}" for h in order]
        return fetch_cluster(urls, str(self.ca_dir / CA_FILE), client_pair(self.ca_dir))

    def leader(self) -> str:
        """The one running primary ('' when none, or when the members cannot be read);
        a failing read is retried for 10 s."""
        deadline = time.monotonic() + 10
        while True:
            cs = self.status()
            name = cs.leader or ""
            if name or time.monotonic() > deadline:
                if name:
                    self._last_leader = name
                return name
            time.sleep(0.5)

    def timeline(self) -> int:
        cs = self.status()
        member = cs.member(cs.leader or "")
        if member is None or member.timeline is None:
            raise RuntimeError(f"no leader timeline: {cs.error or cs.to_dict()}")
        return member.timeline

    def proxy_dsn(self) -> str:
        """HAProxy's read-write port on the first host that is not the leader."""
        leader = self._last_leader or self.leader()
        host = next(h for h in self.hosts if h.name != leader)
        return self._dsn(host.ip, self.settings.postgres_port)

    def member_dsn(self, name: str) -> str:
        """Member ``name``'s own port through its SSH forward (:mod:`member_tunnels`), the
        certificate verified against the member's address."""
        ip = self._ip(name)
        if self.tunnels is None:
            return self._dsn(ip, self.settings.postgres_member_port)
        return self._dsn(ip, self.tunnels.port(ip)) + " hostaddr=127.0.0.1"

    def hold_seconds(self, kind: str) -> float:
        s = self.settings
        if kind == "etcd_quorum_lost":  # long enough for the leader to give up its role
            return float(s.patroni_ttl + s.patroni_retry_timeout)
        return float(2 * s.patroni_loop_wait + 2)

    def inject(self, kind: str, victim: str) -> float:
        pg = self.settings.container_name
        # Where etcd's raft leader is when the fault strikes: a new etcd leader renews
        # every lease to its full TTL, the Patroni leader key's too (docs/reliability.md).
        etcd_leader = self.etcd_leader()
        if kind == "postmaster_kill":
            script = 'head -n 1 "$(psql -XAtqc "SHOW data_directory")/postmaster.pid"'
            pid = _host(victim, "docker", "exec", "-u", "postgres", pg, "sh", "-c", script).strip()
            at = time.monotonic()
            _host(victim, "docker", "exec", pg, "kill", "-9", pid)
        elif kind == "container_kill":
            at = time.monotonic()
            _host(victim, "docker", "kill", pg)
        elif kind == "primary_pause":
            at = time.monotonic()
            _host(victim, "docker", "pause", pg)
            self.paused.append(victim)
        elif kind == "host_power_loss":
            at = faults.power_off(victim)
            self.cut.append(victim)
        elif kind == "host_isolated":
            at = time.monotonic()
            faults.isolate(victim)
            self.cut.append(victim)
        elif kind in ("etcd_member_lost", "etcd_quorum_lost"):
            names = [victim] + [h.name for h in self.hosts if h.name != victim]
            at = time.monotonic()
            for name in names[: 1 if kind == "etcd_member_lost" else 2]:
                _host(name, "docker", "kill", svc.container_name(self.settings))
                self.down.append(name)
        else:
            raise ValueError(f"the lab cannot stage fault kind {kind!r}")
        self.observed, self._fault_at = {"etcd_leader_at_fault": etcd_leader}, at
        return at

    def repair(self, kind: str, victim: str) -> None:
        """Undo every fault still in place (whatever ``kind`` was)."""
        for name in self.paused:
            _host(name, "docker", "unpause", self.settings.container_name, check=False)
        self.paused = []
        for name in self.cut:
            if kind == "host_isolated":
                self.observed.update(self._read_only_after(name))
                faults.heal(name)
            else:
                faults.power_on(name)
        self.cut = []
        for name in self.down:
            _host(name, "docker", "start", svc.container_name(self.settings))
        self.down = []
        if kind == "container_kill":
            _host(victim, "docker", "start", self.settings.container_name)
        if self.tunnels is not None:  # its forward may hang on a session the fault cut
            self.tunnels.restart(self._ip(victim))

    def close(self) -> None:
        """End the probe's SSH forwards."""
        if self.tunnels is not None:
            self.tunnels.close()

    def wait_whole(self, timeout: float) -> None:
        """Until etcd is healthy on every host, one leader runs and every other member
        streams from it on its timeline (in synchronous mode one of them in sync)."""
        deadline = time.monotonic() + timeout
        problem = ""
        while time.monotonic() < deadline:
            problem = self.etcd_problem() or self.members_problem()
            if not problem:
                return
            time.sleep(1)
        raise TimeoutError(f"the lab cluster is not whole within {timeout:.0f} s: {problem}")

    # --- checks ---------------------------------------------------------------------------

    def etcd_problem(self) -> str:
        """What keeps etcd from being whole ('' when every member is healthy)."""
        argv = ["docker", "exec", svc.container_name(self.settings),
                *svc.local_ctl(self.settings.etcd_client_port), *etcd_health.HEALTH]  # fmt: skip
        errors = []
        for host in self.hosts:
            try:
                health = etcd_health.healthy_endpoints(_host(host.name, *argv, timeout=30))
            except (LabError, ValueError) as exc:
                errors.append(f"etcd health from {host.name}: {exc}")
                continue
            # the etcd members: the first 3 hosts (5 from 7 up), not every host
            voters = etcd_count(len(self.hosts))
            return "; ".join(etcd_health.health_problems(health, voters))
        return "; ".join(errors)

    def etcd_leader(self) -> str:
        """The host whose etcd member is the raft leader ('' when no answer names one)."""
        argv = ["docker", "exec", svc.container_name(self.settings),
                *svc.local_ctl(self.settings.etcd_client_port), *etcd_health.STATUS]  # fmt: skip
        for host in self.hosts:
            try:
                proc = docker("exec", host.name, *argv, check=False, timeout=30)
                endpoint = etcd_health.leader_endpoint(proc.stdout or "[]")
            except (subprocess.TimeoutExpired, ValueError):
                continue  # a diagnostic: the next host may answer
            ip = urlsplit(endpoint).hostname if endpoint else None
            name = next((h.name for h in self.hosts if h.ip == ip), "")
            if name:
                return name
        return ""

    def members_problem(self) -> str:
        """What keeps the Patroni members from being whole ('' when they are)."""
        cs = self.status()
        if cs.error:
            return cs.error
        if len(cs.members) != len(self.hosts) or cs.leader is None:
            return f"members {[(m.name, m.role, m.state) for m in cs.members]}"
        lead = cs.member(cs.leader)
        assert lead is not None
        if lead.state != "running":
            return f"leader {lead.name} is {lead.state}"
        behind = [
            f"{m.name} {m.role}/{m.state}/tl {m.timeline}"
            for m in cs.members
            if not m.is_primary and (m.state != "streaming" or m.timeline != lead.timeline)
        ]
        if behind:
            return "not streaming: " + ", ".join(behind)
        if self.settings.postgres_synchronous_mode and not any(m.sync for m in cs.members):
            return "no synchronous standby"
        self._last_leader = lead.name
        return ""

    def _read_only_after(self, name: str, timeout: float = 90) -> dict[str, Any]:
        """While ``name`` is still cut off (once writes resumed on the new leader): by when,
        after the fault, its Postgres took no more writes (``pg_is_in_recovery()`` or no
        answer; an upper bound when it already took none at the first look), read inside
        its container (docker exec needs no network). Writable when the new leader already serves is
        two primaries at once; the probe cannot see it, as this machine cannot reach
        the isolated host."""
        sql = "SELECT pg_is_in_recovery()"
        argv = ["docker", "exec", "-u", "postgres", self.settings.container_name,
                "psql", "-XAtq", "-c", sql]  # fmt: skip
        first = None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            answer = _host(name, *argv, timeout=20, check=False).strip()
            first = answer if first is None else first
            if answer != "f":
                return {
                    "old_leader_read_only_by_seconds": round(time.monotonic() - self._fault_at, 3),
                    "old_leader_writable_at_repair": first == "f",
                }
            time.sleep(0.5)
        return {"old_leader_read_only_by_seconds": None, "old_leader_writable_at_repair": True}

    # --- helpers --------------------------------------------------------------------------

    def _ip(self, name: str) -> str:
        return next(h.ip for h in self.hosts if h.name == name)

    def _dsn(self, ip: str, port: int) -> str:
        s = self.settings
        if not self._password:  # the app role's secret, read once from a host's 0600 file
            self._password = _host(self.hosts[0].name, "cat", f"{s.layout.secrets}/app_password")
            self._password = self._password.strip()
        return (
            f"host={ip} port={port} dbname={s.postgres_db} user={s.postgres_user} "
            f"password={_quote(self._password)} sslmode=verify-full "
            f"sslrootcert={self.ca_dir / CA_FILE} connect_timeout=2 application_name=failover"
        )


def read_inventory(path: Path) -> tuple[str, list[tuple[str, dict[str, Any]]]]:
    """The lab name and the ``hosts`` entries of an inventory `make lab` wrote (read as
    literals, never executed)."""
    values: dict[str, Any] = {}
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
            if isinstance(target, ast.Name) and target.id in ("LAB", "hosts"):
                values[target.id] = ast.literal_eval(node.value)
    if "LAB" not in values or not values.get("hosts"):
        raise LabError(f"{path} is not an inventory written by `make lab`")
    return values["LAB"], values["hosts"]


def from_inventory(path: Path) -> LabCluster:
    """The deployed lab cluster of inventory ``path`` (`make lab N=3 CLUSTER=1`)."""
    _, entries = read_inventory(path)
    data = entries[0][1]
    settings = Settings(**{k: v for k, v in data.items() if k in Settings.model_fields})
    if not settings.postgres_cluster_name:
        raise LabError(f"{path}: its hosts form no cluster (postgres_cluster_name unset)")
    hosts = [LabHost(name, d["ssh_hostname"]) for name, d in entries]
    tunnels = MemberTunnels(
        str(data["ssh_key"]), str(data["ssh_known_hosts_file"]), settings.postgres_member_port
    )
    return LabCluster(hosts, settings, Path(data["postgres_tls_ca_dir"]), tunnels)
