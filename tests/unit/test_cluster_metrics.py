"""Metrics in a cluster (issue 15, "problems are visible"): every member runs the single
host's exporters, pointed at its own Postgres (the member's port on the shared socket,
not HAProxy's postgres_port), Prometheus is told which cluster and member each target
is, and each member's textfile carries the thresholds the cluster rules compare with.

The rules themselves are tested by promtool (tests/metrics/pgsteady-cluster-alerts.test.yml
through tests/integration/test_alert_rules.py); the lab module
tests/lab/test_cluster_lab_metrics.py runs all of it against a real cluster.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from pgsteady.backup.pgbackrest import SOCKET_DIR, SOCKET_VOLUME
from pgsteady.cluster import etcd_service as svc
from pgsteady.scrape_config import generate
from pgsteady.settings import SettingsError, build_settings
from pgsteady.stack import exporters
from pgsteady.stack.compose import render_compose
from tests.unit.test_cluster_etcd_compose import FACTS, MEMBER, member
from tests.unit.test_metrics import INFO, _run, _umask_restored, _write_config, writer  # noqa: F401

METRICS = {**MEMBER, "metrics_enabled": True, "metrics_bind": "0.0.0.0"}


def services(**data: Any) -> dict[str, Any]:
    _, cluster = member(3)
    s = build_settings({**METRICS, **data}, FACTS)
    return yaml.safe_load(render_compose(s, svc.service(s, cluster, cluster.member("pg2"))))[
        "services"
    ]


def test_a_cluster_member_accepts_metrics_and_the_pooler_beside_them() -> None:
    s = build_settings(METRICS, FACTS)
    assert s.metrics_enabled and s.postgres_cluster_name == "main"
    both = build_settings({**METRICS, "pgbouncer_enabled": True}, FACTS)
    assert both.metrics_enabled and both.pgbouncer_enabled


@pytest.mark.parametrize(
    ("key", "port", "other"),
    [
        ("postgres_exporter_port", 8008, "patroni_rest_port"),
        ("node_exporter_port", 15432, "postgres_member_port"),
        ("node_exporter_port", 2379, "etcd_client_port"),
        ("postgres_exporter_port", 5433, "postgres_replica_port"),
    ],
)
def test_an_exporter_port_a_cluster_uses_is_refused(key: str, port: int, other: str) -> None:
    """The member's own services share the host's network: a clash would fail at start."""
    with pytest.raises(SettingsError) as exc:
        build_settings({**METRICS, key: port}, FACTS)
    assert any(e.startswith(f"{key} = {port}: also {other}'s port") for e in exc.value.errors)
    # a single host has no such port: the same number is fine there
    build_settings({**METRICS, "postgres_cluster_name": None, key: port}, FACTS)


def test_the_postgres_exporter_reads_the_members_own_port_over_the_socket() -> None:
    all_services = services()
    x = all_services["postgres-exporter"]
    uri = x["environment"]["DATA_SOURCE_URI"]
    assert uri == f"/postgres?host={SOCKET_DIR}&port=15432&sslmode=disable"
    assert f"{SOCKET_VOLUME}:{SOCKET_DIR}:ro" in x["volumes"]
    # Postgres (Patroni's, on the host network) shares that socket directory with it
    assert f"{SOCKET_VOLUME}:{SOCKET_DIR}" in all_services["postgres"]["volumes"]
    assert all_services["postgres"]["network_mode"] == "host"
    moved = services(postgres_member_port=16000)["postgres-exporter"]["environment"]
    assert "&port=16000&" in moved["DATA_SOURCE_URI"]
    # a single host keeps its DSN: its server listens on the image's default port
    single = build_settings({**METRICS, "postgres_cluster_name": None}, FACTS)
    assert exporters.data_source_uri(single) == f"/postgres?host={SOCKET_DIR}&sslmode=disable"


def test_a_members_exporters_keep_the_single_hosts_confinement() -> None:
    all_services = services()
    for name in ("postgres-exporter", "node-exporter"):
        x = all_services[name]
        assert x["user"] == "64187:64187" and x["read_only"] is True
        assert x["cap_drop"] == ["ALL"] and x["security_opt"] == ["no-new-privileges:true"]
        assert f"--web.config.file={exporters.WEB_CONFIG_MOUNT}" in x["command"]
        assert "network_mode" not in x  # its own network, published on metrics_bind only
        assert all(v.endswith(":ro") for v in x["volumes"])
    pg = all_services["postgres-exporter"]
    assert pg["secrets"] == [exporters.EXPORTER_SECRET]
    assert pg["environment"]["DATA_SOURCE_PASS_FILE"].endswith(exporters.EXPORTER_SECRET)
    env = pg["environment"].values()
    assert not any("password" in str(v).lower() and "/" not in str(v) for v in env)


def test_the_writer_config_carries_the_replica_lag_limit_in_a_cluster_only() -> None:
    s = build_settings({**METRICS, "postgres_replica_max_lag": "64MB"}, FACTS)
    assert exporters.writer_config(s)["cluster"] == {"replica_max_lag_bytes": 64 * 1024 * 1024}
    single = build_settings({**METRICS, "postgres_cluster_name": None}, FACTS)
    assert exporters.writer_config(single)["cluster"] == {}


def test_the_textfile_reports_the_clusters_thresholds(
    writer: ModuleType,  # noqa: F811
    tmp_path: Path,
) -> None:
    config = _write_config(tmp_path, json.dumps(INFO))
    _, single = _run(writer, config, tmp_path)
    assert "pgsteady_cluster_" not in single
    config["cluster"] = {"replica_max_lag_bytes": 16777216}
    rc, text = _run(writer, config, tmp_path)
    assert rc == 0
    assert "\npgsteady_cluster_replica_max_lag_bytes 16777216\n" in text
    assert "# TYPE pgsteady_cluster_replica_max_lag_bytes gauge" in text


def test_a_member_that_left_the_dump_to_a_standby_says_when(
    writer: ModuleType,  # noqa: F811
    tmp_path: Path,
) -> None:
    """The primary's normal case in a cluster (pgsteady-backup's last run skipped, the dump
    left to a streaming standby): PostgresBackupTooOld must not read it as no backup."""
    config = _write_config(tmp_path, json.dumps(INFO))
    config["cluster"] = {"replica_max_lag_bytes": 16777216}
    status = {"last_run": {"time": "2030-01-03T00:00:00+00:00", "ok": True, "skipped": "m2"}}
    (tmp_path / "status.json").write_text(json.dumps(status))
    _, text = _run(writer, config, tmp_path)
    delegated = 'pgsteady_backup_delegated_timestamp_seconds{tool="pg_dump"}'
    assert f"\n{delegated} 1893628800\n" in text
    assert 'pgsteady_backup_last_success_timestamp_seconds{tool="pg_dump"} 0\n' in text
    # a run that dumped itself is no delegation; a single host never has the metric
    status["last_run"].pop("skipped")
    (tmp_path / "status.json").write_text(json.dumps(status))
    assert f"\n{delegated} 0\n" in _run(writer, config, tmp_path)[1]
    config.pop("cluster")
    assert "pgsteady_backup_delegated" not in _run(writer, config, tmp_path)[1]


def test_scrape_config_lists_every_member_with_its_cluster_and_name(tmp_path: Path) -> None:
    inv = tmp_path / "prod.py"
    inv.write_text(
        "main_db = (\n"
        "    [(f'pg{i}', {'ssh_hostname': f'10.0.0.{i}'}) for i in (1, 2, 3)],\n"
        f"    {METRICS!r},\n"
        ")\n"
        "single = [('db9', {'ssh_hostname': '10.0.1.9', 'metrics_bind': '10.0.1.9'})]\n"
    )
    out, _ = generate(inv)
    got = json.loads((out / "targets.json").read_text())
    postgres = {
        e["labels"]["instance"]: e for e in got if e["labels"]["pgsteady_exporter"] == "postgres"
    }
    assert sorted(postgres) == ["db9", "pg1", "pg2", "pg3"]
    for i in (1, 2, 3):
        entry = postgres[f"pg{i}"]
        assert entry["targets"] == [f"10.0.0.{i}:9187"]
        assert entry["labels"]["pgsteady_cluster"] == "main"
        assert entry["labels"]["pgsteady_member"] == f"pg{i}"
    assert "pgsteady_cluster" not in postgres["db9"]["labels"]
    node = [e for e in got if e["labels"]["pgsteady_exporter"] == "node"]
    assert sorted(e["labels"].get("pgsteady_member", "") for e in node) == ["", "pg1", "pg2", "pg3"]
    rules = yaml.safe_load((out / "pgsteady-alerts.yml").read_text())
    names = {r["alert"] for g in rules["groups"] for r in g["rules"]}
    assert {"PostgresClusterNoPrimary", "PostgresReplicaNotStreaming"} <= names
