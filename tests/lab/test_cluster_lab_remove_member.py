"""Growing to five members and removing two (issue 15's N=4+, issue 16 item 5), on a lab
of its own (`make lab N=5 CLUSTER=1`): one deploy bootstraps a leader and four streaming
replicas with etcd on the first three hosts only. Then, each under a writer committing
through HAProxy every 100 ms, host 5 loses power and leaves with `make remove-member
HOST= GONE=1` (the dead-host path), and host 4 leaves the live way (a switchover first if
it leads, `make remove-member HOST=`); each time the host is deleted from the inventory
and `make deploy` runs. Afterwards the member is gone from Patroni's cluster, its slot
from the leader, its address from every remaining member's HAProxy, Patroni file and
pg_hba; etcd still has exactly the inventory's three members; a live host's containers
are stopped and will not restart; verify passes on the remaining members and a second
deploy changes nothing. The longest write gaps and the load are recorded.

Opt-in (its own make target, ``make lab-cluster-remove``): a 5-host lab of its own.
"""

from __future__ import annotations

import json
import os
import shlex
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pgsteady.cluster import etcd_health
from pgsteady.cluster import etcd_service as svc
from pgsteady.cluster import member_service as ms
from pgsteady.lab import faults
from pgsteady.lab.cluster_backend import LabCluster, from_inventory, read_inventory
from pgsteady.lab.failover import longest_gap, lost
from pgsteady.lab.recipe import render_inventory
from pgsteady.lab.rest_client import ACCESS_DIR, client_pair
from pgsteady.lab.writers import SCHEMA, WRITES, Writer, connect, execute
from pgsteady.stack.layout import CONFIG_MOUNT
from tests.lab.conftest import LabTarget, cluster_lab, record

DATA = {"compose_project": "labrm", "backup_schedule": "@daily"}
#: What a lab host cannot pass whatever pgsteady does: it runs no NTP client.
LAB_ENVIRONMENT = {"host/time_synchronised"}
pytestmark = [
    pytest.mark.timeout(5400),
    pytest.mark.skipif(
        os.environ.get("PGSTEADY_LAB_REMOVE") != "1",
        reason="opt-in (a 5-host lab of its own): make lab-cluster-remove",
    ),
]


@dataclass
class RemoveLab:
    targets: list[LabTarget]
    inventory: Path

    def cluster(self) -> LabCluster:
        """The lab cluster as the inventory lists it now."""
        return from_inventory(self.inventory)


@pytest.fixture(scope="module")
def lab() -> Iterator[RemoveLab]:
    with cluster_lab("pgsrm", DATA, count=5) as targets:
        yield RemoveLab(targets, targets[0].inventory)


def access(t: LabTarget) -> None:
    """The REST gates' files `make switchover`/`make remove-member` read by default: the
    lab's client pair (which the lab backend issues too), the CA and the REST password."""
    ca_dir = t.lab.dir / "ca"  # the lab's postgres_tls_ca_dir
    client_pair(ca_dir)
    gate = ca_dir / ACCESS_DIR
    (gate / "ca.crt").write_bytes((ca_dir / "ca.crt").read_bytes())
    if not (gate / "rest-password").exists():
        fd = os.open(gate / "rest-password", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write((ca_dir / "clusters" / "lab" / "patroni_rest_password").read_bytes())


def _in_container(t: LabTarget, container: str, script: str, timeout: float = 60) -> str:
    argv = ["docker", "exec", "-u", "postgres", container, "sh", "-c", script]
    if container != t.settings.container_name:
        argv = ["docker", "exec", container, "sh", "-c", script]
    out = t.ssh(shlex.join(argv), timeout=timeout)
    assert out.returncode == 0, out.stderr
    return out.stdout


def _psql(t: LabTarget, sql: str, db: str = "postgres") -> str:
    script = f"psql -XAtq -d {shlex.quote(db)} -c {shlex.quote(sql)}"
    return _in_container(t, t.settings.container_name, script)


def _etcd_members(t: LabTarget) -> set[str]:
    argv = ["docker", "exec", svc.container_name(t.settings),
            *svc.local_ctl(t.settings.etcd_client_port), *etcd_health.MEMBER_LIST]  # fmt: skip
    out = t.ssh(shlex.join(argv))
    assert out.returncode == 0, out.stderr
    return set(etcd_health.members(out.stdout))


def test_five_hosts_bootstrap_three_etcd_members_and_four_replicas(lab: RemoveLab) -> None:
    started = time.monotonic()
    result = lab.targets[0].make("deploy", timeout=3600)
    assert result.returncode == 0, result.output[-8000:]
    load = Path("/proc/loadavg").read_text().split()[0]
    record(f"cluster lab RM: first deploy of 5 members, load {load}", time.monotonic() - started)
    cluster = lab.cluster()
    try:
        cluster.wait_whole(600)  # one leader, 4 streaming, etcd 3/3 healthy
        assert len(cluster.status().members) == 5
    finally:
        cluster.close()
    names = [t.host.name for t in lab.targets]
    assert _etcd_members(lab.targets[0]) == set(names[:3])
    for t in lab.targets[3:]:
        etcd = t.ssh(f"docker ps -q --filter name=^{svc.container_name(t.settings)}$")
        assert etcd.returncode == 0 and not etcd.stdout.strip(), f"{t.host.name} runs etcd"


def _without(inventory: Path, name: str) -> None:
    lab_name, entries = read_inventory(inventory)
    inventory.write_text(render_inventory(lab_name, [(n, d) for n, d in entries if n != name]))


def _sync_standby(cluster: LabCluster) -> str:
    return next(m.name for m in cluster.status().members if m.sync)


def _remove(lab: RemoveLab, victim: LabTarget, gone: bool) -> None:
    """``victim`` leaves under a writer (powered off first and GONE=1 when ``gone``);
    then everything the module docstring lists is checked."""
    name, ip = victim.host.name, victim.host.ip
    cluster = lab.cluster()
    try:
        cluster.wait_whole(300)
        access(lab.targets[0])
        if cluster.leader() == name:  # never removed while it leads: switch over first
            out = lab.targets[0].make("switchover", f"TO={_sync_standby(cluster)}", timeout=600)
            assert out.returncode == 0, out.output[-4000:]
            cluster.wait_whole(300)
        before = cluster.status().member(name)
        role = f"{before.role}{' (sync)' if before.sync else ''}" if before else "?"
        refused = lab.targets[0].make("remove-member", f"HOST={lab.targets[0].host.name}")
        assert refused.returncode != 0 and "etcd" in refused.output, refused.output[-2000:]
        dsn = cluster.proxy_dsn()  # HAProxy on a host that stays (host 1 or 2)
        conn = connect(dsn, 10)
        try:
            execute(conn, f"{SCHEMA}; TRUNCATE public.{WRITES}", (), 30)
        finally:
            conn.close()
        writer = Writer(dsn)
        writer.start()
        start = time.monotonic()
        try:
            time.sleep(3)
            args = [f"HOST={name}"]
            if gone:
                faults.power_off(name)  # pulled plug: no shutdown, its key expires
                args.append("GONE=1")
            removed = lab.targets[0].make("remove-member", *args, timeout=900)
            assert removed.returncode == 0, removed.output[-4000:]
            print(removed.output.strip()[-1000:])
            left_at = time.monotonic() - start
            _without(lab.inventory, name)
            deployed = lab.targets[0].make("deploy", timeout=3600)
            assert deployed.returncode == 0, deployed.output[-8000:]
            time.sleep(3)
        finally:
            end = time.monotonic()
            writer.stop()
    finally:
        cluster.close()
    gap = longest_gap([a.at for a in writer.acks], start, end)
    load = Path("/proc/loadavg").read_text().split()[0]
    kind = "dead (GONE=1)" if gone else "live"
    print(f"remove {name}, {kind} {role}: left the cluster at {left_at:.1f} s, deploy done at "
          f"{end - start:.1f} s, longest write gap {gap:.2f} s, load {load}, "
          f"{len(writer.acks)} acks, {len(writer.unknown)} unknown")  # fmt: skip
    what = f"cluster lab: remove a {kind} {role}"
    record(f"{what}, longest write gap, load {load}", gap)
    record(f"{what}, remove-member, load {load}", left_at)
    record(f"{what}, remove-member + deploy, load {load}", end - start)
    assert writer.acks, writer.errors[:5]
    remaining = [t for t in lab.targets[: lab.targets.index(victim)]]
    cluster = lab.cluster()
    try:
        cluster.wait_whole(300)
        assert sorted(m.name for m in cluster.status().members) == sorted(
            t.host.name for t in remaining
        )
        leader = next(t for t in remaining if t.host.name == cluster.leader())
    finally:
        cluster.close()
    rows = _psql(leader, f"SELECT n FROM public.{WRITES}", leader.settings.postgres_db)
    present = {int(x) for x in rows.split()}
    assert not lost((a.n for a in writer.acks), present)  # synchronous mode: nothing lost
    assert _etcd_members(remaining[0]) == {t.host.name for t in remaining[:3]}
    slots = _psql(leader, "SELECT slot_name || ':' || active FROM pg_replication_slots").split()
    assert not [s for s in slots if s.startswith(name.replace("-", "_") + ":")], slots
    assert not [s for s in slots if s.endswith(":f")], slots  # no inactive slot
    rules = _psql(leader, f"SELECT count(*) FROM pg_hba_file_rules WHERE address = '{ip}'")
    assert rules.strip() == "0", rules
    cfg = f"{CONFIG_MOUNT}/{ms.HAPROXY_CFG}"
    for t in remaining:
        assert ip not in _in_container(t, ms.haproxy_container(t.settings), f"cat {cfg}")
        running = _in_container(
            t, t.settings.container_name, f"cat {ms.PATRONI_DIR}/10-pgsteady.yml"
        )
        assert ip not in running, t.host.name
    if gone:
        return
    project = victim.settings.compose_project
    ps = victim.ssh(
        f"docker ps -a --filter label=com.docker.compose.project={project} "
        "--format '{{.Names}} {{.State}}' ; docker inspect -f '{{.HostConfig.RestartPolicy.Name}}' "
        f"$(docker ps -aq --filter label=com.docker.compose.project={project})"
    )
    assert ps.returncode == 0, ps.stderr
    assert "running" not in ps.stdout and "always" not in ps.stdout, ps.stdout
    assert "unless-stopped" not in ps.stdout, ps.stdout


def test_removing_a_dead_member(lab: RemoveLab) -> None:
    _remove(lab, lab.targets[4], gone=True)


def test_removing_a_live_member(lab: RemoveLab) -> None:
    _remove(lab, lab.targets[3], gone=False)


def test_verify_passes_and_a_second_deploy_changes_nothing(lab: RemoveLab) -> None:
    result = lab.targets[0].make("verify", timeout=1800)
    fails = [line for line in result.output.splitlines() if line.startswith("FAIL ")]
    checks = {line.split("] ", 1)[1].split(":", 1)[0] for line in fails}
    assert checks <= LAB_ENVIRONMENT, "\n".join(fails)
    assert "checks:" in result.output, result.output[-4000:]
    again = lab.targets[0].make("deploy", timeout=1800)
    assert again.returncode == 0, again.output[-8000:]
    assert again.changed == 0, again.output[-8000:]
    print(json.dumps({"second_deploy_s": round(again.seconds, 1)}))
