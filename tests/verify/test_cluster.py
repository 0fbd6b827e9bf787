"""cluster: on a Patroni cluster's member, exactly one running leader, every member of the
inventory's cluster a replica streaming within postgres_replica_max_lag, no inactive
replication slot and archiving healthy on the primary (pg_stat_archiver).

Skipped on a single host (no postgres_cluster_name: the cluster settings land with
milestone M2/M3). The verdicts are pgsteady.cluster.health's, proven failing on real
faults against a live cluster in tests/integration/test_cluster_operations_live.py.
``GET /cluster`` is read inside the member's container (Patroni's python3, the
container's CA, the member's certificate: the REST API requires one; no password); the
leader-side checks run on the leader's host only, as the superuser with search_path pinned.
"""

from __future__ import annotations

import json
import re
import shlex
from typing import TYPE_CHECKING, Any

import pytest

from pgsteady.cluster import health, member_service, roll_lock, status
from pgsteady.cluster.patroni import container_paths
from pgsteady.postgres.session import superuser_psql
from pgsteady.settings import Settings
from pgsteady.stack.layout import CONFIG_MOUNT
from pgsteady.units import parse_size
from pgsteady.verify import Fixes, VerifyContext, check

if TYPE_CHECKING:
    from conftest import Host

STATUS_FIX = "make status (cluster section); docs/operations.md, Cluster: no running leader"


@pytest.fixture(scope="module", autouse=True)
def _enabled(s: Settings) -> None:
    if s.postgres_cluster_name is None:
        pytest.skip("not a cluster member (no postgres_cluster_name)")


def _expected(ctx: VerifyContext, cs: status.ClusterStatus) -> list[str]:
    """The inventory's members (VerifyContext.cluster_members once M3 passes them; until
    then the members Patroni lists, plus this host)."""
    members = getattr(ctx, "cluster_members", None)
    return list(members) if members else sorted({m.name for m in cs.members} | {ctx.host})


def fetch_argv(docker: str, container: str, url: str, ca: str) -> list[str]:
    """GET ``url`` inside the member's container as ``postgres`` (never root)."""
    return [docker, "exec", "-u", "postgres", container, "python3", "-c", status.FETCH_SCRIPT,
            url, ca]  # fmt: skip


@pytest.fixture(scope="module")
def cluster(on: Host, s: Settings, ctx: VerifyContext) -> status.ClusterStatus:
    address = s.postgres_cluster_address or ctx.data.get("ssh_hostname")
    url = f"https://{address}:{s.patroni_rest_port}/cluster"
    ca = container_paths(s.postgres_version).ca_file
    res = on.run(shlex.join(fetch_argv(on.docker, s.container_name, url, ca)))
    if res.rc != 0:
        return status.ClusterStatus(error=f"GET {url} failed: {res.stderr.strip()[-300:]}")
    return status.parse_cluster(json.loads(res.stdout))


@pytest.fixture(scope="module")
def leader_view(on: Host, s: Settings, ctx: VerifyContext, cluster: status.ClusterStatus):  # noqa: ANN201
    if cluster.leader != ctx.host:
        pytest.skip(f"checked on the leader ({cluster.leader or 'none'}), not on a replica")
    (row,) = on.psql(health.LEADER_SQL, port=s.postgres_member_port)
    return health.parse_leader("\t".join(row))


@pytest.mark.fix(STATUS_FIX)
def test_one_leader(cluster: status.ClusterStatus, ctx: VerifyContext) -> None:
    problems = health.leader_problems(cluster, _expected(ctx, cluster))
    check(not problems, "; ".join(problems))


@pytest.mark.fix("make reinit HOST=<that replica> (docs/operations.md, Reinit a replica)")
def test_replicas_streaming(
    cluster: status.ClusterStatus, leader_view: health.LeaderView, s: Settings, ctx: VerifyContext
) -> None:
    max_lag = parse_size(s.postgres_replica_max_lag)
    expected = _expected(ctx, cluster)
    problems = health.replica_problems(cluster, expected, leader_view.streaming, max_lag)
    check(not problems, "; ".join(problems))


def _patroni_slot(member: str) -> str:
    """The physical slot Patroni keeps on the leader for ``member``."""
    return re.sub(r"[^a-z0-9_]", "_", member.lower())


def slot_fixes(
    slots: list[dict[str, Any]], members: list[str], s: Settings, fixes: Fixes
) -> list[str]:
    """Per inactive slot: a member's slot is Patroni's (bring the member back or remove it;
    a dropped one comes back); any other is dropped on the leader by a superuser psql with
    the session pinned and the function named by its schema (the app may own an overload)."""
    ours = {_patroni_slot(m): m for m in members}
    out = []
    for slot in slots:
        name = str(slot.get("name"))
        if slot.get("active"):
            continue
        if name in ours:
            out.append(
                f"slot {name} is Patroni's for member {ours[name]}: start that member, or "
                "remove it from the cluster (docs/operations.md, PostgresReplicationSlotInactive)"
            )
            continue
        literal = "'" + name.replace("'", "''") + "'"
        command = superuser_psql(
            s.container_name,
            f"SELECT pg_catalog.pg_drop_replication_slot({literal})",
            port=s.postgres_member_port,
        )
        out.append(
            f"on the leader: {fixes.on_host(command)} (a permanent slot of Patroni's "
            "configuration comes back: remove it from the slots of patronictl edit-config)"
        )
    return out


def test_no_inactive_slots(
    leader_view: health.LeaderView,
    cluster: status.ClusterStatus,
    s: Settings,
    ctx: VerifyContext,
    fixes: Fixes,
) -> None:
    problems = health.slot_problems(leader_view.slots)
    fix = "; ".join(slot_fixes(leader_view.slots, _expected(ctx, cluster), s, fixes))
    check(not problems, "; ".join(problems), fix)


@pytest.mark.fix("docs/operations.md, Archive stuck (on the leader's host)")
def test_archiving_on_the_primary(leader_view: health.LeaderView, s: Settings) -> None:
    problems = health.archiver_problems(leader_view, expected=s.pgbackrest_enabled)
    check(not problems, "; ".join(problems))


@pytest.mark.fix(
    "wait until it ends (make status shows it); if its deploy died, the lock's lease ends "
    "within 15 minutes (docs/operations.md, Rolling changes)"
)
def test_no_rolling_change_in_progress(on: Host, s: Settings) -> None:
    res = on.run(roll_lock.show_command(on.docker, s.container_name))
    why = res.stderr.strip()[-300:]
    check(res.rc == 0, f"the rolling-change lock in etcd does not read: {why}")
    holder = roll_lock.Holder.parse(res.stdout)
    check(holder is None, f"a rolling change is in progress: {holder and holder.describe()}")


@pytest.mark.fix(
    "docker logs <project>-haproxy; correct the settings and make deploy "
    "(docs/operations.md, Rolling changes: a changed haproxy.cfg)"
)
def test_haproxy_runs_with_a_valid_file(on: Host, s: Settings) -> None:
    """This host's HAProxy (postgres_port and postgres_replica_port) runs, and the
    haproxy.cfg on disk passes the container's own ``haproxy -c``: a rejected file is
    already in place after a failed reload, and the next restart would not start."""
    name = member_service.haproxy_container(s)
    info = on.inspect("container", name)
    running = bool(info and info["State"].get("Running"))
    check(running, f"{name} is not running: postgres_port on this host reaches no member")
    cfg = f"{CONFIG_MOUNT}/{member_service.HAPROXY_CFG}"
    res = on.run(shlex.join([on.docker, "exec", name, "haproxy", "-c", "-f", cfg]))
    alerts = [x for x in (res.stderr + res.stdout).splitlines() if "ALERT" in x]
    why = " ".join(alerts or (res.stderr + res.stdout).split())[-300:]
    check(
        res.rc == 0,
        f"haproxy -c rejects {s.layout.config}/{member_service.HAPROXY_CFG} ({why}): the "
        "running HAProxy routes with what it loaded, but a restart would not start",
    )


@pytest.mark.fix(
    "make deploy reloads HAProxy with the file on disk (a reload it recorded as missing is "
    "retried); if it keeps failing: docker logs <project>-haproxy (docs/operations.md, "
    "Rolling changes: a changed haproxy.cfg)"
)
def test_haproxy_reload_recorded_for_the_file_on_disk(on: Host, s: Settings) -> None:
    """The deploy's record of the last HAProxy reload (app_dir/config/haproxy.cfg.loaded)
    holds the hash of the haproxy.cfg on disk: a reload that failed, or a deploy that died
    between the upload and the signal, leaves HAProxy routing with an older file. The
    record is written after ``haproxy -c`` and the signal, not after HAProxy confirmed
    the reload (review R11 L1), so a reload that fails at run time is not caught here."""
    cfg_path = f"{s.layout.config}/{member_service.HAPROXY_CFG}"
    cfg = on.read(cfg_path)
    marker = on.read(f"{s.layout.config}/{member_service.HAPROXY_LOADED}")
    problems = health.haproxy_marker_problems(cfg, marker, cfg_path)
    check(not problems, "; ".join(problems))
