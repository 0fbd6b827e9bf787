"""The operations of an adoption's run (M6): the seed's step finishes an interrupted
adoption idempotently and records it last; a member that does not run yet starts only
after a check that the seed leads. The decision itself: tests/unit/test_cluster_adopt.py."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from pgsteady.cluster import adopt
from pgsteady.cluster.topology import cluster_from_mapping
from tasks import cluster_adopt, cluster_member
from tasks.cluster_member import Pending, start_member
from tasks.patroni_exec import has_leader
from tests.support.pyinfra_plan import plan
from tests.unit.test_tasks_postgres import settings

CLUSTER = cluster_from_mapping(
    {
        "postgres_cluster_name": "lab",
        "members": [{"name": f"lab{i}", "address": f"10.1.0.{i + 1}"} for i in (1, 2, 3)],
    }
)
S = settings(
    postgres_cluster_name="lab",
    postgres_version=17,
    app_dir="/srv/pg",
    pgbackrest_enabled=False,
    postgres_allowed_networks=["10.1.0.0/24"],
)
STATE = "/srv/pg/state"


def _start(monkeypatch: pytest.MonkeyPatch, name: str, adopting: bool, seed_turn: bool) -> Any:
    member = CLUSTER.member(name)
    monkeypatch.setattr(cluster_member, "context", lambda s: (CLUSTER, member))
    monkeypatch.setattr(cluster_member, "adopting", lambda s: adopting)
    monkeypatch.setattr(cluster_adopt, "member_settings", lambda n: S)
    pending = Pending("docker compose", [], running=False)
    _, p = plan(lambda: start_member(S, pending, seed_turn), facts={})
    return p


def test_the_seeds_step_stops_only_a_server_without_patroni_and_records_last(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    p = _start(monkeypatch, "lab1", adopting=True, seed_turn=True)
    (op,) = p.ops
    stop, up, wait, roles, record = op.commands
    assert stop.endswith(f"docker stop --time 120 {S.container_name}")
    assert up == "/srv/pg/bin/pgsteady-ctl up"
    assert "no leader after 300 s" in wait
    assert "CREATE ROLE replicator" in roles
    assert record.endswith(
        f"mv -f /srv/pg/state/.{adopt.ADOPTED}.new /srv/pg/state/{adopt.ADOPTED}"
    )
    assert record.startswith("umask 022; ")


def test_a_member_checks_that_the_adopting_seed_leads_before_it_starts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    p = _start(monkeypatch, "lab2", adopting=True, seed_turn=False)
    assert [op.operation for op in p.ops] == ["python.call", "server.shell"]
    assert p.names[0] == "Check that the adopting seed lab1 leads before this member starts"
    assert p.ops[1].commands == ["/srv/pg/bin/pgsteady-ctl up"]


def test_no_check_once_the_cluster_is_adopted(monkeypatch: pytest.MonkeyPatch) -> None:
    p = _start(monkeypatch, "lab2", adopting=False, seed_turn=False)
    assert [op.operation for op in p.ops] == ["server.shell"]


@pytest.mark.parametrize(
    ("listing", "leads"),
    [
        ([{"Member": "lab1", "Role": "Leader", "State": "running"}], True),
        ([{"Member": "lab1", "Role": "Replica", "State": "running"}], False),
        ([], False),
    ],
)
def test_has_leader_reads_patronictl_json(listing: list[dict[str, str]], leads: bool) -> None:
    assert has_leader(json.dumps(listing)) is leads


@pytest.mark.parametrize("text", ["", "Error: no such container", "[{", "{}"])
def test_no_answer_is_no_leader(text: str) -> None:
    assert not has_leader(text)


#: The docker client as the seed's first command meets it: FAKE_STATE says whether its
#: container runs Patroni (its DCS reachable or not), runs the single host's server, or is
#: gone; each call is logged.
FAKE_DOCKER = """#!/bin/sh
echo "$*" >> "$FAKE_LOG"
case "$*" in *Config.Cmd*) cmd=1 ;; *) cmd= ;; esac
case "$1:$FAKE_STATE" in
exec:patroni) exit 0 ;;
exec:*) echo "exec: patronictl list failed" >&2; exit 1 ;;
inspect:gone) echo "Error: No such object" >&2; exit 1 ;;
inspect:patroni*) [ -n "$cmd" ] && echo '["patroni"]' || echo .; exit 0 ;;
inspect:*) [ -n "$cmd" ] && echo '["postgres","-c","config_file=/etc/pg.conf"]' || echo .; exit 0 ;;
stop:gone) echo "Error: No such container" >&2; exit 1 ;;
stop:*) exit 0 ;;
esac
exit 2
"""


@pytest.mark.parametrize(
    ("state", "stopped"),
    [
        ("single", True),  # the single host's server: stopped, freeing postgres_port
        ("patroni", False),  # a rerun: Patroni runs on the data already
        ("patroni-dcs-down", False),  # patronictl fails (etcd flaky): Patroni still runs
        ("gone", False),  # a run killed while compose replaced the container
    ],
)
def test_the_seeds_first_command_stops_only_the_single_hosts_server(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, state: str, stopped: bool
) -> None:
    first = _start(monkeypatch, "lab1", adopting=True, seed_turn=True).ops[0].commands[0]
    (tmp_path / "docker").write_text(FAKE_DOCKER)
    (tmp_path / "docker").chmod(0o755)
    log = tmp_path / "calls"
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin", "FAKE_STATE": state, "FAKE_LOG": str(log)}
    proc = subprocess.run(["sh", "-c", first], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    calls = log.read_text().splitlines()
    assert any(c.startswith("stop ") for c in calls) is stopped, calls


@pytest.mark.parametrize("unrecorded", [True, False])
def test_the_seed_records_an_adoption_that_predates_the_record(
    monkeypatch: pytest.MonkeyPatch, unrecorded: bool
) -> None:
    """R11 L2: the seed of a cluster adopted before records existed writes its record
    once (then make status no longer shows an adoption in progress)."""
    member = CLUSTER.member("lab1")
    monkeypatch.setattr(cluster_member, "context", lambda s: (CLUSTER, member))
    monkeypatch.setattr(cluster_member, "is_seed", lambda s: True)
    monkeypatch.setattr(cluster_member, "adoption_unrecorded", lambda s: unrecorded)
    facts = {"FileContents": None, "PatroniDcsConfig": None, "FileState": None, "File": None}
    _, p = plan(lambda: cluster_member.converge_dcs(S), facts=facts)
    name = "Write the seed's adoption record (its adoption predates records)"
    assert (name in p.names) is unrecorded
    if unrecorded:
        (command,) = p.op(name).commands
        assert command.endswith(f"mv -f {STATE}/.{adopt.ADOPTED}.new {STATE}/{adopt.ADOPTED}")
