"""Metrics in a cluster, live (issue 15, "problems are visible"): a 3-member lab cluster
of its own deployed with ``metrics_enabled`` and the exporters published on every
address, ``make scrape-config`` for its inventory, and a real Prometheus (the Debian
package, as tests/e2e/test_prometheus_alerts.py runs it) scraping every member over
mutual TLS with files/metrics/pgsteady-alerts.yml loaded.

* every member's two targets are up, each member's pg_up is 1, exactly one member
  reports a primary and it is Patroni's leader, the other two report standbys (their
  exporters read their OWN Postgres: through HAProxy all three would show the leader),
  the leader streams to both by their member names, every member's textfile carries
  postgres_replica_max_lag, no rule fails to evaluate and no cluster alert is raised;
* a replica's Postgres stopped (left down, as `make down` leaves it): Prometheus fires
  PostgresReplicaNotStreaming for that member, and not PostgresClusterNoPrimary; started
  again, the cluster is whole and the alert clears;
* `make verify` passes on every member, its metrics group included (the lab's clock
  check aside), and a second deploy changes nothing (the exporters converge
  idempotently in a cluster).

Outside make test (a lab of its own: 11 min at load 14-17, first deploy 429 s): run with
``make lab-cluster-metrics`` (PGSTEADY_LAB_METRICS=1).
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from pgsteady.lab.cluster_backend import LabCluster
from tests.e2e.test_prometheus_alerts import RULES, Prometheus, wait_for
from tests.lab.conftest import (
    REPO,
    LabTarget,
    deployed_cluster,
    record,
    verify_group_then_no_change,
)

pytestmark = [
    pytest.mark.timeout(3600),
    pytest.mark.skipif(
        os.environ.get("PGSTEADY_LAB_METRICS") != "1", reason="PGSTEADY_LAB_METRICS=1 runs it"
    ),
]

CLUSTER = "lab"  # pgsteady.lab.recipe.cluster_data's name for a lab cluster
DATA = {
    "compose_project": "labx",
    "backup_schedule": "@daily",
    "metrics_enabled": True,
    "metrics_bind": "0.0.0.0",  # Prometheus on this machine reaches each host's address
}
CLUSTER_ALERTS = (
    "PostgresClusterNoPrimary",
    "PostgresClusterMultiplePrimaries",
    "PostgresReplicaLagHigh",
    "PostgresReplicaNotStreaming",
)


class Lab:
    """The deployed lab: its hosts and the failover backend's view of the cluster."""

    def __init__(self, targets: list[LabTarget], cluster: LabCluster) -> None:
        self.targets = targets
        self.cluster = cluster

    def target(self, name: str) -> LabTarget:
        return next(t for t in self.targets if t.host.name == name)


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with deployed_cluster("pgsmet", DATA, "metrics") as (targets, cluster):
        yield Lab(targets, cluster)


@pytest.fixture(scope="module")
def prometheus(lab: Lab) -> Iterator[Prometheus]:
    inventory = lab.targets[0].inventory
    out = inventory.parent / "prometheus"
    proc = subprocess.run(
        ["make", "-s", "scrape-config", f"INVENTORY={inventory}", f"OUT={out}"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    jobs = yaml.safe_load((out / "scrape-configs.yml").read_text())["scrape_configs"]
    workdir = inventory.parent / "prometheus-server"
    workdir.mkdir(exist_ok=True)
    prom = Prometheus(workdir, jobs)
    try:
        yield prom
    finally:
        prom.stop()


def by_member(prom: Prometheus, query: str) -> dict[str, str]:
    """pgsteady_member -> value of each series ``query`` returns."""
    result = prom.api("query", query=query)["result"]
    return {r["metric"].get("pgsteady_member", "?"): r["value"][1] for r in result}


def cluster_alerts(prom: Prometheus, name: str, state: str = "firing") -> list[dict[str, Any]]:
    return [
        a
        for a in prom.api("alerts")["alerts"]
        if a["labels"].get("alertname") == name
        and a["labels"].get("pgsteady_cluster") == CLUSTER
        and a["state"] == state
    ]


def test_every_member_is_scraped_with_its_own_role(lab: Lab, prometheus: Prometheus) -> None:
    names = sorted(t.host.name for t in lab.targets)

    def targets_up() -> bool:
        active = prometheus.api("targets", state="active")["activeTargets"]
        ours = [t for t in active if t["labels"].get("pgsteady_cluster") == CLUSTER]
        return len(ours) == 6 and all(t["health"] == "up" for t in ours)

    wait_for("six targets (2 per member) up", targets_up, 120)
    _, up = wait_for(
        "pg_up of 3 members",
        lambda: (
            (m := by_member(prometheus, f'pg_up{{pgsteady_cluster="{CLUSTER}"}}'))
            and len(m) == 3
            and m
        ),
        120,
    )
    assert up == dict.fromkeys(names, "1")
    roles = by_member(
        prometheus, f'pgsteady_postmaster_in_recovery{{pgsteady_cluster="{CLUSTER}"}}'
    )
    leader = lab.cluster.leader()
    assert roles == {n: ("0" if n == leader else "1") for n in names}, (roles, leader)
    # the exporter's own recovery flag, where this exporter version has it, agrees
    builtin = by_member(prometheus, f'pg_replication_is_replica{{pgsteady_cluster="{CLUSTER}"}}')
    assert builtin in ({}, roles), builtin
    # the leader streams to both replicas, named as Patroni names them (the member names)
    _, streaming = wait_for(
        "the leader's two walsenders",
        lambda: (
            (r := prometheus.api("query", query="pgsteady_replication_streaming")["result"])
            and len(r) == 2
            and r
        ),
        120,
    )
    assert {s["metric"]["pgsteady_member"] for s in streaming} == {leader}
    assert sorted(s["metric"]["application_name"] for s in streaming) == sorted(
        n for n in names if n != leader
    )
    assert all(s["value"][1] == "1" for s in streaming)
    _, limits = wait_for(
        "the textfile's lag limit on every member",
        lambda: (
            (m := by_member(prometheus, "pgsteady_cluster_replica_max_lag_bytes"))
            and len(m) == 3
            and m
        ),
        180,
    )
    assert limits == dict.fromkeys(names, str(16 * 1024 * 1024))
    time.sleep(15)  # three evaluations on the real series
    groups = prometheus.api("rules", type="alert")["groups"]
    rules = [r for g in groups for r in g["rules"]]
    assert len(rules) == sum(len(g["rules"]) for g in yaml.safe_load(RULES.read_text())["groups"])
    assert [(r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"] == []
    for name in CLUSTER_ALERTS:
        for state in ("pending", "firing"):
            assert cluster_alerts(prometheus, name, state) == [], name


def test_a_stopped_replica_fires_not_streaming_and_clears(lab: Lab, prometheus: Prometheus) -> None:
    leader = lab.cluster.leader()
    replica = lab.target(next(t.host.name for t in lab.targets if t.host.name != leader))
    s = replica.settings
    marker = f"{s.app_dir}/.stopped"  # the watchdog leaves a `make down` stop alone
    stop = replica.ssh(f"touch {marker} && docker stop -t 30 {s.container_name}", timeout=120)
    assert stop.returncode == 0, stop.stderr
    stopped = time.monotonic()
    try:
        took, firing = wait_for(
            "PostgresReplicaNotStreaming firing",
            lambda: cluster_alerts(prometheus, "PostgresReplicaNotStreaming"),
            420,
            step=2,
        )
        assert [a["labels"]["pgsteady_member"] for a in firing] == [replica.host.name]
        alert = firing[0]
        assert alert["labels"]["severity"] == "critical"
        assert (
            alert["annotations"]["runbook_url"] == "docs/operations.md#postgresreplicanotstreaming"
        )
        print(f"PostgresReplicaNotStreaming fired {took:.0f} s after docker stop (for: 2m), "
              f"load {Path('/proc/loadavg').read_text().strip()}")  # fmt: skip
        record("cluster metrics: replica stopped -> PostgresReplicaNotStreaming firing", took)
        # the member's own exporter says its Postgres is down; the cluster still has its
        # primary, so no "no primary" alert
        assert by_member(prometheus, f'pg_up{{pgsteady_member="{replica.host.name}"}}') == {
            replica.host.name: "0"
        }
        for state in ("pending", "firing"):
            assert cluster_alerts(prometheus, "PostgresClusterNoPrimary", state) == []
    finally:
        start = replica.ssh(f"rm -f {marker} && docker start {s.container_name}", timeout=120)
        assert start.returncode == 0, start.stderr
    lab.cluster.wait_whole(600)
    cleared, _ = wait_for(
        "PostgresReplicaNotStreaming cleared",
        lambda: (
            not any(
                cluster_alerts(prometheus, "PostgresReplicaNotStreaming", state)
                for state in ("pending", "firing")
            )
        ),
        180,
        step=2,
    )
    print(f"cleared {cleared:.0f} s after the cluster was whole "
          f"({time.monotonic() - stopped:.0f} s after the stop)")  # fmt: skip


def test_verify_passes_with_the_metrics_checks_and_a_second_deploy_changes_nothing(
    lab: Lab,
) -> None:
    verify_group_then_no_change(lab.targets, "metrics")
