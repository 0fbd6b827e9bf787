"""etcd: on a cluster's etcd host, the member runs confined and healthy, every member of the
cluster answers (a quorum at least), the member list is the inventory's etcd hosts (name and
peer URL), and auth is on (the member's own certificate, without a password, reads nothing).

Skipped on a single host (no postgres_cluster_name) and on a member that runs no etcd.
etcdctl runs inside the etcd container with the member's certificate; no password is used.
"""

from __future__ import annotations

import shlex
import time
from typing import TYPE_CHECKING, Any

import pytest

from pgsteady.cluster import etcd_health
from pgsteady.cluster import etcd_service as svc
from pgsteady.settings import Settings
from pgsteady.verify import VerifyContext, check

if TYPE_CHECKING:
    from conftest import Host

STARTING_WAIT = 60


@pytest.fixture(scope="module", autouse=True)
def _enabled(ctx: VerifyContext, s: Settings) -> None:
    if s.postgres_cluster_name is None:
        pytest.skip("not a cluster member (no postgres_cluster_name)")
    if ctx.host not in ctx.etcd_peers:
        pytest.skip(
            f"{ctx.host} runs no etcd (the cluster's etcd hosts: {', '.join(ctx.etcd_peers)})"
        )


def _ctl(on: Host, s: Settings, *args: str) -> Any:
    argv = ["docker", "exec", svc.container_name(s), *svc.local_ctl(s.etcd_client_port), *args]
    return on.run(shlex.join(argv))


@pytest.mark.fix("{deploy} (starts etcd with the stack)")
def test_healthy(on: Host, s: Settings) -> None:
    name = svc.container_name(s)
    deadline = time.monotonic() + STARTING_WAIT
    while True:
        info = on.inspect("container", name)
        check(info is not None, f"container {name} does not exist")
        state: dict[str, Any] = info["State"]  # type: ignore[index]
        health = (state.get("Health") or {}).get("Status")
        if health != "starting" or time.monotonic() > deadline:
            break
        time.sleep(1)
    check(
        state.get("Running") and health == "healthy",
        f"{name} is {state.get('Status')} (health: {health}); see docker logs {name}",
    )


def test_confined(on: Host, s: Settings) -> None:
    """Its own uid, read-only root, no capabilities, no new privileges, a memory limit."""
    name = svc.container_name(s)
    info = on.inspect("container", name)
    if info is None:
        pytest.skip(f"container {name} does not exist (see etcd/healthy)")
    user, hc = info["Config"].get("User") or "0", info["HostConfig"]
    want = f"{svc.ETCD_UID}:{svc.ETCD_UID}"
    problems = [
        *([f"runs as {user}, not {want}"] if user != want else []),
        *([] if hc.get("ReadonlyRootfs") else ["writable root filesystem"]),
        *([] if hc.get("CapDrop") == ["ALL"] else ["capabilities not dropped"]),
        *([] if "no-new-privileges:true" in (hc.get("SecurityOpt") or []) else ["new privs"]),
        *([] if hc.get("Memory") else ["no memory limit"]),
    ]
    check(not problems, f"{name}: {', '.join(problems)}")


@pytest.mark.fix("start the stopped members: {deploy}; see docs/cluster.md (etcd)")
def test_quorum(on: Host, s: Settings, ctx: VerifyContext) -> None:
    res = _ctl(on, s, *etcd_health.HEALTH)
    health = etcd_health.healthy_endpoints(res.stdout) if res.stdout.strip() else {}
    problems = etcd_health.health_problems(health, len(ctx.etcd_peers))
    check(not problems, "; ".join(problems) + (f" ({res.stderr.strip()})" if res.rc else ""))


def test_members_match_the_inventory(on: Host, s: Settings, ctx: VerifyContext) -> None:
    res = _ctl(on, s, *etcd_health.MEMBER_LIST)
    check(res.rc == 0, f"etcdctl member list failed: {res.stderr.strip()}")
    problems = etcd_health.member_problems(etcd_health.members(res.stdout), ctx.etcd_peers)
    check(not problems, "; ".join(problems))


@pytest.mark.fix("{deploy} (bootstraps etcd's users and enables auth)")
def test_auth_on(on: Host, s: Settings) -> None:
    """A client certificate alone (no password) reads no key of the cluster."""
    res = _ctl(on, s, "get", "--prefix", "--keys-only", "/")
    check(res.rc != 0, "etcd answered a read without a password: auth is off")
