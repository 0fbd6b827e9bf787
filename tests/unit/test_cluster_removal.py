"""make remove-member's decisions (pgsteady/cluster/removal.py): who may leave, the etcd
arithmetic, the refusals against the running cluster, and the order of the steps."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

from pgsteady.cluster import removal
from pgsteady.cluster.operations import POLL_S, OperationError
from pgsteady.cluster.patroni import MEMBER_SLOTS_TTL_S
from pgsteady.cluster.removal import Removal, etcd_after, plan, remove, slot_name
from pgsteady.cluster.status import ClusterStatus, MemberStatus
from pgsteady.cluster.topology import Cluster, cluster_from_mapping


def _cluster(n: int) -> Cluster:
    members = [{"name": f"pg-{i}", "address": f"10.0.0.{i}"} for i in range(1, n + 1)]
    return cluster_from_mapping({"postgres_cluster_name": "main", "members": members})


def test_the_fourth_of_four_may_leave_and_etcd_stays_on_the_first_three() -> None:
    r = plan(_cluster(4), "pg-4")
    assert r.remaining == ("pg-1", "pg-2", "pg-3")
    assert r.etcd_members == ("pg-1", "pg-2", "pg-3")
    assert r.slot == "pg_4"


@pytest.mark.parametrize("host", ["pg-1", "pg-2", "pg-3"])
def test_an_etcd_member_is_refused_naming_who_would_join_and_who_may_leave(host: str) -> None:
    with pytest.raises(OperationError) as exc:
        plan(_cluster(4), host)
    text = str(exc.value)
    assert f"HOST = {host!r}" in text
    assert "etcd members of cluster 'main' (pg-1, pg-2, pg-3)" in text
    assert "pg-4 would have to join etcd" in text
    assert text.endswith("accepted: pg-4")


def test_three_members_is_the_floor() -> None:
    with pytest.raises(OperationError, match="would keep 2 members; 3 is the smallest") as exc:
        plan(_cluster(3), "pg-3")
    assert "accepted: none while the cluster has this size" in str(exc.value)


def test_a_host_outside_the_cluster_is_refused_listing_the_members() -> None:
    with pytest.raises(OperationError, match=r"HOST = 'pg-9': not a member .* pg-1, pg-2"):
        plan(_cluster(4), "pg-9")


def test_seven_to_six_would_shrink_etcd_and_is_refused() -> None:
    assert etcd_after([f"h{i}" for i in range(7)], "h6") == (
        ["h0", "h1", "h2", "h3", "h4"],
        ["h0", "h1", "h2"],
    )
    with pytest.raises(OperationError, match="etcd would shrink from 5 to 3 members") as exc:
        plan(_cluster(7), "pg-7")
    assert "dropping pg-4, pg-5" in str(exc.value)
    assert plan(_cluster(8), "pg-8").etcd_members == tuple(f"pg-{i}" for i in range(1, 6))


def test_slot_names_follow_patroni() -> None:
    assert slot_name("db-a.example") == "db_a_example"


def _member(name: str, role: str, state: str = "streaming", sync: bool = False) -> MemberStatus:
    return MemberStatus(name, role, state, name, 5432, 1, 0, sync=sync)


class FakePatroni:
    """A stand-in for the remaining members' REST API: GET /cluster and /config, PATCH."""

    def __init__(self, members: list[MemberStatus], slot_on: list[str]) -> None:
        self.members = members
        self.config: dict[str, Any] = {"ttl": 24}
        self.patches: list[dict[str, Any]] = []
        self.slot_on = slot_on
        self.log: list[str] = []

    def cluster(self) -> ClusterStatus:
        return ClusterStatus(members=list(self.members))

    def call(self, member: str, path: str, method: str = "GET", body: Any = None):
        assert path == "/config"
        if method == "PATCH":
            self.patches.append(body)
            for k, v in body.items():
                if v is None:
                    self.config.pop(k, None)
                else:
                    self.config[k] = v
            self.log.append(f"patch {body}")
        return 200, json.dumps(self.config)

    def holders(self) -> list[str]:
        if self.config.get("member_slots_ttl") == 0:
            self.slot_on.clear()  # Patroni drops the retained slot once the ttl is 0
        return list(self.slot_on)


R = Removal("main", "pg-4", ("pg-1", "pg-2", "pg-3"), ("pg-1", "pg-2", "pg-3"))


def _members(leader: str = "pg-1", pg4: str = "streaming") -> list[MemberStatus]:
    out = [
        _member(n, "primary", "running") if n == leader else _member(n, "replica", sync=n == "pg-2")
        for n in ("pg-1", "pg-2", "pg-3")
    ]
    if leader == "pg-4":
        out[0] = _member("pg-1", "replica")
    return out + [_member("pg-4", "primary" if leader == "pg-4" else "replica", pg4)]


def test_removal_stops_waits_for_the_key_drops_the_slot_and_restores_the_ttl() -> None:
    api = FakePatroni(_members(), ["pg-1", "pg-2"])

    def stop() -> None:
        api.log.append("stop")
        api.members = [m for m in api.members if m.name != "pg-4"]

    message = remove(api, R, stop, api.holders, 5)  # type: ignore[arg-type]
    assert api.log == ["stop", "patch {'member_slots_ttl': 0}", "patch {'member_slots_ttl': 1800}"]
    assert api.config["member_slots_ttl"] == MEMBER_SLOTS_TTL_S and api.config["ttl"] == 24
    assert "pg-4 left cluster main" in message and "delete pg-4 from the inventory" in message


def test_a_ttl_left_at_0_by_a_killed_removal_is_set_back_by_the_next() -> None:
    """A removal killed while it held member_slots_ttl at 0 left 0 in the DCS (R10 L1):
    the next removal sets the value the deploy converges, not the 0 it found. (The
    deploy's side: tests/integration/test_cluster_dcs_drift_live.py.)"""
    api = FakePatroni(_members(), ["pg-1"])
    api.config["member_slots_ttl"] = 0

    def stop() -> None:
        api.members = [m for m in api.members if m.name != "pg-4"]

    remove(api, R, stop, api.holders, 5)  # type: ignore[arg-type]
    assert api.config["member_slots_ttl"] == MEMBER_SLOTS_TTL_S == 1800


def test_the_roll_lock_is_renewed_before_each_change_and_while_waiting() -> None:
    """remove-member holds the roll lock (R10 L2): ``keepalive`` runs before the stop and
    in every wait; a lock that is no longer ours (keepalive raises) stops the removal
    before it changes anything."""
    api = FakePatroni(_members(), ["pg-1"])

    def stop() -> None:
        api.log.append("stop")
        api.members = [m for m in api.members if m.name != "pg-4"]

    def keepalive() -> None:
        api.log.append("keepalive")

    remove(api, R, stop, api.holders, 5, keepalive)  # type: ignore[arg-type]
    assert api.log[:3] == ["keepalive", "stop", "keepalive"], api.log
    assert api.log.index("patch {'member_slots_ttl': 0}") > api.log.index("keepalive", 3)

    def lost() -> None:
        raise OperationError("rolling change stopped: the roll lock is no longer ours")

    api = FakePatroni(_members(), ["pg-1"])
    with pytest.raises(OperationError, match="no longer ours"):
        remove(api, R, lambda: pytest.fail("stopped"), api.holders, 5, lost)  # type: ignore[arg-type]
    assert api.patches == []


def test_the_leader_is_refused_naming_the_synchronous_standby() -> None:
    api = FakePatroni(_members(leader="pg-4"), [])
    api.members[1] = _member("pg-2", "replica", sync=True)
    with pytest.raises(OperationError, match=r"pg-4 leads .* \(make switchover TO=pg-2\)"):
        remove(api, R, lambda: pytest.fail("stopped a leader"), api.holders, 5)  # type: ignore[arg-type]


def test_a_remaining_member_down_is_refused_before_any_change() -> None:
    api = FakePatroni(_members(), [])
    api.members[2] = _member("pg-3", "replica", "stopped")
    with pytest.raises(OperationError, match="pg-3 not running"):
        remove(api, R, lambda: pytest.fail("stopped"), api.holders, 5)  # type: ignore[arg-type]
    assert api.patches == []


def test_gone_fails_naming_why_while_the_member_still_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(removal, "GONE_MARGIN_S", 0)
    api = FakePatroni(_members(), [])
    api.config.update(ttl=1, loop_wait=0)
    with pytest.raises(OperationError, match="GONE=1 is for a host that is down") as exc:
        remove(api, R, None, api.holders, 1)  # type: ignore[arg-type]
    assert "pg-4 is still replica/streaming" in str(exc.value)
    assert api.patches == []


def test_gone_waits_for_a_dead_members_key_to_expire() -> None:
    api = FakePatroni(_members(), ["pg-1"])
    looks = iter([True, True, False])

    def cluster() -> ClusterStatus:
        keep = next(looks, False)
        return ClusterStatus(members=[m for m in api.members if keep or m.name != "pg-4"])

    api.cluster = cluster  # type: ignore[method-assign]
    assert "pg-4 left cluster main" in remove(api, R, None, api.holders, 10)  # type: ignore[arg-type]
    assert api.patches == [{"member_slots_ttl": 0}, {"member_slots_ttl": MEMBER_SLOTS_TTL_S}]


def test_gone_waits_as_long_as_the_configured_ttl_says_bounded() -> None:
    """R10 L3: GONE=1 waited --timeout (120 s) although patroni_ttl may be up to 3600 s:
    the wait is the DCS's ttl + loop_wait + a margin, at least --timeout, bounded."""
    wait, said = removal.gone_wait({"ttl": 3600, "loop_wait": 60}, 120)
    assert wait == 3690 and said == (
        "waiting up to 3690 s for the dead member's key to expire "
        "(Patroni's ttl 3600 s + loop_wait 60 s + 30 s)"
    )
    assert removal.gone_wait({"ttl": 600, "loop_wait": 10}, 120)[0] == 640
    wait, said = removal.gone_wait({"ttl": 24, "loop_wait": 8}, 120)
    assert wait == 120 and "(--timeout, more than Patroni's ttl 24 s" in said
    wait, said = removal.gone_wait({"ttl": 86400, "loop_wait": 10}, 120)  # edited by hand
    assert wait == removal.GONE_MAX_WAIT_S == 3690 and said.endswith("bounded at 3690 s)")
    assert removal.gone_wait({}, 0)[0] == 30 + 10 + 30  # Patroni's own defaults
    assert removal.gone_wait({"ttl": "bad", "loop_wait": None}, 0)[0] == 70


def test_gone_uses_the_derived_wait_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    """The key goes after 2 polls, longer than --timeout: the ttl-derived wait holds."""
    monkeypatch.setattr(removal, "GONE_MARGIN_S", 0)
    api = FakePatroni(_members(), [])
    api.config.update(ttl=3 * POLL_S, loop_wait=0)
    looks = iter([True, True, True])

    def cluster() -> ClusterStatus:
        keep = next(looks, False)
        return ClusterStatus(members=[m for m in api.members if keep or m.name != "pg-4"])

    api.cluster = cluster  # type: ignore[method-assign]
    said: list[str] = []
    message = remove(api, R, None, api.holders, 0.1, say=said.append)  # type: ignore[arg-type]
    assert "pg-4 left cluster main" in message
    assert said == [
        f"pg-4: waiting up to {3 * POLL_S:g} s for the dead member's key to expire "
        f"(Patroni's ttl {3 * POLL_S:g} s + loop_wait 0 s + 0 s)"
    ]


def test_a_member_key_that_never_goes_times_out_naming_it() -> None:
    api = FakePatroni(_members(pg4="stopped"), [])
    with pytest.raises(OperationError, match="pg-4 leaving the DCS: not done after 1 s"):
        remove(api, R, lambda: None, api.holders, 1)  # type: ignore[arg-type]


def test_the_cli_refuses_an_etcd_host_from_a_real_inventory_before_any_ssh(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from pgsteady.cli import main

    hosts = [
        (f"pg-{i}", {"ssh_hostname": f"10.9.9.{i}", "postgres_cluster_name": "main"})
        for i in range(1, 5)
    ]
    inventory = tmp_path / "inv.py"
    inventory.write_text(f"hosts = ({hosts!r}, {{}})\n")
    assert main(["remove-member", "pg-2", "--inventory", str(inventory)]) == 1
    err = capsys.readouterr().err
    assert "HOST = 'pg-2': it runs one of the 3 etcd members" in err, err
    assert err.strip().endswith("accepted: pg-4"), err


def test_the_slot_read_is_a_pinned_superuser_session(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The members' slot read runs as the superuser, so it pins its session
    (SUPERUSER_PGOPTIONS) and names every function's schema: the app may own an
    overload of ``count`` in a schema a default search_path reaches."""
    import subprocess

    from pgsteady.cluster import removal_cli
    from pgsteady.cluster.tunnels import cluster_members
    from pgsteady.inventory import load_inventory
    from pgsteady.postgres.session import SUPERUSER_PGOPTIONS, unqualified_calls

    hosts = [
        (f"pg-{i}", {"ssh_hostname": f"10.9.9.{i}", "postgres_cluster_name": "main"})
        for i in range(1, 4)
    ]
    inventory = tmp_path / "inv.py"
    inventory.write_text(f"hosts = ({hosts!r}, {{}})\n")
    members = cluster_members(load_inventory(str(inventory)), None)
    answers = {"pg-1": (0, "0\n"), "pg-2": (0, "1\n"), "pg-3": (2, "")}
    commands: list[str] = []

    def ssh(m: Any, command: str, timeout: float) -> subprocess.CompletedProcess[str]:
        commands.append(command)
        code, out = answers[m.name]
        return subprocess.CompletedProcess([], code, out, "")

    monkeypatch.setattr(removal_cli, "_ssh", ssh)
    assert removal_cli.holders(members, R) == ["pg-2", "pg-3 (unreadable)"]
    assert len(commands) == 3
    for command in commands:
        assert f"PGOPTIONS={SUPERUSER_PGOPTIONS}" in command, command
        assert " -u postgres pgsteady-postgres psql -X -Atq -v ON_ERROR_STOP=1 " in command
        sql = command.split(" -c ", 1)[1]
        assert "pg_catalog.count(*)" in sql and unqualified_calls(sql) == [], sql


_DOCKER = """#!/bin/sh
case $1 in
ps) echo c1; echo c2 ;;
update) echo "$@" >> "$LOG" ;;
inspect) shift 3; for c in "$@"; do
  if grep -q "update --restart=no.*$c" "$LOG" && [ "$c" != "$STUCK" ]; then echo "/$c=no";
  else echo "/$c=always"; fi; done ;;
esac
"""


@pytest.mark.parametrize("stuck", ["", "c2"])
def test_the_stop_reads_the_restart_policy_back(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, stuck: str
) -> None:
    """A container whose restart policy is still set after the update (an update that
    did not run as root, a container that appeared meanwhile) fails the removal: at the
    next boot dockerd would start it again with stale data."""
    from pgsteady.cluster import removal_cli
    from pgsteady.cluster.tunnels import ClusterMember
    from pgsteady.inventory import InventoryHost

    app_dir = tmp_path / "app"
    (app_dir / "bin").mkdir(parents=True)
    for name, text in (("bin/docker", _DOCKER), ("app/bin/pgsteady-ctl", "#!/bin/sh\nexit 0\n")):
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        path.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    monkeypatch.setenv("LOG", str(tmp_path / "log"))
    monkeypatch.setenv("STUCK", stuck)
    host = InventoryHost("@local", {"app_dir": str(app_dir), "postgres_cluster_name": "main"})
    member = ClusterMember(host, "10.9.9.4", 8008)
    if stuck:
        with pytest.raises(OperationError, match="restart policy is not no: /c2=always"):
            removal_cli.stop_for_good(member)
    else:
        removal_cli.stop_for_good(member)
    assert (tmp_path / "log").read_text().split() == ["update", "--restart=no", "c1", "c2"]


def test_the_stop_ends_before_the_roll_locks_lease_can_lapse(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The stop renews nothing (R11 L4): the worst case is a renewal that reached etcd
    one lock call before it returned, the stop starting a keep-alive period later and
    running its whole timeout, then the next renewal taking a lock call; the lease must
    outlive all of it."""
    import subprocess

    from pgsteady.cluster import removal_cli, roll_driver, roll_lock
    from pgsteady.cluster.tunnels import ClusterMember
    from pgsteady.inventory import InventoryHost

    timeouts: list[float] = []

    def ssh(m: Any, command: str, timeout: float) -> subprocess.CompletedProcess[str]:
        timeouts.append(timeout)
        return subprocess.CompletedProcess([], 0, "", "")

    monkeypatch.setattr(removal_cli, "_ssh", ssh)
    host = InventoryHost("@local", {"postgres_cluster_name": "main"})
    removal_cli.stop_for_good(ClusterMember(host, "10.9.9.4", 8008))
    (stop,) = timeouts
    call = removal_cli.LOCK_CALL_TIMEOUT_S
    assert call + roll_driver.KEEPALIVE_S + stop + call < roll_lock.TTL_S
