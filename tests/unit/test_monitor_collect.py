"""monitor.collect: the shell script (run for real against a fake docker), ssh argv, parsing."""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
from pathlib import Path

import pytest

from pgsteady.cluster.status import render_lines
from pgsteady.inventory import InventoryHost
from pgsteady.monitor.collect import (
    END,
    Target,
    collect,
    collect_all,
    host_argv,
    load_targets,
    parse_sections,
    run_on_host,
)
from pgsteady.monitor.model import OK, UNREACHABLE, derive, report
from pgsteady.settings import HostFacts, build_settings

LOCAL = InventoryHost("@local", {})

FAKE_DOCKER = r"""#!/bin/sh
# A stand-in for the docker client: answers the calls the monitor script makes.
case "$1" in
inspect)
    case "$3" in
    *Destination*) echo "$FAKE_VOLUME" ;;
    *) echo '{"state":{"Status":"running","StartedAt":"2027-01-15T07:00:00.5Z",
"Health":{"Status":"healthy"}},"restart_count":4,"image":"img","mounts":[]}' ;;
    esac ;;
exec)
    case "$*" in
    *psql*) echo '{"version":"16.4","version_num":160004,"max_connections":50,
"connections":{"used":5},"databases":{"app":1024},"blocks":{"hit":3,"read":1}}' | tr -d '\n' ;;
    *) echo "unexpected exec: $*" >&2; exit 1 ;;
    esac ;;
logs)
    echo "2027-01-15 07:00:01 GMT [1] LOG:  database system is ready"
    echo "2027-01-15 07:00:02 GMT [9] app@app FATAL:  password authentication failed" >&2 ;;
*) echo "unexpected: $*" >&2; exit 1 ;;
esac
"""


def fake_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Target:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    docker = bindir / "docker"
    docker.write_text(FAKE_DOCKER)
    docker.chmod(docker.stat().st_mode | stat.S_IEXEC)
    volume = tmp_path / "volume"
    volume.mkdir()
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_VOLUME", str(volume))
    app = tmp_path / "app"
    (app / "backups").mkdir(parents=True)
    status = {"last_success": {"time": "2027-01-15T06:00:00+00:00"}, "last_run": {"ok": True}}
    (app / "backups" / "status.json").write_text(json.dumps(status))
    data = {"app_dir": str(app), "compose_project": "fake"}
    return Target(InventoryHost("@local", data), build_settings(data, HostFacts(0, 0)))


def test_script_runs_for_real_and_yields_every_section(tmp_path, monkeypatch):
    target = fake_host(tmp_path, monkeypatch)
    raw = collect(target, timeout=20)
    assert raw["error"] is None, raw
    assert set(raw["sections"]) == {
        "host", "fact_memory", "fact_cpus", "fact_systemd", "inspect", "sql", "data_df",
        "backup_df", "backup_status", "logs", "archiver", "pgbackrest_info", "repo_df",
        "wal_archive_1", "performance", "pooler", "cluster", "cluster_roll", "cluster_adopted",
    }  # fmt: skip
    assert raw["sections"]["cluster"]["out"] == "single"  # no REST API call off clusters
    assert raw["sections"]["cluster_roll"]["out"] == ""  # nor an etcd read
    st = derive(raw, target.settings)
    assert st.cluster is None
    assert st.container.restart_count == 4 and st.container.health == "healthy"
    assert st.postgres.version == "16.4" and st.postgres.connections.used == 5
    assert st.postgres.cache_hit_ratio == 0.75
    assert st.disks["data"].path == str(tmp_path / "volume")
    assert st.disks["backup"].path == str(tmp_path / "app" / "backups")
    assert st.backup.status_found and st.backup.last_run_ok is True
    assert st.log_errors == [
        "2027-01-15 07:00:02 GMT [9] app@app FATAL:  password authentication failed"
    ]
    assert raw["facts"]["cpus"] == os.cpu_count() and raw["facts"]["ram_mb"] > 0
    assert st.hostinfo["cpus"] == os.cpu_count() and "facts_error" not in raw


def test_settings_are_checked_against_the_hosts_facts(tmp_path, monkeypatch):
    target = fake_host(tmp_path, monkeypatch)
    data = {**target.host.data, "postgres_memory_limit": "1000TB"}
    raw = collect(Target(InventoryHost("@local", data), target.settings), timeout=20)
    assert "postgres_memory_limit = '1000TB': above the host's RAM" in raw["facts_error"]
    st = derive(raw, target.settings)
    assert any("settings do not hold on this host" in p for p in st.problems)


def test_missing_container_gives_failing_sections_not_a_crash(tmp_path, monkeypatch):
    target = fake_host(tmp_path, monkeypatch)
    (tmp_path / "bin" / "docker").write_text("#!/bin/sh\necho 'No such object' >&2\nexit 1\n")
    raw = collect(target, timeout=20)
    assert raw["error"] is None
    assert raw["sections"]["inspect"] == {"rc": 1, "out": "", "err": "No such object"}
    st = derive(raw, target.settings)
    assert not st.container.exists and st.failing


def test_parse_sections():
    text = (
        "junk before\n@@pgsteady-section a@@\nline 1\nline 2\n\n@@pgsteady-stderr a 3@@\noops\n"
        "@@pgsteady-section b@@\n\n@@pgsteady-stderr b 0@@\n" + END + "\nafter\n"
    )
    assert parse_sections(text) == {
        "a": {"rc": 3, "out": "line 1\nline 2", "err": "oops"},
        "b": {"rc": 0, "out": "", "err": ""},
    }


def test_host_argv_local_ssh_and_sudo():
    assert host_argv(LOCAL, ["sh", "-s"]) == ["sh", "-s"]
    ssh = InventoryHost("db1", {"ssh_user": "ops", "ssh_port": 2222, "ssh_connect_timeout": 3})
    argv = host_argv(ssh, ["docker", "restart", "a b"])
    assert argv[:3] == ["ssh", "-T", "-o"] and "ConnectTimeout=3" in argv
    assert argv[-2:] == ["ops@db1", "docker restart 'a b'"]
    sudo = InventoryHost("db1", {"_sudo": True})
    assert host_argv(sudo, ["sh", "-s"], timeout=2)[-4:] == ["db1", "sudo", "-n", "sh -s"]
    assert "ConnectTimeout=2" in host_argv(sudo, ["true"], timeout=2)


def test_run_on_host_bounds_time_and_reports_missing_programs():
    assert run_on_host(LOCAL, ["sleep", "5"], timeout=0.3).returncode == 124
    assert run_on_host(LOCAL, ["/nonexistent/prog"], timeout=5).returncode == 127


@pytest.mark.skipif(not shutil.which("ssh"), reason="needs an ssh client")
def test_closed_ssh_port_is_unreachable_quickly():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends
    host = InventoryHost("127.0.0.1", {"ssh_port": port, "ssh_connect_timeout": 2})
    settings = build_settings({}, HostFacts(0, 0))
    raw = collect_all([Target(host, settings)], timeout=10)[0]
    assert raw["error"].startswith("ssh failed:") and "refused" in raw["error"]
    assert derive(raw, settings).status == UNREACHABLE


def test_load_targets_builds_settings_and_reports_invalid_ones(tmp_path):
    inventory = tmp_path / "inv.py"
    inventory.write_text(
        "hosts = [('@local', {'compose_project': 'shop'}),"
        " ('db9', {'postgres_port': 'x', 'ssh_port': 2})]\n"
    )
    good, bad = load_targets(inventory)
    assert good.settings.container_name == "shop-postgres" and good.error is None
    assert bad.settings is None and "postgres_port" in bad.error
    raw = collect(bad)
    assert derive(raw, None).error == bad.error and derive(raw, None).status != OK


def test_an_adoption_in_progress_reaches_status_from_the_marker_and_the_seeds_record(
    tmp_path, monkeypatch
):
    """make cluster-adopt's marker (deploy machine) names the seed; the seed's collect
    script says whether its record exists: status shows the adoption until it does."""
    fake_host(tmp_path, monkeypatch)
    app = tmp_path / "app"
    data = {
        "app_dir": str(app),
        "compose_project": "fake",
        "postgres_cluster_name": "main",
        "pgbackrest_enabled": False,
        "postgres_allowed_networks": ["10.0.0.0/24"],
    }
    inventory = tmp_path / "inv.py"
    inventory.write_text(f"hosts = [('@local', {data!r})]\n")
    (target,) = load_targets(inventory)
    assert target.error is None and target.adopt_seed == ""
    marker = tmp_path / ".pgsteady" / "inv" / "clusters" / "main" / "adopt-seed"
    marker.parent.mkdir(parents=True)
    marker.write_text("@local\n")
    (target,) = load_targets(inventory)
    assert target.adopt_seed == "@local"
    (app / "state").mkdir()
    raw = collect(target, timeout=20)
    assert raw["sections"]["cluster_adopted"]["out"] == "no"
    st = derive(raw, target.settings)
    assert st.cluster is not None and "its adoption is not recorded" in str(st.cluster.adoption)
    assert any("adoption in progress: make cluster-adopt marked @local" in p for p in st.problems)
    assert report([st])["cluster"]["adoption"] == st.cluster.adoption
    assert f"adoption in progress: {st.cluster.adoption}" in render_lines(st.cluster)
    (app / "state" / "adopted").write_text("@local\n")
    done = derive(collect(target, timeout=20), target.settings)
    assert done.cluster is not None and done.cluster.adoption is None
    assert not any("adoption" in p for p in done.problems)
