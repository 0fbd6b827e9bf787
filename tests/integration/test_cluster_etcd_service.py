"""The deploy's etcd pieces against 3 real etcd members (issue 15, M2): the service's argv
with the first-start values from state/etcd-initial.env only, the RBAC bootstrap exactly
as the deploy runs it (shell lines, passwords on stdin from 0600 files; re-runnable when
cut short before ``auth enable``), and verify's health, quorum and member-list checks."""

from __future__ import annotations

import os
import secrets
import subprocess
import time
from pathlib import Path

import pytest

from pgsteady.cluster import etcd, etcd_health
from pgsteady.cluster import etcd_service as svc
from pgsteady.cluster.topology import Cluster, cluster_from_mapping
from pgsteady.settings import HostFacts, Settings, build_settings
from tests.support.cluster_binaries import require
from tests.support.etcd_lab import ADDRESSES, EtcdLab, free_port, write_pki


def _cluster() -> Cluster:
    return cluster_from_mapping(
        {
            "postgres_cluster_name": "svc",
            "members": [{"name": f"e{i}", "address": a} for i, a in enumerate(ADDRESSES, 1)],
            "etcd_client_port": free_port(),
            "etcd_peer_port": free_port(),
            "patroni_rest_port": free_port(),
            "postgres_member_port": free_port(),
            "etcd_heartbeat_interval_ms": 250,
            "etcd_election_timeout_ms": 2500,
        }
    )


def _env_file(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if line)


@pytest.fixture
def lab(tmp_path: Path):
    etcd_bin, etcdctl_bin = require("etcd"), require("etcdctl")
    cluster = _cluster()
    ca = write_pki(tmp_path, cluster)
    passwords = {"root": secrets.token_urlsafe(24), "patroni": secrets.token_urlsafe(24)}
    lab = EtcdLab(cluster, tmp_path, etcd_bin, etcdctl_bin, secrets.token_hex(8), passwords, ca)
    env_text = svc.initial_env(cluster, lab.token)
    try:
        for m in cluster.etcd_members:
            argv = svc.serve_args(cluster, m, lab.paths(m.name))
            assert not any(a.startswith("--initial-cluster") for a in argv)
            log = (tmp_path / f"{m.name}.log").open("ab")
            lab.procs[m.name] = subprocess.Popen(
                [etcd_bin, *argv[1:]],
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
                env={"PATH": "/usr/bin:/bin", **_env_file(env_text)},
            )
        deadline = time.monotonic() + 60
        while lab.ctl("endpoint", "health").stderr.count("is healthy") < 3:
            assert time.monotonic() < deadline, "the 3 members never became healthy"
            time.sleep(0.5)
        yield lab
    finally:
        for name in list(lab.procs):
            lab.stop(name)


def _settings(app_dir: Path) -> Settings:
    secrets_dir = app_dir / "secrets" / "etcd"
    secrets_dir.mkdir(parents=True, mode=0o700)
    (app_dir / "state").mkdir()
    data = {
        "postgres_cluster_name": "svc",
        "app_dir": str(app_dir),
        # what a cluster refuses today (pgsteady.settings_checks); etcd needs none of it
        "pgbackrest_enabled": False,
        "pgbouncer_enabled": False,
        "metrics_enabled": False,
        "postgres_allowed_networks": ["10.0.0.0/24"],
    }
    return build_settings(data, HostFacts(4096, 2))


def _password_files(lab: EtcdLab, s: Settings) -> None:
    """The etcd passwords as the deploy leaves them on the bootstrap host (0600)."""
    for name, password in lab.passwords.items():
        path = Path(svc.secrets_dir(s)) / f"{name}_password"
        path.write_text(password + "\n")
        os.chmod(path, 0o600)


def _run(lines: list[str]) -> subprocess.CompletedProcess[str]:
    script = "set -e\n" + "\n".join(lines)
    return subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=120)


def test_bootstrap_as_the_deploy_runs_it_then_auth_gates_every_key(
    lab: EtcdLab, tmp_path: Path
) -> None:
    app = tmp_path / "app"
    s = _settings(app)
    _password_files(lab, s)
    ctl = etcd.etcdctl_base(
        etcd.client_urls(lab.cluster),
        str(tmp_path / "ca.crt"),
        str(tmp_path / "client.crt"),
        str(tmp_path / "client.key"),
    )
    ctl = [lab.etcdctl_bin, *ctl[1:], "--command-timeout=5s"]
    lines = svc.bootstrap_commands(s, lab.cluster, ctl)
    assert not any(p in line for line in lines for p in lab.passwords.values())
    # a run cut short after the root user (before "auth enable") is simply run again
    first = _run(lines[:3])
    assert first.returncode == 0, first.stderr
    assert not (app / "state" / svc.AUTH_DONE).exists()
    again = _run(lines)
    assert again.returncode == 0, again.stderr
    assert (app / "state" / svc.AUTH_DONE).exists()

    # auth is on: a client certificate alone reads nothing; Patroni's user only its prefix
    assert lab.ctl("get", "/service/svc/x").returncode != 0
    assert lab.ctl("put", "/service/svc/x", "1", user="patroni").returncode == 0
    outside = lab.ctl("put", "/service/other/x", "1", user="patroni")
    assert outside.returncode != 0 and "permission denied" in outside.stderr
    assert lab.ctl("put", "/anything", "1", user="root").returncode == 0
    # Patroni's user may list the members (its etcd3 client does, to find endpoints)
    assert lab.ctl("member", "list", user="patroni").returncode == 0
    # the password is the one from the file (a wrong one is refused)
    lab.passwords["patroni"] = "wrong"
    assert lab.ctl("get", "/service/svc/x", user="patroni").returncode != 0


def test_bootstrap_replaces_a_user_and_role_made_before_it(lab: EtcdLab, tmp_path: Path) -> None:
    """R8 L3: a ``patroni`` user made before the bootstrap (another password, an extra
    role granting everything) and Patroni's role with an extra permission end with
    pgsteady's password, the one role, and only the prefix grant. Before, "get, otherwise
    add" kept both."""
    app = tmp_path / "app"
    s = _settings(app)
    _password_files(lab, s)
    role = etcd.patroni_role(lab.cluster)
    planted = [
        ("user", "add", "patroni", "--interactive=false"),
        ("role", "add", "everything"),
        ("role", "grant-permission", "everything", "--prefix=true", "readwrite", "/"),
        ("user", "grant-role", "patroni", "everything"),
        ("role", "add", role),
        ("role", "grant-permission", role, "--prefix=true", "readwrite", "/service/other/"),
    ]
    for args in planted:
        proc = lab.ctl(*args, stdin="planted-password\n")
        assert proc.returncode == 0, (args, proc.stderr)
    ctl = etcd.etcdctl_base(
        etcd.client_urls(lab.cluster),
        str(tmp_path / "ca.crt"),
        str(tmp_path / "client.crt"),
        str(tmp_path / "client.key"),
    )
    done = _run(svc.bootstrap_commands(s, lab.cluster, [lab.etcdctl_bin, *ctl[1:]]))
    assert done.returncode == 0, done.stderr

    user = lab.ctl("user", "get", "patroni", user="root")
    assert user.returncode == 0, user.stderr
    assert user.stdout.split("Roles:")[1].split() == [role], user.stdout
    perms = lab.ctl("role", "get", role, user="root")
    assert perms.returncode == 0, perms.stderr
    grants = [line.strip() for line in perms.stdout.splitlines() if line.startswith("\t")]
    prefix = lab.cluster.prefix
    assert grants == [f"[{prefix}, /service/svc0) (prefix {prefix})"] * 2, perms.stdout
    # the password is pgsteady's (the planted one is refused); the grant is the prefix's
    assert lab.ctl("put", lab.cluster.prefix + "x", "1", user="patroni").returncode == 0
    outside = lab.ctl("put", "/service/other/x", "1", user="patroni")
    assert "permission denied" in outside.stderr, outside.stderr
    lab.passwords["patroni"] = "planted-password"
    assert lab.ctl("get", lab.cluster.prefix + "x", user="patroni").returncode != 0


def _health_once_settled(lab: EtcdLab, wanted: str, timeout: float = 30) -> list[str]:
    """verify's health problems, re-read until the last one is ``wanted`` or time is up."""
    deadline = time.monotonic() + timeout
    while True:
        health = lab.ctl(*etcd_health.HEALTH)
        problems = etcd_health.health_problems(etcd_health.healthy_endpoints(health.stdout), 3)
        if problems[-1:] == [wanted] or time.monotonic() > deadline:
            return problems
        time.sleep(0.5)


def test_verify_sees_health_quorum_and_the_inventory_member_list(lab: EtcdLab) -> None:
    cluster = lab.cluster
    expected = etcd_health.expected_peers(cluster)
    listed = lab.ctl(*etcd_health.MEMBER_LIST)
    assert listed.returncode == 0, listed.stderr
    actual = etcd_health.members(listed.stdout)
    assert etcd_health.member_problems(actual, expected) == []
    # a member the inventory no longer has, and one it has that etcd lacks, are both named
    moved = {**{k: v for k, v in expected.items() if k != "e3"}, "e4": "https://127.0.0.9:1"}
    problems = etcd_health.member_problems(actual, moved)
    assert any(p.startswith("e4 ") for p in problems) and any("e3" in p for p in problems)

    health = lab.ctl(*etcd_health.HEALTH)
    assert health.returncode == 0, health.stderr
    assert etcd_health.health_problems(etcd_health.healthy_endpoints(health.stdout), 3) == []
    # the raft leader, as the lab's failover trials record it: one of the healthy endpoints
    status = lab.ctl(*etcd_health.STATUS)
    assert status.returncode == 0, status.stderr
    endpoints = etcd_health.healthy_endpoints(health.stdout)
    assert etcd_health.leader_endpoint(status.stdout) in endpoints
    lab.stop("e3")
    # When e3 led, the other two elect a leader first; until then every member answers
    # unhealthy (no linearizable read). Quorum is kept once the election ends.
    problems = _health_once_settled(lab, "2 of 3 members healthy (quorum kept)")
    assert problems[-1] == "2 of 3 members healthy (quorum kept)", problems
    lab.stop("e2")
    health = lab.ctl(*etcd_health.HEALTH)
    problems = etcd_health.health_problems(etcd_health.healthy_endpoints(health.stdout), 3)
    assert any(p.startswith("no quorum: ") for p in problems), problems
