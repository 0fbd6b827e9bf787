"""make status's cluster section: absent on single hosts; on a cluster member the
members' roles, timelines and lag as GET /cluster says, and no running leader is critical."""

from __future__ import annotations

import json
from types import SimpleNamespace

from rich.console import Console

from pgsteady.cluster import status as cluster_status
from pgsteady.cluster.patroni import container_paths
from pgsteady.monitor import model, view
from tests.unit.test_monitor_model import sample_raw

CLUSTER = {
    "members": [
        {"name": "pg1", "role": "leader", "state": "running", "host": "10.0.0.11",
         "timeline": 2},
        {"name": "pg2", "role": "replica", "state": "running", "host": "10.0.0.12",
         "timeline": 2, "lag": 0},
    ]
}  # fmt: skip


def render(hosts: list[model.HostStatus]) -> str:
    console = Console(width=160, record=True)
    with console.capture() as cap:
        console.print(view.render_status(hosts))
    return cap.get()


def test_single_host_report_has_no_cluster_section() -> None:
    st = model.derive(sample_raw(), None)
    assert st.cluster is None
    doc = model.report([st])
    assert "cluster" not in doc and "cluster" not in doc["hosts"][0]
    assert "leader:" not in render([st])


def test_member_report_names_each_members_role_and_the_leader() -> None:
    st = model.derive(sample_raw(cluster=json.dumps(CLUSTER)), None)
    doc = model.report([st])
    assert doc["cluster"]["leader"] == "pg1"
    members = {m["name"]: m for m in doc["cluster"]["members"]}
    assert members["pg1"]["role"] == "primary" and members["pg2"]["role"] == "replica"
    assert members["pg2"]["lag_bytes"] == 0 and members["pg2"]["timeline"] == 2
    assert st.status == model.OK, st.problems
    assert "cluster" not in doc["hosts"][0]
    text = render([st])
    assert "leader: pg1" in text and "pg2" in text and "replica" in text


def test_no_running_leader_or_unreadable_api_is_critical() -> None:
    stopped = {"members": [dict(CLUSTER["members"][0], state="stopped"), CLUSTER["members"][1]]}
    st = model.derive(sample_raw(cluster=json.dumps(stopped)), None)
    assert st.failing and any("cluster: no running leader" in p for p in st.problems)
    broken = model.derive(sample_raw(cluster=None), None)  # the section failed (rc 1)
    assert broken.failing and broken.cluster is not None
    assert model.report([broken])["cluster"]["error"].startswith("GET /cluster failed")


def test_script_values_off_and_on_a_cluster() -> None:
    single = cluster_status.script_values(SimpleNamespace(postgres_cluster_name=None), "10.0.0.11")
    assert single["CLUSTER_URL"] == ""
    member = SimpleNamespace(
        postgres_cluster_name="main", postgres_cluster_address=None, patroni_rest_port=8008
    )
    values = cluster_status.script_values(member, "10.0.0.11")
    assert values["CLUSTER_URL"] == "https://10.0.0.11:8008/cluster"
    assert values["CLUSTER_CA"] == container_paths(15).ca_file == container_paths(17).ca_file
    v6 = cluster_status.script_values(member, "fd00::1")["CLUSTER_URL"]
    assert v6 == "https://[fd00::1]:8008/cluster"
