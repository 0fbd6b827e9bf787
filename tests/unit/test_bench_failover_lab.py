"""bench.failover_lab and pgsteady.lab.cluster_backend: the lab's fault kinds, its
inventory data, reading a lab inventory and the page's section. The trials themselves
run in tests/lab/test_cluster_lab_chaos.py on a real lab cluster."""

from pathlib import Path

import pytest

from bench import config
from bench.failover_lab import LAB_ORDER, etcd_leader_split, lab_data, lab_kinds, section
from pgsteady.lab import failover
from pgsteady.lab.cluster_backend import TIMINGS, _quote, from_inventory, read_inventory
from pgsteady.lab.engine import LabError
from pgsteady.lab.failover_trial import run_trial
from pgsteady.lab.recipe import render_inventory
from pgsteady.settings import Settings


def test_every_fault_of_the_issue_is_a_lab_kind_and_new_ones_move_the_leader() -> None:
    assert set(LAB_ORDER) == set(failover.LAB_KINDS) | {
        "postmaster_kill", "primary_pause", "etcd_member_lost", "etcd_quorum_lost"
    }  # fmt: skip
    assert set(failover.LAB_KINDS) <= failover.NEW_INSTANCE
    assert {"host_power_loss", "host_isolated"} <= failover.NEW_LEADER
    assert not set(failover.LAB_KINDS) & set(failover.KINDS)  # the process cluster's own


def test_kinds_all_or_a_list_in_run_order_and_unknown_refused_by_name() -> None:
    assert lab_kinds("all") == LAB_ORDER
    assert lab_kinds("host_isolated,container_kill") == ("container_kill", "host_isolated")
    with pytest.raises(ValueError, match="'primary_kill'"):
        lab_kinds("primary_kill")


def test_run_trial_refuses_an_unknown_kind_before_touching_the_cluster() -> None:
    with pytest.raises(ValueError, match="'unplug'"):
        run_trial(None, "unplug")  # type: ignore[arg-type]


def test_lab_data_profiles_are_valid_settings_and_tight_is_tighter() -> None:
    default = Settings(**lab_data("default", False))
    tight = Settings(**lab_data("tight", True))
    assert default.patroni_ttl == Settings().patroni_ttl  # the default profile is Settings'
    assert tight.patroni_ttl < default.patroni_ttl and tight.postgres_synchronous_mode
    assert set(TIMINGS) == {"default", "tight"}
    with pytest.raises(ValueError, match="'fast'"):
        lab_data("fast", False)


def test_the_lab_part_is_a_bench_part_and_quick_runs_one_round() -> None:
    assert "failover_lab" in config.PARTS
    assert config.QUICK["failover_lab_trials"] == 1
    assert config.from_args(["--failover-lab-kinds", "host_isolated"]).failover_lab_kinds == (
        "host_isolated"
    )


def test_a_password_is_quoted_for_a_libpq_connection_string() -> None:
    assert _quote("a b'c\\d") == "'a b\\'c\\\\d'"


def test_the_lab_inventory_is_read_as_literals(tmp_path: Path) -> None:
    data = {
        "ssh_hostname": "10.9.0.10",
        "postgres_tls_ca_dir": str(tmp_path / "ca"),
        "postgres_cluster_name": "lab",
        "compose_project": "labm",
        "ssh_user": "root",
        "ssh_key": "/lab/key",
        "ssh_known_hosts_file": "/lab/known_hosts",
    }
    hosts = [("lab-1", data), ("lab-2", {**data, "ssh_hostname": "10.9.0.11"})]
    inventory = tmp_path / "inventory.py"
    inventory.write_text(render_inventory("lab", hosts))
    assert read_inventory(inventory) == ("lab", hosts)
    cluster = from_inventory(inventory)
    assert [(h.name, h.ip) for h in cluster.hosts] == [
        ("lab-1", "10.9.0.10"),
        ("lab-2", "10.9.0.11"),
    ]
    assert cluster.settings.compose_project == "labm" and cluster.ca_dir == tmp_path / "ca"
    inventory.write_text(
        render_inventory("lab", [("lab-1", {**data, "postgres_cluster_name": None})])
    )
    with pytest.raises(LabError, match="no cluster"):
        from_inventory(inventory)
    inventory.write_text("import os\nhosts = [os.system('true')]\n")
    with pytest.raises(ValueError):  # never executed: not a literal
        read_inventory(inventory)


def test_the_section_lists_each_kind_with_its_figures() -> None:
    kind = {"trials": 3, "whole_again": 3, "seconds": {"p50": 20.0, "p95": 25.0, "max": 26.0},
            "longest_gap_seconds": {"p50": 21.0, "p95": 26.0, "max": 27.0},
            "lost_per_trial": [0, 2, 0], "split_brain_trials": 0,
            "probe_lost_per_trial": [0, 0, 0]}  # fmt: skip
    fo = {"where": "lab", "versions": {"patroni": "patroni 4.0.7"},
          "timings": {"ttl": 24, "loop_wait": 4, "retry_timeout": 10}, "synchronous_mode": False,
          "trials_per_kind": 3, "load": {"start": [1, 1, 1], "end": [2, 2, 2]}, "cpus": 2,
          "minutes": 30.0, "kinds": {"host_isolated": kind}}  # fmt: skip
    text = "\n".join(section(fo))
    assert (
        "| `host_isolated` | 3/3 | 20.0 / 25.0 / 26.0 | 21.0 / 26.0 / 27.0 | 0, 2, 0 | 0 |" in text
    )
    assert "asynchronous" in text and "24/4/10" in text
    assert "worst p95 25.0 s (`host_isolated`), goal ≤ 30 s: met" in text
    kind["seconds"]["p95"] = 31.5
    assert "goal ≤ 30 s: missed by 1.5 s" in "\n".join(section(fo))


def test_lost_primary_gaps_are_split_by_where_etcd_led_at_the_fault() -> None:
    def trial(kind: str, seconds: float | None, etcd_leader: str) -> dict[str, object]:
        return {"kind": kind, "seconds": seconds, "leader_before": "lab-1",
                "etcd_leader_at_fault": etcd_leader}  # fmt: skip

    trials = [
        trial("host_power_loss", 33.0, "lab-1"),
        trial("host_power_loss", 32.0, "lab-1"),
        trial("host_power_loss", 25.0, "lab-2"),
        trial("host_power_loss", None, "lab-3"),  # writes never resumed: no gap to place
        trial("host_isolated", 24.0, ""),  # no etcd leader recorded
        trial("container_kill", 4.0, "lab-1"),  # not a lost-primary kind
    ]
    split = etcd_leader_split(trials)
    assert set(split) == {"host_power_loss"}
    same = split["host_power_loss"]["etcd_leader_on_old_primary"]
    other = split["host_power_loss"]["etcd_leader_elsewhere"]
    assert (same["n"], same["max"], other["n"], other["max"]) == (2, 33.0, 1, 25.0)
    kind = {"trials": 4, "whole_again": 4, "seconds": {"p50": 30.0, "p95": 33.0, "max": 33.0},
            "longest_gap_seconds": {"p50": 30.0, "p95": 33.0, "max": 33.0},
            "lost_per_trial": [0] * 4, "split_brain_trials": 0,
            "probe_lost_per_trial": [0] * 4}  # fmt: skip
    fo = {"where": "lab", "versions": {"patroni": "patroni 4.0.7"},
          "timings": {"ttl": 24, "loop_wait": 4, "retry_timeout": 10}, "synchronous_mode": True,
          "trials_per_kind": 4, "load": {"start": [1, 1, 1], "end": [2, 2, 2]}, "cpus": 2,
          "minutes": 30.0, "kinds": {"host_power_loss": kind},
          "etcd_leader_split": split}  # fmt: skip
    text = "\n".join(section(fo))
    assert "was on the old primary's host: 32.5 / 33.0 / 33.0 (n=2)" in text
    assert "when it was elsewhere: 25.0 / 25.0 / 25.0 (n=1)" in text

    assert "goal ≤ 30 s: missed by 3.0 s" in text
    assert "Why missed: every trial whose old primary's host did not hold" in text
    assert "(worst 25.0 s)" in text
    fo["etcd_leader_split"]["host_power_loss"]["etcd_leader_elsewhere"]["max"] = 31.0
    assert "Why missed" not in "\n".join(section(fo))  # a fast-mode trial missed it too
