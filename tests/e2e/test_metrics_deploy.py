"""The Prometheus exporters of a deployed stack (issue 17, items 1 and 2).

One stack converged by the real pyinfra CLI: both exporters answer over HTTPS only to a
client certificate of the inventory's metrics CA (the host's verify client, and the one
`make scrape-config` issues for Prometheus), never to one of the inventory's CA (the
host's Postgres certificate); postgres-exporter runs as a uid of its own and reaches
Postgres as the monitoring role only (``pg_up 1``; ``/probe`` as the superuser or the
app role is refused), node-exporter serves pgsteady's textfile metrics (with the host's
filesystems) and sees nothing of the host's /; a second converge changes nothing;
``metrics_enabled = False`` removes the exporter containers.
"""

from __future__ import annotations

import json
import os
import re
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import deploy_or_fail
from tests.support.stack import REPO, Stack, docker
from tests.support.verify_run import make_verify

pytestmark = pytest.mark.timeout(900)

EXPORTERS = ("postgres-exporter", "node-exporter")


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    s = deploy_or_fail(Stack())
    yield s
    s.destroy()


def fetch(url: str, ca: Path, cert: Path | None = None, key: Path | None = None) -> str:
    ctx = ssl.create_default_context(cafile=str(ca))
    if cert is not None:
        ctx.load_cert_chain(str(cert), str(key))
    with urllib.request.urlopen(url, context=ctx, timeout=10) as resp:
        return resp.read().decode()


def host_client(stack: Stack) -> tuple[Path, Path, Path]:
    """(metrics CA, certificate, key): the host's verify client of the metrics CA."""
    tls = stack.app_dir / "tls"
    return tls / "metrics-ca.crt", tls / "metrics-client.crt", tls / "private/metrics-client.key"


def wait_healthy(name: str, timeout: float = 90) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        state = json.loads(docker("inspect", name).stdout)[0]
        if (state["State"].get("Health") or {}).get("Status") == "healthy":
            return state
        if time.monotonic() > deadline:
            raise AssertionError(f"{name} not healthy: {state['State']}")
        time.sleep(1)


def samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    """(labels without empty ones, value) of every sample of ``name``: node-exporter gives
    each sample of a family every label of it, empty where absent (Prometheus drops those)."""
    out = []
    for line in text.splitlines():
        m = re.fullmatch(rf"{name}(?:\{{(.*)\}})? (\S+)", line)
        if m:
            pairs = re.findall(r'(\w+)="([^"]*)"', m[1] or "")
            out.append(({k: v for k, v in pairs if v}, float(m[2])))
    return out


def metric_value(text: str, name: str, **labels: str) -> float:
    """The value of the sample of ``name`` with exactly ``labels`` (empty ones ignored)."""
    found = [v for lab, v in samples(text, name) if not labels or lab == labels]
    assert found, f"{name}{labels} not in:\n{text[:3000]}"
    return found[0]


def test_exporters_are_hardened_healthy_containers(stack: Stack) -> None:
    for exporter in EXPORTERS:
        info = wait_healthy(f"{stack.name}-{exporter}")
        cfg, host = info["Config"], info["HostConfig"]
        # A uid and gid of their own: not root, not the server's 999 (peer login, its files).
        assert cfg["User"] == "64187:64187", cfg["User"]
        ids = docker("exec", f"{stack.name}-{exporter}", "id").stdout.split()
        assert ids == ["uid=64187", "gid=64187", "groups=64187"], ids
        # The running exporter process itself, as the host's kernel sees it.
        status = Path(f"/proc/{info['State']['Pid']}/status").read_text().splitlines()
        creds = {ln.split(":")[0]: ln.split(":")[1].split() for ln in status if ":" in ln}
        assert creds["Uid"] == ["64187"] * 4 and creds["Gid"] == ["64187"] * 4, creds
        assert creds["Groups"] == ["64187"], creds["Groups"]
        mounts = {m["Source"]: m["Destination"] for m in info["Mounts"]}
        assert "/" not in mounts, mounts  # no host root: :ro is not recursive on docker 20.10
        assert str(stack.app_dir / "tls/private/server.key") not in mounts, mounts
        assert host["ReadonlyRootfs"] is True
        assert "no-new-privileges:true" in host["SecurityOpt"]
        assert host["CapDrop"] == ["ALL"]
        assert host["Memory"] == 128 * 1024 * 1024
        assert host["RestartPolicy"]["Name"] == "always"
        published = [b for bs in host["PortBindings"].values() for b in bs]
        assert [b["HostIp"] for b in published] == ["127.0.0.1"]
    # The monitor password reaches the exporter as a file only.
    password = stack.secret("monitor_password")
    info = json.loads(docker("inspect", f"{stack.name}-postgres-exporter").stdout)[0]
    assert password not in json.dumps(info["Config"]) + json.dumps(info["Args"])
    assert password not in (stack.app_dir / "docker-compose.yml").read_text()
    # node-exporter sees none of the host's filesystem: the textfile directory only.
    node = json.loads(docker("inspect", f"{stack.name}-node-exporter").stdout)[0]
    binds = [m["Source"] for m in node["Mounts"] if m["Type"] == "bind"]
    assert str(stack.app_dir / "state/metrics") in binds
    assert not any(b in ("/", "/proc", "/sys", "/run") for b in binds), binds
    assert node["HostConfig"]["PidMode"] in ("", "private")
    assert node["HostConfig"]["NetworkMode"] != "host"


def test_postgres_exporter_logs_in_and_reports_pg_up(stack: Stack) -> None:
    ca, cert, key = host_client(stack)
    wait_healthy(f"{stack.name}-postgres-exporter")
    url = f"https://127.0.0.1:{stack.postgres_exporter_port}/metrics"
    text = fetch(url, ca, cert, key)
    assert metric_value(text, "pg_up") == 1.0
    assert metric_value(text, "pg_settings_max_connections") > 0


def test_probe_reaches_no_role_but_the_monitoring_one(stack: Stack) -> None:
    """postgres-exporter 0.17's /probe takes any DSN: on the server's socket as uid 999 it
    logged in as the superuser by peer (review H1). Its own uid has no user in the server's
    container, so peer fails; the app role without its password fails too."""
    ca, cert, key = host_client(stack)
    wait_healthy(f"{stack.name}-postgres-exporter")
    base = f"https://127.0.0.1:{stack.postgres_exporter_port}/probe?target="
    for user, db in (("postgres", "postgres"), ("app", "app")):
        dsn = f"postgresql:///{db}?host=/var/run/postgresql%26user={user}"
        assert metric_value(fetch(base + dsn, ca, cert, key), "pg_up") == 0.0, user
    # The server refused the superuser by peer: no user of the exporter's uid exists.
    logs = docker("logs", "--since", "2m", stack.container)
    server_log = logs.stdout + logs.stderr
    assert 'Peer authentication failed for user "postgres"' in server_log, server_log[-2000:]
    # The exporter's own DSN (the monitoring role, its password file) still works.
    text = fetch(f"https://127.0.0.1:{stack.postgres_exporter_port}/metrics", ca, cert, key)
    assert metric_value(text, "pg_up") == 1.0


@pytest.mark.parametrize("exporter", ["postgres", "node"])
def test_a_certificate_of_the_inventory_ca_is_refused(stack: Stack, exporter: str) -> None:
    """The host's Postgres certificate (inventory CA, clientAuth) opens no exporter: they
    admit the metrics CA's clients only."""
    tls = stack.app_dir / "tls"
    port = stack.postgres_exporter_port if exporter == "postgres" else stack.node_exporter_port
    wait_healthy(f"{stack.name}-{exporter}-exporter")
    with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionError)):
        fetch(
            f"https://127.0.0.1:{port}/metrics",
            tls / "metrics-ca.crt",
            tls / "server.crt",
            tls / "private/server.key",
        )


def test_node_exporter_serves_textfile_and_filesystem_metrics(stack: Stack) -> None:
    ca, cert, key = host_client(stack)
    wait_healthy(f"{stack.name}-node-exporter")
    text = fetch(f"https://localhost:{stack.node_exporter_port}/metrics", ca, cert, key)
    written = metric_value(text, "pgsteady_textfile_timestamp_seconds")
    assert abs(time.time() - written) < 300
    assert metric_value(text, "pgsteady_textfile_errors") == 0
    # backup_schedule is daily: one day between backups, plus the grace period
    max_age = metric_value(text, "pgsteady_backup_max_age_seconds", tool="pg_dump")
    assert max_age == 86400 + 3600
    # the deploy's stanza-create took no backup yet: 0 = none known (the alert fires)
    last = metric_value(
        text, "pgsteady_backup_last_success_timestamp_seconds", tool="pgbackrest", repo="1"
    )
    assert last == 0 or abs(time.time() - last) < 3600
    not_after = metric_value(
        text, "pgsteady_tls_certificate_not_after_timestamp_seconds", certificate="postgres"
    )
    assert not_after > time.time() + 300 * 86400  # the host's certificate: a year
    assert metric_value(text, "pgsteady_info", version="17", project=stack.name) == 1
    # The host's filesystems come from root's textfile; node's collector is off.
    assert not samples(text, "node_filesystem_avail_bytes")
    volume = docker("volume", "inspect", "-f", "{{.Mountpoint}}", f"{stack.name}_pgdata")
    found = samples(text, "pgsteady_filesystem_size_bytes")
    paths = {p for lab, _ in found for p in lab["paths"].split(",")}
    assert {str(stack.app_dir), str(stack.app_dir / "backups"), volume.stdout.strip()} <= paths
    st = stack.app_dir.stat()
    device = f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}"
    size = [(lab, v) for lab, v in found if str(stack.app_dir) in lab["paths"].split(",")]
    assert len(size) == 1 and size[0][0]["device"] == device, found
    assert len({lab["device"] for lab, _ in found}) == len(found)  # one per filesystem
    avail = metric_value(text, "pgsteady_filesystem_avail_bytes", **size[0][0])
    assert 0 < avail <= size[0][1]


@pytest.mark.parametrize("exporter", ["postgres", "node"])
def test_a_request_without_client_certificate_is_refused(stack: Stack, exporter: str) -> None:
    ca, _, _ = host_client(stack)
    port = stack.postgres_exporter_port if exporter == "postgres" else stack.node_exporter_port
    with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionError)):
        fetch(f"https://127.0.0.1:{port}/metrics", ca)
    # Nor does plain HTTP get metrics.
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
        reply = sock.recv(4096)
    assert b"pg_up" not in reply and b"node_" not in reply


def test_scrape_config_client_certificate_is_admitted(stack: Stack, tmp_path: Path) -> None:
    out = tmp_path / "prometheus"
    cmd = [sys.executable, "-m", "pgsteady.scrape_config", "--inventory", str(stack.inventory)]
    proc = subprocess.run([*cmd, "--out", str(out)], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert (out / "prometheus.key").stat().st_mode & 0o777 == 0o600
    assert (out / "ca.crt").read_bytes() == (stack.app_dir / "tls/metrics-ca.crt").read_bytes()
    assert (out / "pgsteady-alerts.yml").read_bytes() == (
        REPO / "files/metrics/pgsteady-alerts.yml"
    ).read_bytes()
    targets = json.loads((out / "targets.json").read_text())
    ports = {t["labels"]["pgsteady_exporter"]: t["targets"][0] for t in targets}
    assert ports == {
        "postgres": f"127.0.0.1:{stack.postgres_exporter_port}",
        "node": f"127.0.0.1:{stack.node_exporter_port}",
    }
    assert {t["labels"]["pgsteady_project"] for t in targets} == {stack.name}
    text = fetch(
        f"https://{ports['postgres']}/metrics",
        out / "ca.crt",
        out / "prometheus.crt",
        out / "prometheus.key",
    )
    assert metric_value(text, "pg_up") == 1.0
    again = subprocess.run([*cmd, "--out", str(out)], cwd=REPO, capture_output=True, text=True)
    assert again.returncode == 0 and "up to date" in again.stdout, again.stdout


def test_verify_checks_the_exporters(stack: Stack, tmp_path: Path) -> None:
    """`make verify`'s metrics checks pass for postgres-exporter and the textfile, and fail
    with a fix line for a stopped node-exporter."""
    docker("stop", f"{stack.name}-node-exporter")
    try:
        run = make_verify(stack.inventory, tmp_path / "junit.xml")
    finally:
        docker("start", f"{stack.name}-node-exporter")
    ours = {k: v for k, v in run.failed.items() if k.startswith("metrics/")}
    assert set(ours) == {
        "metrics/exporter_healthy[node-exporter]",
        "metrics/node_exporter_serves_textfile",
        # a port that refuses connections proves nothing about client certificates
        "metrics/client_certificate_required[node-exporter]",
    }, run.output[-3000:]
    assert "make deploy" in ours["metrics/exporter_healthy[node-exporter]"][1]
    assert not any(k.startswith("metrics/") for k in run.skipped), run.skipped
    wait_healthy(f"{stack.name}-node-exporter")


def test_second_deploy_changes_nothing(stack: Stack) -> None:
    result = stack.deploy()
    assert result.returncode == 0, result.output[-3000:]
    assert result.changed == 0, result.changed_operations()


def test_bookworm_exporters_serve_postgres_15() -> None:
    """PG 15's image is bookworm's: postgres-exporter 0.11.1 and node-exporter 1.5 take the
    same flags, DSN and web config as trixie's 0.17.1 and 1.9."""
    old = deploy_or_fail(Stack(data={"postgres_version": 15}))
    try:
        ca, cert, key = host_client(old)
        wait_healthy(f"{old.name}-postgres-exporter")
        url = f"https://127.0.0.1:{old.postgres_exporter_port}/metrics"
        text = fetch(url, ca, cert, key)
        assert metric_value(text, "pg_up") == 1.0
        assert 'version="0.11.1"' in text  # postgres_exporter_build_info
        wait_healthy(f"{old.name}-node-exporter")
        node = fetch(f"https://127.0.0.1:{old.node_exporter_port}/metrics", ca, cert, key)
        assert metric_value(node, "pgsteady_info", version="15", project=old.name) == 1
        with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionError)):
            fetch(url, ca)
    finally:
        old.destroy()


def test_metrics_disabled_removes_the_exporters(stack: Stack) -> None:
    """Last: turns the module's stack's metrics off."""
    result = stack.deploy(metrics_enabled=False)
    assert result.returncode == 0, result.output[-3000:]
    for exporter in EXPORTERS:
        gone = docker("inspect", f"{stack.name}-{exporter}", check=False)
        assert gone.returncode != 0, f"{exporter} still exists"
    assert not any("metrics" in p.name for p in stack.scheduled_files())
    stack.wait_healthy()
