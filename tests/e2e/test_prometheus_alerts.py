"""A real Prometheus (Debian package) scraping a deployed stack fires pgsteady's alerts.

The e2e conftest's shared stack (converged by the real pyinfra CLI, handed on healthy
with archiving working); `make scrape-config` writes its targets and
Prometheus's client certificate; the `prometheus` binary runs on a free port with its own
data directory, a 5 s scrape and evaluation interval, the generated scrape jobs and
files/metrics/pgsteady-alerts.yml. Through Prometheus's HTTP API:

* both exporters are scraped over mutual TLS and no alert of the healthy stack's
  database fires;
* `PostgresDown` fires within 90 s of stopping the Postgres container (the watchdog told
  to leave it down, as `make down` does) and clears once it runs again;
* an archive alert fires within 3 minutes of the pgBackRest repository becoming
  unwritable while WAL is written, and clears once the repository is back.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.stack import REPO, Stack, docker, free_port

pytestmark = pytest.mark.timeout(1500)

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
RULES = REPO / "files/metrics/pgsteady-alerts.yml"
INTERVAL = "5s"
ARCHIVE_ALERTS = ("PostgresArchivingFailing", "PostgresWalArchiveStale")


class Prometheus:
    """The prometheus binary with its own config and TSDB directory, on a free port."""

    def __init__(self, workdir: Path, scrape_configs: list[dict[str, Any]]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = {
            "global": {"scrape_interval": INTERVAL, "evaluation_interval": INTERVAL,
                       "scrape_timeout": "4s"},
            "rule_files": [str(RULES)],
            "scrape_configs": scrape_configs,
        }  # fmt: skip
        self.config = workdir / "prometheus.yml"
        self.config.write_text(yaml.safe_dump(config, sort_keys=False))
        check = subprocess.run(
            [PROMTOOL, "check", "config", str(self.config)], capture_output=True, text=True
        )
        assert check.returncode == 0, check.stdout + check.stderr
        self.log = workdir / "prometheus.log"
        self.proc = subprocess.Popen(
            [PROMETHEUS, f"--config.file={self.config}",
             f"--storage.tsdb.path={workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}",
             "--storage.tsdb.retention.time=1d"],
            stdout=self.log.open("wb"), stderr=subprocess.STDOUT, cwd=workdir,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while not self._ready():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"prometheus did not start:\n{self.log_tail()}")
            time.sleep(0.5)

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as resp:
                return resp.status == 200
        except OSError:
            return False

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def api(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}{query}", timeout=10) as resp:
            body = json.loads(resp.read())
        assert body["status"] == "success", body
        return body["data"]

    def alerts(self, name: str, project: str, state: str = "firing") -> list[dict[str, Any]]:
        """This stack's alerts called ``name`` in ``state`` (pending, firing)."""
        return [
            a
            for a in self.api("alerts")["alerts"]
            if a["labels"].get("alertname") == name
            and a["labels"].get("pgsteady_project") == project
            and a["state"] == state
        ]

    def stop(self) -> None:
        """Stop the process this test started (by PID)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def wait_for(what: str, check, timeout: float, step: float = 1.0):  # noqa: ANN001, ANN201
    """Seconds until ``check()`` is true (and its value), or fail naming ``what``."""
    started = time.monotonic()
    while True:
        result = check()
        if result:
            return time.monotonic() - started, result
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{what}: not within {timeout:.0f} s")
        time.sleep(step)


@pytest.fixture(scope="module")
def stack(shared_stack: Stack) -> Stack:
    """The e2e conftest's shared stack (no deploy of its own): PostgresDown's stop is
    started again and the repository's mode restored, with archiving shown working."""
    return shared_stack


@pytest.fixture(scope="module")
def prometheus(stack: Stack) -> Iterator[Prometheus]:
    out = stack.dir / "prometheus"
    proc = subprocess.run(
        ["make", "-s", "scrape-config", f"INVENTORY={stack.inventory}", f"OUT={out}"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    jobs = yaml.safe_load((out / "scrape-configs.yml").read_text())["scrape_configs"]
    assert {j["job_name"] for j in jobs} == {"pgsteady-postgres", "pgsteady-node"}
    workdir = stack.dir / "prometheus-server"
    workdir.mkdir()
    prom = Prometheus(workdir, jobs)
    yield prom
    prom.stop()


#: Metrics of replication, which a single host does not have (no slot, no standby), and
#: the cluster's thresholds (tests/lab/test_cluster_lab_metrics.py sees them on a cluster).
CLUSTER_ONLY = {
    "pgsteady_replication_replay_lag_seconds",
    "pgsteady_replication_replay_lag_bytes",
    "pgsteady_replication_streaming",
    "pgsteady_wal_receiver_streaming",
    "pgsteady_replication_slot_active",
    "pgsteady_cluster_replica_max_lag_bytes",
    "pgsteady_backup_delegated_timestamp_seconds",
}


def rule_metrics() -> set[str]:
    """The metric names the alert rules' expressions read."""
    rules = yaml.safe_load(RULES.read_text())
    exprs = " ".join(r["expr"] for g in rules["groups"] for r in g["rules"])
    exprs = re.sub(r"\b(?:by|on|ignoring|without)\s*\([^)]*\)", " ", exprs)  # label lists
    exprs = re.sub(r"\{[^}]*\}|\"[^\"]*\"", " ", exprs)  # label matchers, label_replace's strings
    return set(re.findall(r"\b(?:pg|pgsteady|node)_\w+|\bup\b", exprs))


def test_both_exporters_are_scraped_and_the_healthy_stack_raises_no_database_alert(
    stack: Stack, prometheus: Prometheus
) -> None:
    def names() -> set[str]:
        series = prometheus.api("series", **{"match[]": f'{{pgsteady_project="{stack.name}"}}'})
        return {s["__name__"] for s in series}

    def targets_up() -> bool:
        active = prometheus.api("targets", state="active")["activeTargets"]
        ours = [t for t in active if t["labels"].get("pgsteady_project") == stack.name]
        return len(ours) == 2 and all(t["health"] == "up" for t in ours)

    wait_for("both targets up", targets_up, 60)
    selector = f'pg_up{{pgsteady_project="{stack.name}"}}'
    _, result = wait_for("pg_up", lambda: prometheus.api("query", query=selector)["result"], 60)
    assert result[0]["metric"]["instance"] == "@local"
    assert result[0]["value"][1] == "1"
    # Every metric a rule reads exists under that name in the deployed exporters (the
    # image's postgres-exporter and node-exporter versions, the custom queries, the
    # textfile), but those only a cluster has.
    wait_for("textfile metrics", lambda: "pgsteady_textfile_timestamp_seconds" in names(), 60)
    assert sorted(rule_metrics() - CLUSTER_ONLY - names()) == []
    time.sleep(15)  # three evaluations
    # On real series (both exporters' label sets) no rule fails to evaluate, e.g. a join
    # that meets two series on one side.
    groups = prometheus.api("rules", type="alert")["groups"]
    rules = [r for g in groups for r in g["rules"]]
    assert len(rules) == sum(len(g["rules"]) for g in yaml.safe_load(RULES.read_text())["groups"])
    assert [(r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"] == []
    quiet = ("PostgresDown", "ExporterDown", "PostgresCrashLoop", *ARCHIVE_ALERTS)
    for name in quiet:
        for state in ("pending", "firing"):
            assert prometheus.alerts(name, stack.name, state) == [], name


def test_postgres_down_fires_within_90_seconds_and_clears(
    stack: Stack, prometheus: Prometheus
) -> None:
    marker = stack.app_dir / ".stopped"  # the watchdog leaves a `make down` stop alone
    marker.touch()
    try:
        docker("stop", "-t", "30", stack.container)
        took, firing = wait_for(
            "PostgresDown firing",
            lambda: prometheus.alerts("PostgresDown", stack.name),
            90,
        )
        alert = firing[0]
        assert alert["labels"]["severity"] == "critical"
        assert alert["labels"]["instance"] == "@local"
        assert alert["annotations"]["runbook_url"] == "docs/operations.md#postgresdown"
        print(f"PostgresDown fired {took:.0f} s after docker stop")
    finally:
        marker.unlink(missing_ok=True)
        docker("start", stack.container)
    stack.wait_healthy()
    cleared, _ = wait_for(
        "PostgresDown cleared",
        lambda: (
            not prometheus.alerts("PostgresDown", stack.name)
            and not prometheus.alerts("PostgresDown", stack.name, "pending")
        ),
        60,
    )
    print(f"PostgresDown cleared {cleared:.0f} s after the container was healthy again")


def test_archive_alert_fires_within_3_minutes_of_breaking_the_repository(
    stack: Stack, prometheus: Prometheus
) -> None:
    repo = stack.app_dir / "pgbackrest" / "repo1"
    mode = repo.stat().st_mode & 0o7777
    repo.chmod(0o000)
    try:
        started = time.monotonic()

        def archive_alert() -> list[str]:
            # WAL keeps coming, as on a server in use: a segment every few seconds.
            stack.psql("SELECT pg_switch_wal() FROM (SELECT txid_current()) AS t")
            return [n for n in ARCHIVE_ALERTS if prometheus.alerts(n, stack.name)]

        took, names = wait_for("an archive alert firing", archive_alert, 180, step=5)
        print(f"{names} fired {took:.0f} s after the repository broke")
        assert time.monotonic() - started <= 180
        alert = prometheus.alerts(names[0], stack.name)[0]
        assert alert["labels"]["severity"] == "critical"
        assert alert["annotations"]["runbook_url"] == "docs/operations.md#archive-stuck"
    finally:
        repo.chmod(mode)
    # Back: the next archive attempt succeeds (pgsteady-ctl pgbackrest check forces one).
    check = subprocess.run(
        [f"{stack.app_dir}/bin/pgsteady-ctl", "pgbackrest", "check"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert check.returncode == 0, check.stderr
    wait_for(
        "archive alerts cleared",
        lambda: not any(prometheus.alerts(n, stack.name) for n in ARCHIVE_ALERTS),
        120,
        step=5,
    )
