"""etcd_health's reading of etcdctl's JSON (shapes as etcd 3.4 prints them)."""

from __future__ import annotations

import json

from pgsteady.cluster.etcd_health import leader_endpoint


def _status(endpoint: str, member: int, leader: int) -> dict[str, object]:
    header = {"cluster_id": 13708158670603175327, "member_id": member, "raft_term": 2}
    return {"Endpoint": endpoint, "Status": {"header": header, "leader": leader, "raftTerm": 2}}


def test_the_leader_is_the_endpoint_whose_member_id_each_status_names() -> None:
    lead = 4165956710192132393
    body = [
        _status("https://10.0.0.2:2379", 4349385003459553216, lead),
        _status("https://10.0.0.3:2379", lead, lead),
        _status("https://10.0.0.4:2379", 9916825894595801594, lead),
    ]
    assert leader_endpoint(json.dumps(body)) == "https://10.0.0.3:2379"


def test_no_leader_among_the_answers_is_an_empty_endpoint() -> None:
    # the leader itself did not answer, or no election has ended (leader 0)
    assert leader_endpoint(json.dumps([_status("https://10.0.0.2:2379", 7, 9)])) == ""
    assert leader_endpoint(json.dumps([_status("https://10.0.0.2:2379", 7, 0)])) == ""
    assert leader_endpoint("[]") == ""
