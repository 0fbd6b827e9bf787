"""Fixtures for lab tests: one lab host under systemd, reached over SSH, removed afterwards.

Each test run has its own lab name (``pgslab<hex>``): its own containers, network, disk,
key and inventory, so it never touches a lab started with ``make lab``.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pgsteady.lab.cluster_backend import LabCluster, from_inventory
from pgsteady.lab.engine import docker
from pgsteady.lab.hosts import Lab, LabHost
from pgsteady.settings import Settings
from tests.support.stack import DeployResult, parse_grand_total

REPO = Path(__file__).resolve().parents[2]
#: Measured figures of this run (reboot recovery, converge times), one JSON per line.
MEASUREMENTS = Path(os.environ.get("PGSTEADY_LAB_RESULTS", "/tmp/pgsteady-lab/measurements.jsonl"))
FULL = os.environ.get("PGSTEADY_CHAOS") == "full"
#: make test ships the Postgres image built here as the Debian source's seed (about two
#: minutes of debootstrap on each host fewer); make lab-chaos builds it on the hosts, as
#: the converge times it writes to the docs say. Both deploy postgres_image_source debian.
IMAGE_SOURCE = "debian" if FULL else "seed"
PROJECT = "labtest"


def record(measure: str, seconds: float) -> None:
    """Append one measured figure (read by the docs' host-reboot section)."""
    MEASUREMENTS.parent.mkdir(parents=True, exist_ok=True)
    with MEASUREMENTS.open("a") as f:
        f.write(json.dumps({"measure": measure, "seconds": round(seconds, 2)}) + "\n")


@dataclass
class LabTarget:
    """A lab with one deployed host: the inventory, the host and the product's paths."""

    lab: Lab
    host: LabHost
    inventory: Path
    settings: Settings

    def make(self, target: str, *args: str, timeout: float = 900) -> DeployResult:
        """``make TARGET INVENTORY=<the lab's inventory>``, as an operator runs it."""
        started = time.monotonic()
        proc = subprocess.run(
            ["make", "-s", target, f"INVENTORY={self.inventory}", *args],
            cwd=REPO, capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip
        output = proc.stdout + proc.stderr
        result = DeployResult(proc.returncode, output, seconds=time.monotonic() - started)
        if proc.returncode == 0 and "Grand total" in output:
            result.success, result.errors, result.no_change = parse_grand_total(output)
        return result

    def ssh(self, command: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run ``command`` on the host over SSH (the lab key, strict host keys)."""
        return subprocess.run(
            self.lab.ssh_argv(self.host, command),
            capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip

    def sql(self, query: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """Run SQL in the app database with the product's own ``pgsteady-ctl psql``."""
        ctl = f"{self.settings.layout.bin}/pgsteady-ctl"
        return docker(
            "exec", self.host.name, ctl, "psql", "-X", "-A", "-t", "-q",
            "-v", "ON_ERROR_STOP=1", "-d", self.settings.postgres_db, "-c", query,
            check=False, timeout=timeout,
        )  # fmt: skip

    def wait_for_query(self, query: str, since: float, timeout: float = 180) -> float:
        """Seconds from ``since`` (monotonic) to the first successful ``query``."""
        deadline = time.monotonic() + timeout
        while True:
            proc = self.sql(query, timeout=10)
            if proc.returncode == 0:
                return time.monotonic() - since
            if time.monotonic() > deadline:
                raise AssertionError(f"no successful query in {timeout} s: {proc.stderr}")
            time.sleep(0.25)


def _prerequisites() -> str | None:
    if os.geteuid() != 0:
        return "the lab needs root (debootstrap, loop mounts)"
    for tool in ("debootstrap", "mkfs.ext4", "ssh", "ssh-keygen"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if docker("info", check=False).returncode != 0:
        return "no Docker engine"
    return None


#: Every lab test's inventory: a database host and a backup host (the ``backup`` group)
#: keeping its off-host pgBackRest repository; the pg_dump backup runs every minute.
LAB_DATA = {
    "compose_project": PROJECT,
    "backup_schedule": "* * * * *",
    "postgres_restore_on_empty": True,  # a replacement host restores (host-loss drill)
    "pgbackrest_archive_timeout": "10s",
}


@pytest.fixture(scope="module")
def lab_target() -> Iterator[LabTarget]:
    """A database host and its backup host, with their inventory; removed afterwards."""
    reason = _prerequisites()
    if reason:
        pytest.fail(f"lab prerequisites missing: {reason}")
    lab = Lab(f"pgslab{secrets.token_hex(3)}")
    inventory = lab.dir / "inventory.py"
    try:
        started = time.monotonic()
        host, _backup = lab.up(2, "bookworm", inventory=inventory, extra_data=LAB_DATA,
                               backup_host=True, image_source=IMAGE_SOURCE)  # fmt: skip
        record("lab up, 2 hosts (image cached)", time.monotonic() - started)
        yield LabTarget(lab, host, inventory, Settings(**LAB_DATA))
    finally:
        lab.down(inventory)


@contextmanager
def cluster_lab(prefix: str, data: dict[str, Any], count: int = 3) -> Iterator[list[LabTarget]]:
    """``count`` hosts forming cluster "lab" (the data `make lab N=<count> CLUSTER=1`
    writes, with ``data``), each a LabTarget; the lab is removed afterwards."""
    from pgsteady.lab.recipe import cluster_data

    reason = _prerequisites()
    if reason:
        pytest.fail(f"lab prerequisites missing: {reason}")
    lab = Lab(f"{prefix}{secrets.token_hex(3)}")
    inventory = lab.dir / "inventory.py"
    try:
        hosts = lab.up(count, "bookworm", inventory=inventory, extra_data=data, cluster="lab")
        settings = Settings(**{**data, **cluster_data("lab")})
        yield [LabTarget(lab, h, inventory, settings) for h in hosts]
    finally:
        lab.down(inventory)


@contextmanager
def deployed_cluster(
    prefix: str, data: dict[str, Any], what: str
) -> Iterator[tuple[list[LabTarget], LabCluster]]:
    """A cluster lab of its own (:func:`cluster_lab`) after one `make deploy` (its time
    recorded as "cluster lab with ``what``"; the test fails when it fails), whole."""
    with cluster_lab(prefix, data) as targets:
        started = time.monotonic()
        result = targets[0].make("deploy", timeout=3600)
        seconds = time.monotonic() - started
        if result.returncode != 0:
            pytest.fail(f"the {what} lab's first deploy failed:\n{result.output[-8000:]}")
        record(f"cluster lab with {what}: first deploy of 3 hosts", seconds)
        print(f"first deploy {seconds:.0f} s, load {Path('/proc/loadavg').read_text().strip()}")
        cluster = from_inventory(targets[0].inventory)
        try:
            cluster.wait_whole(300)
            yield targets, cluster
        finally:
            cluster.close()


#: make verify's checks that fail in the lab for the lab's own reasons (its clock).
LAB_ENVIRONMENT = {"host/time_synchronised"}


def verify_group_then_no_change(targets: list[LabTarget], group: str) -> None:
    """`make verify` passes on every member (LAB_ENVIRONMENT aside) with ``group``'s
    checks run on each, none skipped; then a second deploy changes nothing."""
    verify = targets[0].make("verify", timeout=1800)
    fails = [line for line in verify.output.splitlines() if line.startswith("FAIL ")]
    checks = {line.split("] ", 1)[1].split(":", 1)[0] for line in fails}
    assert checks <= LAB_ENVIRONMENT, "\n".join(fails)
    assert "checks:" in verify.output, verify.output[-4000:]
    for t in targets:
        assert f"verify {t.host.name} " in verify.output, t.host.name
        assert f"SKIP [{t.host.name}] {group}/" not in verify.output, verify.output[-4000:]
    rows = re.findall(rf"\b{group}\s*│\s*([1-9]\d*)\s*│\s*0\s*│\s*0\b", verify.output)
    assert len(rows) == len(targets), verify.output[-4000:]  # a row per member: all passed
    result = targets[0].make("deploy", timeout=3600)
    assert result.returncode == 0, result.output[-8000:]
    assert (result.changed, result.errors) == (0, 0), result.changed_operations()
    assert result.no_change > 0


#: The shared cluster lab's inventory data (added to what `make lab N=3 CLUSTER=1` writes).
CLUSTER_DATA = {"compose_project": "labm", "backup_schedule": "@daily"}


@dataclass
class ClusterLab:
    """The session's deployed 3-host cluster lab: the hosts as LabTargets (host 1 seeded
    the cluster), the first deploy's result and the failover backend over it."""

    targets: list[LabTarget]
    first_deploy: DeployResult
    cluster: LabCluster
    _verify: DeployResult | None = None

    def wait_whole(self, timeout: float = 300) -> None:
        """Until 3 healthy etcd members, one running leader and two replicas streaming
        from it on its timeline (raises TimeoutError naming what is missing)."""
        self.cluster.wait_whole(timeout)

    def leader(self) -> LabTarget:
        """The host whose member holds the leader key now."""
        name = self.cluster.leader()
        return next(t for t in self.targets if t.host.name == name)

    def verify(self) -> DeployResult:
        """``make verify`` of the lab, run once per session (its output is shared)."""
        if self._verify is None:
            self._verify = self.targets[0].make("verify", timeout=1800)
        return self._verify


@pytest.fixture(scope="session")
def deployed_cluster_lab() -> Iterator[ClusterLab]:
    """ONE deployed 3-host cluster lab for the whole session, shared by every tests/lab
    module that needs a cluster (bootstrap, etcd, chaos, backups, rolling restarts):
    `make lab N=3 CLUSTER=1` data plus CLUSTER_DATA, then one `make deploy` (its result
    in ``first_deploy``; the fixture fails when it does).

    Contract for the tests that use it: leave it WHOLE before returning, pass or fail
    (``try/finally: deployed_cluster_lab.wait_whole()``): 3 hosts powered on and on the
    network, 3 healthy etcd members, one running leader (any host: failover tests move
    it) and two replicas streaming from it on its timeline, every container unpaused, the
    inventory unchanged (a test that changes settings deploys the original back). Ask
    :meth:`ClusterLab.leader` for the leader instead of assuming host 1. Removed at the
    end of the session.
    """
    with cluster_lab("pgsclu", CLUSTER_DATA) as targets:
        started = time.monotonic()
        result = targets[0].make("deploy", timeout=3600)
        seconds = time.monotonic() - started
        if result.returncode != 0:
            pytest.fail(f"the cluster lab's first deploy failed:\n{result.output[-8000:]}")
        record("cluster lab: first deploy of 3 hosts (Patroni, etcd, images built)", seconds)
        cluster = from_inventory(targets[0].inventory)
        try:
            yield ClusterLab(targets, result, cluster)
        finally:
            cluster.close()  # the probe's ssh forwards
