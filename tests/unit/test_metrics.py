"""The exporters' settings, compose services, scrape config and textfile (issue 17, 1-2).

The e2e test (tests/e2e/test_metrics_deploy.py) runs them for real; these pin the
decisions: what is refused, what each container may do, what Prometheus is told, what
the textfile says.
"""

from __future__ import annotations

import datetime as dt
import importlib.machinery
import importlib.util
import json
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import yaml
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from pgsteady.inventory import InventoryHost
from pgsteady.scrape_config import (
    ScrapeConfigError,
    generate,
    render_scrape_configs,
    target_address,
    targets,
)
from pgsteady.settings import HostFacts, SettingsError, build_settings
from pgsteady.stack import exporters
from pgsteady.stack.compose import render_compose
from pgsteady.stack.jobs import metrics_job, render_cron
from pgsteady.tls import create_ca, issue_server_cert

FACTS = HostFacts(ram_mb=4096, cpus=2)
REPO = Path(__file__).resolve().parents[2]
WRITER = REPO / "files" / "bin" / "pgsteady-metrics"


def errors_for(**data) -> list[str]:
    with pytest.raises(SettingsError) as exc:
        build_settings(data, FACTS)
    return exc.value.errors


def compose(**data) -> dict:
    return yaml.safe_load(render_compose(build_settings(data, FACTS)))


# --- settings ---------------------------------------------------------------------------


def test_defaults_turn_metrics_on_on_the_private_default_address() -> None:
    s = build_settings({}, FACTS)
    assert s.metrics_enabled is True
    assert s.metrics_bind == s.postgres_bind == "127.0.0.1"
    assert (s.postgres_exporter_port, s.node_exporter_port) == (9187, 9100)


@pytest.mark.parametrize(
    ("data", "key", "other"),
    [
        ({"postgres_exporter_port": 5432}, "postgres_exporter_port = 5432", "postgres_port"),
        ({"node_exporter_port": 8432}, "node_exporter_port = 8432", "pgbackrest_tls_port"),
        (
            {"postgres_exporter_port": 9300, "node_exporter_port": 9300},
            "node_exporter_port = 9300",
            "postgres_exporter_port",
        ),
    ],
)
def test_an_exporter_port_taken_by_another_is_refused(data: dict, key: str, other: str) -> None:
    errors = errors_for(**data)
    assert len(errors) == 1, errors
    assert errors[0].startswith(f"{key}: also {other}'s port"), errors
    assert "1024-65535" in errors[0]


def test_archiving_off_frees_its_port_for_an_exporter() -> None:
    s = build_settings({"pgbackrest_enabled": False, "node_exporter_port": 8432}, FACTS)
    assert s.node_exporter_port == 8432


@pytest.mark.parametrize("port", [80, 65536, "9100"])
def test_exporter_port_range_and_type(port: object) -> None:
    errors = errors_for(node_exporter_port=port)
    assert errors and errors[0].startswith(f"node_exporter_port = {port!r}"), errors


def test_metrics_bind_must_be_an_address() -> None:
    errors = errors_for(metrics_bind="db.internal")
    assert errors == [
        "metrics_bind = 'db.internal': is not an IP address (e.g. 127.0.0.1 or 10.0.0.5)"
    ]


@pytest.mark.parametrize("source", ["registry", "archive"])
def test_images_without_exporters_are_refused_while_metrics_are_on(source: str) -> None:
    data = {
        "postgres_image_source": source,
        "pgbackrest_enabled": False,
        "postgres_image": "postgres:17",
        "postgres_image_archive": "/srv/pg.tar",
        "pgbouncer_enabled": False,  # the pooler's own refusal: tests/unit/test_pgbouncer.py
    }
    errors = errors_for(**data)
    assert len(errors) == 1, errors
    assert errors[0].startswith(f"postgres_image_source = {source!r}: the exporters")
    assert "metrics_enabled = False" in errors[0]
    assert build_settings({**data, "metrics_enabled": False}, FACTS)


def test_auto_source_needs_a_debian_packaged_version_while_metrics_are_on() -> None:
    errors = errors_for(postgres_version=16, pgbackrest_enabled=False)
    assert len(errors) == 1 and errors[0].startswith("postgres_version = 16: with metrics_enabled")


def test_the_exporters_uid_must_not_be_the_servers() -> None:
    errors = errors_for(metrics_exporter_uid=999)
    assert len(errors) == 1 and errors[0].startswith(
        "metrics_exporter_uid = 999: also postgres_uid"
    )
    assert build_settings({"metrics_exporter_uid": 999, "metrics_enabled": False}, FACTS)
    assert errors_for(metrics_exporter_uid=0)[0].startswith("metrics_exporter_uid = 0")
    assert errors_for(metrics_exporter_uid=65534)[0].startswith("metrics_exporter_uid = 65534")


def test_a_typo_of_a_metrics_key_is_caught() -> None:
    errors = errors_for(metrics_enable=False)
    assert errors == ["metrics_enable: unknown setting; did you mean metrics_enabled?"]


# --- compose ----------------------------------------------------------------------------


def test_exporters_are_confined_services_of_the_stack() -> None:
    doc = compose(metrics_bind="10.0.0.5", postgres_exporter_port=9400, node_exporter_port=9401)
    pg, node = doc["services"]["postgres-exporter"], doc["services"]["node-exporter"]
    for svc in (pg, node):
        assert svc["image"] == doc["services"]["postgres"]["image"]
        assert svc["read_only"] is True
        assert svc["cap_drop"] == ["ALL"]
        assert svc["security_opt"] == ["no-new-privileges:true"]
        assert svc["mem_limit"] == svc["memswap_limit"] == "128m"
        assert svc["restart"] == doc["services"]["postgres"]["restart"]
        # A uid and gid of their own (review H1, H2): not root, not the server's 999.
        assert svc["user"] == "64187:64187"
        assert svc["healthcheck"]["test"][0] == "CMD-SHELL"
        assert "-CAfile /etc/pgsteady-exporter/tls/ca.crt" in svc["healthcheck"]["test"][1]
        assert f"--web.config.file={exporters.WEB_CONFIG_MOUNT}" in svc["command"]
        # The exporters' own certificate and key; never the server's key or the app_dir/tls
        # directory (its private/ holds the server's and the verify client's keys).
        sources = [v.split(":")[0] for v in svc["volumes"]]
        assert "/opt/pgsteady/tls/private/exporter.key" in sources
        assert not any(
            src in ("/", "/opt/pgsteady/tls", "/opt/pgsteady/tls/private/server.key")
            for src in sources
        ), sources
    assert pg["ports"] == ["10.0.0.5:9400:9187"]
    assert node["ports"] == ["10.0.0.5:9401:9100"]


def test_postgres_exporter_reaches_the_socket_with_a_password_file() -> None:
    doc = compose()
    pg = doc["services"]["postgres-exporter"]
    assert pg["environment"] == {
        "DATA_SOURCE_URI": "/postgres?host=/var/run/postgresql&sslmode=disable",
        "DATA_SOURCE_USER": "monitor",
        "DATA_SOURCE_PASS_FILE": "/run/secrets/monitor_password_exporter",
    }
    # Its own copy (root:64187 0440), not the server's group-readable file.
    assert pg["secrets"] == ["monitor_password_exporter"]
    assert doc["secrets"]["monitor_password_exporter"] == {
        "file": "/opt/pgsteady/secrets/monitor_password_exporter"
    }
    assert "pgrun:/var/run/postgresql:ro" in pg["volumes"]
    assert "pgrun:/var/run/postgresql" in doc["services"]["postgres"]["volumes"]
    assert doc["volumes"]["pgrun"] == {}


def test_node_exporter_sees_none_of_the_hosts_filesystem() -> None:
    """No bind of / (review H3: docker 20.10 leaves its submounts writable); the
    filesystem collector is off (it would see the container's), the textfile reports the
    host's filesystems instead."""
    node = compose()["services"]["node-exporter"]
    assert not any(v.startswith("/:") for v in node["volumes"]), node["volumes"]
    assert "/opt/pgsteady/state/metrics:/var/lib/pgsteady-metrics:ro" in node["volumes"]
    assert "tmpfs" not in node
    assert not any(a.startswith("--path.rootfs") for a in node["command"])
    assert "--collector.disable-defaults" in node["command"]
    assert "--collector.filesystem" not in node["command"]
    assert "pid" not in node and "network_mode" not in node and "privileged" not in node
    assert "secrets" not in node


def test_metrics_off_leaves_only_the_server() -> None:
    doc = compose(metrics_enabled=False, pgbouncer_enabled=False)
    assert list(doc["services"]) == ["postgres"]
    assert "pgrun" not in doc["volumes"]


def test_web_config_requires_a_verified_client_certificate() -> None:
    conf = yaml.safe_load(exporters.render_web_config())["tls_server_config"]
    assert conf["client_auth_type"] == "RequireAndVerifyClientCert"
    # The metrics CA, not the inventory's CA (whose certificates the hosts' roots hold).
    assert conf["client_ca_file"] == exporters.METRICS_CA_MOUNT
    assert conf["cert_file"] == exporters.EXPORTER_CERT_MOUNT
    assert conf["key_file"] == exporters.EXPORTER_KEY_MOUNT


# --- the textfile writer's configuration and job ------------------------------------------


def test_backup_max_ages_follow_the_schedules() -> None:
    s = build_settings({"backup_schedule": "@hourly"}, FACTS)
    ages = {(b["tool"], b.get("repo")): b["max_age"] for b in exporters.backup_max_ages(s)}
    # hourly pg_dump: 1 h + verify's 1 h grace; pgBackRest: diff Monday-Saturday (2 days
    # from Saturday to Monday) is more frequent than the weekly full
    assert ages == {("pg_dump", None): 7200, ("pgbackrest", "1"): 2 * 86400 + 3600}
    off = build_settings({"backup_enabled": False, "pgbackrest_enabled": False}, FACTS)
    assert exporters.backup_max_ages(off) == []


def test_metrics_job_runs_every_minute_with_its_config() -> None:
    s = build_settings({"compose_project": "shop"}, FACTS)
    job = metrics_job(s)
    assert job.unit == "pgsteady-metrics-shop" and job.schedule == "* * * * *"
    line = [ln for ln in render_cron(job).splitlines() if ln and not ln.startswith("#")][-1]
    assert line.startswith("* * * * * root ")
    assert "/opt/pgsteady/bin/pgsteady-metrics --config /opt/pgsteady/etc/metrics.json" in line
    config = json.loads(exporters.render_writer_config(s))
    assert config["textfile"] == "/opt/pgsteady/state/metrics/pgsteady.prom"
    assert config["certificates"] == {
        "ca": "/opt/pgsteady/tls/ca.crt",
        "postgres": "/opt/pgsteady/tls/server.crt",
    }
    assert config["filesystems"] == [
        "/opt/pgsteady",
        "/opt/pgsteady/backups",
        "/opt/pgsteady/pgbackrest/repo1",
    ]
    assert config["volume"] == "shop_pgdata"


# --- pgsteady-metrics (the host script) -------------------------------------------------


@pytest.fixture(autouse=True)
def _umask_restored() -> Iterator[None]:
    """The writer's main() sets umask 077 for its process: keep it from leaking into the
    test session (later tests write files a non-root server must read)."""
    old = os.umask(0o022)
    os.umask(old)
    yield
    os.umask(old)


@pytest.fixture(scope="module")
def writer() -> ModuleType:
    loader = importlib.machinery.SourceFileLoader("pgsteady_metrics_script", str(WRITER))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


INFO = [
    {
        "name": "main",
        "backup": [
            {"database": {"id": 1, "repo-key": 1}, "timestamp": {"start": 100, "stop": 1000}},
            {"database": {"id": 1, "repo-key": 1}, "timestamp": {"start": 2000, "stop": 2500}},
            {"database": {"id": 1, "repo-key": 2}, "timestamp": {"start": 1500, "stop": 1700}},
        ],
    }
]


def test_pgbackrest_info_gives_the_newest_backup_per_repository(writer: ModuleType) -> None:
    assert writer.pgbackrest_last_success(INFO) == {"1": 2500.0, "2": 1700.0}
    assert writer.pgbackrest_last_success([{"name": "main", "backup": []}]) == {}


def _write_config(tmp_path: Path, docker_output: str, docker_rc: int = 0) -> dict:
    fake = tmp_path / "docker"
    fake.write_text(f"#!/bin/sh\ncat <<'EOF'\n{docker_output}\nEOF\nexit {docker_rc}\n")
    fake.chmod(0o755)
    ca = create_ca("unit")
    cert_pem, _ = issue_server_cert(ca, ["db1"], now=dt.datetime(2030, 1, 1, tzinfo=dt.UTC))
    (tmp_path / "server.crt").write_bytes(cert_pem)
    (tmp_path / "status.json").write_text(
        json.dumps({"last_success": {"time": "2030-01-02T03:04:05+00:00"}})
    )
    (tmp_path / "metrics").mkdir(exist_ok=True)
    return {
        "textfile": str(tmp_path / "metrics" / "pgsteady.prom"),
        "cache": str(tmp_path / "cache.json"),
        "project": 'shop"1',
        "postgres_version": 17,
        "container": "shop-postgres",
        "docker": str(fake),
        "backup_status": str(tmp_path / "status.json"),
        "backups": [
            {"tool": "pg_dump", "max_age": 90000},
            {"tool": "pgbackrest", "repo": "1", "max_age": 180000},
        ],
        "certificates": {"postgres": str(tmp_path / "server.crt")},
    }


def _run(writer: ModuleType, config: dict, tmp_path: Path) -> tuple[int, str]:
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps(config))
    path.chmod(0o600)
    rc = writer.main(["--config", str(path)])
    return rc, Path(config["textfile"]).read_text()


def test_textfile_holds_the_contract_metrics(writer: ModuleType, tmp_path: Path) -> None:
    config = _write_config(tmp_path, json.dumps(INFO))
    rc, text = _run(writer, config, tmp_path)
    assert rc == 0
    cert = x509.load_pem_x509_certificate((tmp_path / "server.crt").read_bytes())
    expires = int(cert.not_valid_after_utc.timestamp())
    backup = int(dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.UTC).timestamp())
    lines = set(text.splitlines())
    assert f'pgsteady_backup_last_success_timestamp_seconds{{tool="pg_dump"}} {backup}' in lines
    assert (
        'pgsteady_backup_last_success_timestamp_seconds{tool="pgbackrest",repo="1"} 2500' in lines
    )
    assert 'pgsteady_backup_max_age_seconds{tool="pgbackrest",repo="1"} 180000' in lines
    assert (
        f'pgsteady_tls_certificate_not_after_timestamp_seconds{{certificate="postgres"}} {expires}'
        in lines
    )
    assert 'pgsteady_info{version="17",project="shop\\"1"} 1' in lines
    assert "pgsteady_textfile_errors 0" in lines
    written = float(
        next(ln for ln in lines if ln.startswith("pgsteady_textfile_timestamp")).split()[1]
    )
    assert abs(written - time.time()) < 60
    st = os.stat(config["textfile"])
    assert stat.S_IMODE(st.st_mode) == 0o644
    assert not Path(config["textfile"] + ".tmp").exists()


def test_a_repository_out_of_reach_keeps_its_last_known_backup(
    writer: ModuleType, tmp_path: Path
) -> None:
    config = _write_config(tmp_path, json.dumps(INFO))
    assert _run(writer, config, tmp_path)[0] == 0
    broken = _write_config(tmp_path, "ERROR: [103]: unable to find a valid repository", 103)
    rc, text = _run(writer, broken, tmp_path)
    assert rc == 1
    assert 'pgsteady_backup_last_success_timestamp_seconds{tool="pgbackrest",repo="1"} 2500' in text
    assert "pgsteady_textfile_errors 1" in text


def test_no_backup_yet_is_zero_not_an_error(writer: ModuleType, tmp_path: Path) -> None:
    config = _write_config(tmp_path, json.dumps([{"name": "main", "backup": []}]))
    (tmp_path / "status.json").unlink()
    rc, text = _run(writer, config, tmp_path)
    assert rc == 0
    assert 'pgsteady_backup_last_success_timestamp_seconds{tool="pg_dump"} 0' in text
    assert 'pgsteady_backup_last_success_timestamp_seconds{tool="pgbackrest",repo="1"} 0' in text


def test_the_first_run_says_since_when_a_backup_is_expected_and_keeps_it(
    writer: ModuleType, tmp_path: Path
) -> None:
    """A new host's alert counts from this time, not from 0 (PostgresBackupTooOld): the
    first run records it per backup, later runs (and a backup made since) keep it."""
    config = _write_config(tmp_path, json.dumps([{"name": "main", "backup": []}]))
    (tmp_path / "status.json").unlink()
    name = "pgsteady_backup_expected_since_timestamp_seconds"

    def since(text: str) -> dict[str, float]:
        return {
            ln.split()[0]: float(ln.split()[1]) for ln in text.splitlines() if ln.startswith(name)
        }

    first = since(_run(writer, config, tmp_path)[1])
    assert set(first) == {f'{name}{{tool="pg_dump"}}', f'{name}{{tool="pgbackrest",repo="1"}}'}
    assert all(abs(v - time.time()) < 60 for v in first.values())
    time.sleep(1.1)
    rc, text = _run(writer, _write_config(tmp_path, json.dumps(INFO)), tmp_path)
    assert rc == 0 and since(text) == first
    assert 'pgsteady_backup_last_success_timestamp_seconds{tool="pgbackrest",repo="1"} 2500' in text


def test_textfile_reports_each_filesystem_once_with_its_paths(
    writer: ModuleType, tmp_path: Path
) -> None:
    """Review H3: root's statvfs replaces node-exporter's view of the host; paths on one
    filesystem (st_dev) are one sample, so a full disk is one alert."""
    config = _write_config(tmp_path, json.dumps(INFO))
    volume = tmp_path / "volume"
    volume.mkdir()
    fake = tmp_path / "docker-volume"
    fake.write_text(f'#!/bin/sh\n[ "$2" = inspect ] && echo {volume}\n')
    fake.chmod(0o755)
    config.update(docker=str(fake), volume="shop_pgdata", filesystems=[str(tmp_path), "/proc"])
    config["backups"] = []
    rc, text = _run(writer, config, tmp_path)
    assert rc == 0, text
    vfs, st = os.statvfs(tmp_path), os.stat(tmp_path)
    dev = f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}"
    lines = set(text.splitlines())
    assert (
        f'pgsteady_filesystem_size_bytes{{device="{dev}",path="{tmp_path}",'
        f'paths="{tmp_path},{volume}"}} {vfs.f_blocks * vfs.f_frsize}' in lines
    )
    proc = os.stat("/proc").st_dev
    assert (
        f'pgsteady_filesystem_avail_bytes{{device="{os.major(proc)}:{os.minor(proc)}",'
        'path="/proc",paths="/proc"} 0' in lines
    )
    assert len([ln for ln in lines if ln.startswith("pgsteady_filesystem_avail_bytes")]) == 2
    # docker out of reach: the volume is an error of the run, the paths are still there
    config["docker"] = str(tmp_path / "no-docker")
    rc, text = _run(writer, config, tmp_path)
    assert rc == 1 and "pgsteady_textfile_errors 1" in text
    assert f'path="{tmp_path}",paths="{tmp_path}"}}' in text


def test_a_config_behind_a_symlink_is_refused(writer: ModuleType, tmp_path: Path) -> None:
    """Review L4: root follows no link to its config (a link is refused, as pgsteady-ctl
    does), even one to a root-owned 0600 file."""
    config = _write_config(tmp_path, json.dumps(INFO))
    real = tmp_path / "metrics.json"
    real.write_text(json.dumps(config))
    real.chmod(0o600)
    link = tmp_path / "link.json"
    link.symlink_to(real)
    assert writer.untrusted(str(link)) == f"{link} is a symbolic link"
    assert writer.main(["--config", str(link)]) == 2
    assert not Path(config["textfile"]).exists()
    with pytest.raises(OSError):
        writer.read_trusted(str(link))  # O_NOFOLLOW: ELOOP
    assert writer.untrusted(str(real)) is None


def test_a_config_others_can_write_is_refused(writer: ModuleType, tmp_path: Path) -> None:
    config = _write_config(tmp_path, json.dumps(INFO))
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps(config))
    path.chmod(0o666)
    assert writer.main(["--config", str(path)]) == 2
    assert not Path(config["textfile"]).exists()


# --- make scrape-config ------------------------------------------------------------------


def test_target_address_prefers_the_bind_address() -> None:
    s = build_settings({"metrics_bind": "10.0.0.5"}, FACTS)
    wild = build_settings({"metrics_bind": "0.0.0.0"}, FACTS)
    v6 = build_settings({"metrics_bind": "fd00::5"}, FACTS)
    h = InventoryHost("db1", {"ssh_hostname": "db1.internal"})
    assert target_address(h, s) == "10.0.0.5"
    assert target_address(h, wild) == "db1.internal"
    assert target_address(InventoryHost("@local", {}), wild) == "127.0.0.1"
    assert target_address(h, v6) == "[fd00::5]"


def test_targets_carry_the_contract_labels() -> None:
    s = build_settings({"metrics_bind": "10.0.0.5", "compose_project": "shop"}, FACTS)
    got = targets([(InventoryHost("db1", {}), s)])
    assert got == [
        {
            "targets": ["10.0.0.5:9187"],
            "labels": {
                "instance": "db1",
                "pgsteady_project": "shop",
                "pgsteady_exporter": "postgres",
            },
        },
        {
            "targets": ["10.0.0.5:9100"],
            "labels": {"instance": "db1", "pgsteady_project": "shop", "pgsteady_exporter": "node"},
        },
    ]


def test_scrape_configs_use_mutual_tls_and_keep_one_exporter_per_job(tmp_path: Path) -> None:
    doc = yaml.safe_load(render_scrape_configs(tmp_path))["scrape_configs"]
    assert [j["job_name"] for j in doc] == ["pgsteady-postgres", "pgsteady-node"]
    for job, exporter in zip(doc, ("postgres", "node"), strict=True):
        assert job["scheme"] == "https"
        assert job["tls_config"] == {
            "ca_file": str(tmp_path / "ca.crt"),
            "cert_file": str(tmp_path / "prometheus.crt"),
            "key_file": str(tmp_path / "prometheus.key"),
        }
        assert job["file_sd_configs"] == [{"files": [str(tmp_path / "targets.json")]}]
        assert job["relabel_configs"] == [
            {"source_labels": ["pgsteady_exporter"], "regex": exporter, "action": "keep"}
        ]


def _inventory(tmp_path: Path, hosts: str) -> Path:
    path = tmp_path / "prod.py"
    path.write_text(hosts)
    return path


def test_generate_issues_a_client_certificate_once(tmp_path: Path) -> None:
    inv = _inventory(
        tmp_path,
        "hosts = [('db1', {'ssh_hostname': 'db1.internal', 'metrics_bind': '10.0.0.5'}),\n"
        "         ('db2', {'metrics_enabled': False})]\n",
    )
    out, written = generate(inv)
    assert out == tmp_path / ".pgsteady" / "prod" / "prometheus"
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    assert stat.S_IMODE((out / "prometheus.key").stat().st_mode) == 0o600
    assert {t["labels"]["instance"] for t in json.loads((out / "targets.json").read_text())} == {
        "db1"
    }
    cert = x509.load_pem_x509_certificate((out / "prometheus.crt").read_bytes())
    ca = x509.load_pem_x509_certificate((out / "ca.crt").read_bytes())
    cert.verify_directly_issued_by(ca)
    # The metrics CA (review H2), not the inventory's CA that issued the hosts' certificates.
    metrics_ca = tmp_path / ".pgsteady" / "prod" / "metrics-ca" / "ca.crt"
    assert (out / "ca.crt").read_bytes() == metrics_ca.read_bytes()
    assert metrics_ca.read_bytes() != (tmp_path / ".pgsteady" / "prod" / "ca.crt").read_bytes()
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]  # clientAuth only
    rules = REPO / "files" / "metrics" / "pgsteady-alerts.yml"
    assert (out / "pgsteady-alerts.yml").read_bytes() == rules.read_bytes()
    header = (out / "scrape-configs.yml").read_text()
    assert "scrape_config_files" not in header and "chown prometheus" in header
    assert generate(inv) == (out, [])  # a second run changes nothing


def test_generate_keeps_an_existing_directorys_mode_and_refuses_a_shared_one(
    tmp_path: Path,
) -> None:
    """Review L5: OUT=<existing dir> is the operator's; its mode is not changed, and a
    directory group or others may write is refused (they could swap the key)."""
    inv = _inventory(tmp_path, "hosts = [('db1', {})]\n")
    mine = tmp_path / "mine"
    mine.mkdir()
    mine.chmod(0o750)
    generate(inv, mine)
    assert stat.S_IMODE(mine.stat().st_mode) == 0o750
    assert stat.S_IMODE((mine / "prometheus.key").stat().st_mode) == 0o600
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(ScrapeConfigError, match="lets group or others write it"):
        generate(inv, shared)
    assert stat.S_IMODE(shared.stat().st_mode) == 0o777
    assert not any(shared.iterdir())


def test_generate_serves_an_inventory_of_own_certificates(tmp_path: Path) -> None:
    """The exporters use the metrics CA whatever the server's certificate: an inventory
    with its own Postgres certificates gets a scrape config too."""
    ca = create_ca("own")
    cert_pem, key_pem = issue_server_cert(ca, ["db1"])
    for name, pem in (("c.pem", cert_pem), ("k.pem", key_pem), ("ca.pem", ca.cert_pem)):
        (tmp_path / name).write_bytes(pem)
    inv = _inventory(
        tmp_path,
        f"hosts = [('db1', {{'postgres_tls_cert_file': '{tmp_path}/c.pem', "
        f"'postgres_tls_key_file': '{tmp_path}/k.pem', "
        f"'postgres_tls_ca_file': '{tmp_path}/ca.pem'}})]\n",
    )
    out, _ = generate(inv)
    assert (out / "ca.crt").read_bytes() != ca.cert_pem


def test_main_reports_an_inventory_without_metrics(tmp_path: Path, capsys) -> None:
    from pgsteady.scrape_config import main

    inv = _inventory(tmp_path, "hosts = [('db1', {'metrics_enabled': False})]\n")
    assert main(["--inventory", str(inv)]) == 2
    assert "no database host with metrics_enabled = True" in capsys.readouterr().err
