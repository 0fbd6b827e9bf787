"""PgBouncer in a cluster, live (issue 15/17): a 3-member lab cluster of its own deployed
with ``pgbouncer_enabled``; every member's pooler reaches the current leader through its
own HAProxy (pgsteady.cluster.pooler).

* a writer commits numbered rows through ONE member's pgbouncer_port over TLS
  (verify-full against the inventory's CA, the member's address as the name) while
  `make switchover` moves the leader: its commits resume through the same port on the
  new leader (the acknowledging server's address), and the longest gap between two
  acknowledged commits is measured;
* after the switchover a first login through every member's pooler works (auth_query
  runs on the new leader) and lands on the primary;
* `make verify` passes on every member with its pooler group run on each (the lab's
  clock check aside), and a second deploy changes nothing.

Outside make test (a lab of its own): run with ``make lab-cluster-pooler``
(PGSTEADY_LAB_POOLER=1).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest

from pgsteady.lab.cluster_backend import LabCluster
from pgsteady.lab.rest_client import ACCESS_DIR, client_pair
from pgsteady.lab.writers import SCHEMA, Writer
from pgsteady.settings import defaults
from tests.lab.conftest import LabTarget, deployed_cluster, record, verify_group_then_no_change

pytestmark = [
    pytest.mark.timeout(3600),
    pytest.mark.skipif(
        os.environ.get("PGSTEADY_LAB_POOLER") != "1", reason="PGSTEADY_LAB_POOLER=1 runs it"
    ),
]

DATA = {"compose_project": "labq", "backup_schedule": "@daily", "pgbouncer_enabled": True}
PORT = int(defaults()["pgbouncer_port"])
#: The longest write gap through the pooler accepted across a switchover (seconds).
MAX_GAP_S = 60.0


class Lab:
    def __init__(self, targets: list[LabTarget], cluster: LabCluster) -> None:
        self.targets = targets
        self.cluster = cluster
        self.gap: float | None = None

    def pooler_dsn(self, target: LabTarget, timeout: int = 3) -> str:
        """The application's role through ``target``'s pooler, the certificate verified
        against the member's address (the cluster backend's DSN, another host and port)."""
        dsn = re.sub(r"^host=\S+ port=\d+ ", "", self.cluster.proxy_dsn())
        dsn = dsn.replace("connect_timeout=2", f"connect_timeout={timeout}")
        return f"host={target.host.ip} port={PORT} {dsn}"


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with deployed_cluster("pgspool", DATA, "PgBouncer") as (targets, cluster):
        yield Lab(targets, cluster)


def _rest_gate(lab: Lab) -> None:
    """The files `make switchover` reads (docs/operations.md): the lab probe's client pair
    (pgsteady.lab.rest_client.client_pair, made when missing), the CA and the REST password."""
    ca_dir = lab.cluster.ca_dir
    client_pair(ca_dir)
    gate = ca_dir / ACCESS_DIR
    (gate / "ca.crt").write_bytes((ca_dir / "ca.crt").read_bytes())
    if not (gate / "rest-password").exists():
        fd = os.open(gate / "rest-password", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write((ca_dir / "clusters" / "lab" / "patroni_rest_password").read_bytes())


def _primary_through(lab: Lab, target: LabTarget) -> tuple[bool, str]:
    """(in recovery, server address) of a NEW login through ``target``'s pooler."""
    conn = psycopg2.connect(lab.pooler_dsn(target, timeout=10))
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_catalog.pg_is_in_recovery(), host(inet_server_addr())")
            return cur.fetchone()
    finally:
        conn.close()


def test_writes_through_a_members_pooler_resume_on_the_new_leader(lab: Lab) -> None:
    old = lab.cluster.leader()
    ips = {t.host.name: t.host.ip for t in lab.targets}
    # the pooler of a member that does not lead: its route crosses to another host
    via = next(t for t in lab.targets if t.host.name != old)
    conn = psycopg2.connect(lab.pooler_dsn(via, timeout=10))
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(SCHEMA)
    conn.close()
    writer = Writer(lab.pooler_dsn(via), period=0.1, timeout=5.0)
    writer.start()
    try:
        deadline = time.monotonic() + 120
        while len(writer.acks) < 30 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert len(writer.acks) >= 30, writer.errors[-10:]
        assert {a.instance.split("|")[0] for a in writer.acks} == {ips[old]}
        _rest_gate(lab)
        started = time.monotonic()
        result = lab.targets[0].make("switchover", timeout=600)
        assert result.returncode == 0, result.output[-4000:]
        new = lab.cluster.leader()
        assert new and new != old, (old, new)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            after = [a for a in writer.acks if a.at > started]
            if sum(a.instance.startswith(f"{ips[new]}|") for a in after) >= 30:
                break
            time.sleep(0.5)
    finally:
        writer.stop()
    after = [a for a in writer.acks if a.at > started]
    on_new = [a for a in after if a.instance.startswith(f"{ips[new]}|")]
    assert len(on_new) >= 30, (len(after), writer.errors[-10:])
    # once the new leader acknowledged, no commit went back to the old one
    first = on_new[0].at
    assert all(a.instance.startswith(f"{ips[new]}|") for a in after if a.at >= first)
    times = [a.at for a in writer.acks]
    lab.gap = max(b - a for a, b in zip(times, times[1:], strict=False) if b > started - 5)
    load = Path("/proc/loadavg").read_text().strip()
    print(f"switchover {old} -> {new}: longest write gap through {via.host.name}'s pooler "
          f"{lab.gap:.2f} s, {len(writer.unknown)} commits unknown, load {load}")  # fmt: skip
    record("cluster pooler: write gap through PgBouncer across a switchover", lab.gap)
    assert lab.gap < MAX_GAP_S, writer.errors[-20:]


def test_a_first_login_through_every_pooler_reaches_the_new_leader(lab: Lab) -> None:
    leader = lab.cluster.leader()
    ip = next(t.host.ip for t in lab.targets if t.host.name == leader)
    for t in lab.targets:
        assert _primary_through(lab, t) == (False, ip), t.host.name


def test_plain_text_and_an_unverified_name_are_refused(lab: Lab) -> None:
    target = lab.targets[0]
    dsn = lab.pooler_dsn(target, timeout=10)
    with pytest.raises(psycopg2.OperationalError):
        psycopg2.connect(dsn.replace("sslmode=verify-full", "sslmode=disable")).close()
    # the pooler's certificate names its member, not another member's address
    other = lab.targets[1].host.ip
    wrong = f"{dsn} hostaddr={target.host.ip}".replace(f"host={target.host.ip}", f"host={other}")
    with pytest.raises(psycopg2.OperationalError, match="certificate"):
        psycopg2.connect(wrong).close()


def test_verify_passes_with_the_pooler_checks_and_a_second_deploy_changes_nothing(
    lab: Lab,
) -> None:
    verify_group_then_no_change(lab.targets, "pooler")
