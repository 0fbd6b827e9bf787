"""cluster_dcs: Patroni's dynamic configuration holds only what pgsteady converges (R8 L4).

A deploy PATCHes the keys pgsteady manages and leaves any other alone, so a key planted in
the DCS (``postgresql.parameters.archive_library``, ``slots``, ``standby_cluster`` ...)
would survive every redeploy unseen. ``GET /config`` is read inside the member's container
(as ``postgres``) and compared with pgsteady.cluster.dcs.desired for the inventory's
cluster (pgsteady.cluster.dcs_drift). Skipped on a single host.
"""

from __future__ import annotations

import json
import shlex
from typing import TYPE_CHECKING, Any

import pytest

from pgsteady.cluster import dcs, dcs_drift, status
from pgsteady.cluster.patroni import container_paths
from pgsteady.settings import Settings
from pgsteady.verify import Fixes, VerifyContext, check

if TYPE_CHECKING:
    from conftest import Host


@pytest.fixture(scope="module", autouse=True)
def _enabled(s: Settings) -> None:
    if s.postgres_cluster_name is None:
        pytest.skip("not a cluster member (no postgres_cluster_name)")


@pytest.fixture(scope="module")
def current(on: Host, s: Settings, ctx: VerifyContext) -> dict[str, Any] | str:
    """``GET /config`` of this member (the DCS document every member shares), or why it
    does not read."""
    address = s.postgres_cluster_address or ctx.data.get("ssh_hostname")
    url = f"https://{address}:{s.patroni_rest_port}/config"
    ca = container_paths(s.postgres_version).ca_file
    # as postgres in the member's container, presenting the member's certificate
    argv = [on.docker, "exec", "-u", "postgres", s.container_name, "python3", "-c",
            status.FETCH_SCRIPT, url, ca]  # fmt: skip
    res = on.run(shlex.join(argv))
    return json.loads(res.stdout) if res.rc == 0 else f"GET {url}: {res.stderr[-300:]}"


@pytest.fixture(scope="module")
def desired(s: Settings, ctx: VerifyContext) -> dict[str, Any]:
    cluster = ctx.cluster()
    if cluster is None:
        pytest.skip("the inventory's cluster members are unknown (run through make verify)")
    return dcs.desired(s, cluster)


@pytest.mark.fix("make status (cluster section); docs/operations.md, Cluster: no running leader")
def test_no_unmanaged_dcs_keys(
    current: dict[str, Any] | str, desired: dict[str, Any], s: Settings, fixes: Fixes
) -> None:
    check(isinstance(current, dict), f"the DCS configuration does not read: {current}")
    assert isinstance(current, dict)
    planted = dcs_drift.unmanaged(current, desired)
    patch = dcs_drift.removal_patch(current, desired)
    check(
        not planted,
        "keys in Patroni's dynamic configuration that pgsteady does not manage (a deploy "
        f"leaves them): {', '.join(dcs_drift.name(p) for p in planted)}",
        "remove them on any member (or, if one is yours, manage it through the inventory): "
        f"{fixes.on_host(dcs_drift.fix_command(s.container_name, patch))}",
    )
