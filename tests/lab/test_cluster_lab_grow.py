"""Adding a host to a RUNNING cluster (issue 15 item 3), on a lab of its own: 4 member
hosts and a backup host keeping the cluster's pgBackRest repository. The first deploy's
inventory lists 3 members (and the backup host); then, under a writer committing through
HAProxy every 100 ms, the 4th host is added to the inventory and ONE `make deploy` runs.
Afterwards: the new member streams, cloned by pgBackRest (Patroni's log says so), the
existing members' Postgres was never restarted (same postmaster start time) and the
leader never changed, no acknowledged row is lost, etcd still has exactly the first three
members and the new host runs none, every old member's HAProxy knows the new address and
reloaded it in the same container, the leader's pg_hba and the backup host's pgBackRest
configuration name it; `make verify` passes on all 4, `make status JSON=1` names 4
members and a second deploy changes nothing. The write gap, the deploy's duration and the
load are recorded.

Opt-in (its own make target, ``make lab-cluster-grow``): a 5-host lab of its own.
"""

from __future__ import annotations

import os
import secrets
import shlex
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pgsteady.cluster import etcd_service as svc
from pgsteady.cluster import member_service as ms
from pgsteady.lab.cluster_backend import LabCluster, from_inventory
from pgsteady.lab.failover import longest_gap, lost
from pgsteady.lab.hosts import Lab
from pgsteady.lab.recipe import for_host, layout_data
from pgsteady.lab.writers import SCHEMA, WRITES, Writer, connect, execute
from pgsteady.settings import Settings
from pgsteady.stack.layout import CONFIG_MOUNT
from tests.lab.conftest import LabTarget, _prerequisites, record
from tests.lab.test_cluster_lab_remove_member import LAB_ENVIRONMENT, _etcd_members

DATA = {
    "compose_project": "labgr",
    "backup_schedule": "@daily",
    "pgbackrest_archive_timeout": "10s",
}
pytestmark = [
    pytest.mark.timeout(5400),
    pytest.mark.skipif(
        os.environ.get("PGSTEADY_LAB_GROW") != "1",
        reason="opt-in (a 5-host lab of its own): make lab-cluster-grow",
    ),
]


@dataclass
class GrowLab:
    members: list[LabTarget]  # the 4 member hosts; the 4th joins later
    backup: LabTarget
    inventory: Path
    full: str  # the inventory with all 4 members

    def cluster(self) -> LabCluster:
        """The lab cluster as the inventory lists it now."""
        return from_inventory(self.inventory)


def _without_line(text: str, name: str) -> str:
    """The inventory text without ``name``'s entry (render_inventory writes one a line)."""
    lines = [line for line in text.splitlines(keepends=True) if f"({name!r}," not in line]
    assert len(lines) == len(text.splitlines(keepends=True)) - 1, text
    return "".join(lines)


@pytest.fixture(scope="module")
def lab() -> Iterator[GrowLab]:
    reason = _prerequisites()
    if reason:
        pytest.fail(f"lab prerequisites missing: {reason}")
    lab = Lab(f"pgsgr{secrets.token_hex(3)}")
    inventory = lab.dir / "inventory.py"
    full = ""
    try:
        hosts = lab.up(5, "bookworm", inventory=inventory, extra_data=DATA, backup_host=True,
                       cluster="lab")  # fmt: skip
        data = {**DATA, **layout_data(hosts[-1].name, "lab")}
        member = Settings(**data)
        backup = Settings(**for_host(data, backup_host=True))
        full = inventory.read_text()
        inventory.write_text(_without_line(full, hosts[3].name))
        yield GrowLab(
            [LabTarget(lab, h, inventory, member) for h in hosts[:-1]],
            LabTarget(lab, hosts[-1], inventory, backup),
            inventory,
            full,
        )
    finally:
        if full:  # lab-down reads every host from the inventory
            inventory.write_text(full)
        lab.down(inventory)


def _in_container(t: LabTarget, container: str, script: str, timeout: float = 60) -> str:
    user = ["-u", "postgres"] if container == t.settings.container_name else []
    argv = ["docker", "exec", *user, container, "sh", "-c", script]
    out = t.ssh(shlex.join(argv), timeout=timeout)
    assert out.returncode == 0, out.stderr
    return out.stdout


def _psql(t: LabTarget, sql: str, db: str = "postgres") -> str:
    script = f"psql -XAtq -d {shlex.quote(db)} -c {shlex.quote(sql)}"
    return _in_container(t, t.settings.container_name, script).strip()


def _started(t: LabTarget, container: str) -> str:
    out = t.ssh(f"docker inspect -f '{{{{.State.StartedAt}}}}' {shlex.quote(container)}")
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def _gap_at(times: list[float], first: float) -> float:
    """When the longest stretch without an ack (after ``first``) ended."""
    ordered = sorted(times)
    pairs = list(zip(ordered, ordered[1:], strict=False))
    return max(pairs, key=lambda p: p[1] - p[0])[1] if pairs else first


def _loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def test_first_deploy_makes_three_members(lab: GrowLab) -> None:
    started = time.monotonic()
    result = lab.members[0].make("deploy", timeout=3600)
    assert result.returncode == 0, result.output[-8000:]
    record(f"cluster lab GR: first deploy of 3 members + backup host, load {_loadavg()}",
           time.monotonic() - started)  # fmt: skip
    cluster = lab.cluster()
    try:
        cluster.wait_whole(600)
        assert len(cluster.status().members) == 3
    finally:
        cluster.close()


def test_adding_a_fourth_host_under_writes(lab: GrowLab) -> None:
    old, new = lab.members[:3], lab.members[3]
    cluster = lab.cluster()
    try:
        cluster.wait_whole(300)
        leader = cluster.leader()
        timeline = cluster.status().member(leader).timeline  # type: ignore[union-attr]
        dsn = cluster.proxy_dsn()  # HAProxy on a member that is not the leader
    finally:
        cluster.close()
    postmasters = {t.host.name: _psql(t, "SELECT pg_postmaster_start_time()") for t in old}
    proxies = {t.host.name: _started(t, ms.haproxy_container(t.settings)) for t in old}
    conn = connect(dsn, 10)
    try:
        execute(conn, f"{SCHEMA}; TRUNCATE public.{WRITES}", (), 30)
    finally:
        conn.close()
    since = new.ssh("date -u +%Y-%m-%dT%H:%M:%S").stdout.strip()
    writer = Writer(dsn)
    writer.start()
    start = time.monotonic()
    try:
        time.sleep(3)
        lab.inventory.write_text(lab.full)  # the 4th host joins the inventory
        deployed = lab.members[0].make("deploy", timeout=3600)
        assert deployed.returncode == 0, deployed.output[-8000:]
        deploy_s = time.monotonic() - start - 3
        cluster = lab.cluster()
        try:
            cluster.wait_whole(600)  # 4 members: one leader, 3 streaming, etcd 3/3
            whole_s = time.monotonic() - start - 3
            status = cluster.status()
        finally:
            cluster.close()
        time.sleep(3)
    finally:
        end = time.monotonic()
        writer.stop()
    times = [a.at for a in writer.acks]
    first = min(times, default=start)  # the writer's own connect is no gap of the deploy
    gap = longest_gap(times, first, end)
    at = _gap_at(times, first) - start
    load = _loadavg()
    print(f"grow to 4: deploy {deploy_s:.1f} s, whole at {whole_s:.1f} s, longest write gap "
          f"{gap:.2f} s ending {at:.1f} s after the writer started (the deploy at 3 s), load "
          f"{load}, {len(writer.acks)} acks, {len(writer.unknown)} unknown, "
          f"errors {writer.errors[:3]}")  # fmt: skip
    record(f"cluster lab: add a 4th member, longest write gap, load {load}", gap)
    record(f"cluster lab: add a 4th member, deploy, load {load}", deploy_s)
    record(f"cluster lab: add a 4th member, until streaming, load {load}", whole_s)
    assert writer.acks, writer.errors[:5]
    assert sorted(m.name for m in status.members) == sorted(t.host.name for t in lab.members)
    assert status.leader == leader, (leader, status.leader)  # the leader never changed
    joined = status.member(new.host.name)
    assert joined is not None and joined.timeline == timeline, joined
    lead = next(t for t in old if t.host.name == leader)
    rows = _psql(lead, f"SELECT n FROM public.{WRITES}", lead.settings.postgres_db)
    assert not lost((a.n for a in writer.acks), {int(x) for x in rows.split()})
    assert len({a.instance for a in writer.acks}) == 1, {a.instance for a in writer.acks}
    assert gap < 5, f"write gap {gap:.2f} s while adding a member"
    for t in old:  # Postgres never restarted, HAProxy reloaded in its own container
        name = t.host.name
        assert _psql(t, "SELECT pg_postmaster_start_time()") == postmasters[name], name
        container = ms.haproxy_container(t.settings)
        assert _started(t, container) == proxies[name], f"{name}: HAProxy was recreated"
        cfg = _in_container(t, container, f"cat {CONFIG_MOUNT}/{ms.HAPROXY_CFG}")
        assert new.host.ip in cfg, name
    hba = _psql(lead, f"SELECT count(*) FROM pg_hba_file_rules WHERE address = '{new.host.ip}'")
    assert int(hba) >= 1, hba
    conf = lab.backup.ssh(f"cat {lab.backup.settings.layout.config}/pgbackrest.conf")
    assert conf.returncode == 0 and new.host.ip in conf.stdout, conf.stdout
    logs = new.ssh(f"docker logs --since {since} {new.settings.container_name} 2>&1")
    assert "replica has been created using pgbackrest" in logs.stdout, logs.stdout[-4000:]
    assert _etcd_members(old[0]) == {t.host.name for t in old}
    etcd = new.ssh(f"docker ps -aq --filter name=^{svc.container_name(new.settings)}$")
    assert etcd.returncode == 0 and not etcd.stdout.strip(), "the new member runs etcd"


def test_verify_status_and_a_second_deploy_changes_nothing(lab: GrowLab) -> None:
    result = lab.members[0].make("verify", timeout=1800)
    fails = [line for line in result.output.splitlines() if line.startswith("FAIL ")]
    checks = {line.split("] ", 1)[1].split(":", 1)[0] for line in fails}
    assert checks <= LAB_ENVIRONMENT, "\n".join(fails)
    assert "checks:" in result.output, result.output[-4000:]
    for t in lab.members:
        assert f"verify {t.host.name} " in result.output, t.host.name  # verify ran on all 4
    status = lab.members[0].make("status", "JSON=1", timeout=300)
    assert status.returncode == 0, status.output[-3000:]
    for t in lab.members:
        assert f'"{t.host.name}"' in status.output, t.host.name
    again = lab.members[0].make("deploy", timeout=1800)
    assert again.returncode == 0, again.output[-8000:]
    assert again.changed == 0, again.output[-8000:]
    record(f"cluster lab GR: second deploy of 4 members, load {_loadavg()}", again.seconds)


def test_an_inventory_that_would_move_etcd_is_refused_before_any_change(lab: GrowLab) -> None:
    """The new host listed first would make it an etcd member in place of host 3."""
    new = lab.members[3].host.name
    entry = next(line for line in lab.full.splitlines(keepends=True) if f"({new!r}," in line)
    text = _without_line(lab.full, new)
    first = lab.members[0].host.name
    at = text.index(f"    ({first!r},")
    env = f"{lab.members[0].settings.layout.state}/{svc.INITIAL_ENV}"
    before = lab.members[0].ssh(f"cat {env}; docker ps -q --no-trunc | sort").stdout
    try:
        lab.inventory.write_text(text[:at] + entry + text[at:])
        refused = lab.members[0].make("deploy", timeout=900)
    finally:
        lab.inventory.write_text(lab.full)
    assert refused.returncode != 0, refused.output[-4000:]
    assert "would change etcd's membership" in refused.output, refused.output[-4000:]
    assert f"({lab.members[2].host.name}, {new})" in refused.output, refused.output[-4000:]
    assert "Accepted:" in refused.output and "3 to 6 members" in refused.output
    assert lab.members[0].ssh(f"cat {env}; docker ps -q --no-trunc | sort").stdout == before
    cluster = lab.cluster()
    try:
        cluster.wait_whole(300)
        assert len(cluster.status().members) == 4
    finally:
        cluster.close()
