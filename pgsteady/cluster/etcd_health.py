"""What ``make verify`` concludes from etcdctl's JSON: each member healthy, a quorum, and
the member list equal to the inventory's etcd hosts (name and peer URL)."""

from __future__ import annotations

import json
from typing import Any

from pgsteady.cluster.etcd import peer_url
from pgsteady.cluster.topology import Cluster

#: etcdctl's calls (after its connection flags), both answered as JSON.
MEMBER_LIST = ("member", "list", "-w", "json")
HEALTH = ("endpoint", "health", "--cluster", "-w", "json")
STATUS = ("endpoint", "status", "--cluster", "-w", "json")


def expected_peers(cluster: Cluster) -> dict[str, str]:
    """The inventory's etcd hosts: name -> peer URL."""
    return {m.name: peer_url(cluster, m) for m in cluster.etcd_members}


def members(member_list_json: str) -> dict[str, list[str]]:
    """name -> peer URLs of ``etcdctl member list -w json`` (unstarted members: name "")."""
    body: dict[str, Any] = json.loads(member_list_json)
    return {m.get("name", ""): sorted(m.get("peerURLs") or []) for m in body.get("members") or []}


def healthy_endpoints(health_json: str) -> dict[str, bool]:
    """endpoint -> health of ``etcdctl endpoint health --cluster -w json``."""
    return {e.get("endpoint", "?"): bool(e.get("health")) for e in json.loads(health_json) or []}


def leader_endpoint(status_json: str) -> str:
    """The raft leader's endpoint in ``etcdctl endpoint status --cluster -w json`` (the one
    whose member ID is the leader its own status names); '' when none is."""
    for e in json.loads(status_json) or []:
        status = e.get("Status") or {}
        member = (status.get("header") or {}).get("member_id")
        if member is not None and member == status.get("leader"):
            return str(e.get("Endpoint", ""))
    return ""


def member_problems(actual: dict[str, list[str]], expected: dict[str, str]) -> list[str]:
    """Differences between etcd's members and ``expected`` (name -> peer URL)."""
    out = []
    for name, url in expected.items():
        if name not in actual:
            out.append(f"{name} ({url}) is in the inventory but not an etcd member")
        elif actual[name] != [url]:
            out.append(f"{name}: peer URLs {actual[name]}, the inventory says {url}")
    for name, urls in actual.items():
        if name not in expected:
            out.append(f"etcd member {name or '(unstarted)'} {urls} is not in the inventory")
    return out


def health_problems(health: dict[str, bool], members_count: int) -> list[str]:
    """Unhealthy endpoints, and a lost quorum (fewer healthy than a majority)."""
    out = [f"{endpoint} is unhealthy" for endpoint, ok in sorted(health.items()) if not ok]
    healthy = sum(health.values())
    if healthy < members_count // 2 + 1:
        out.append(
            f"no quorum: {healthy} of {members_count} members healthy, "
            f"{members_count // 2 + 1} needed"
        )
    elif healthy < members_count:
        out.append(f"{healthy} of {members_count} members healthy (quorum kept)")
    return out
