"""A running single-host pgsteady put into a cluster group (issue 15 item 3, design §7).

Adoption in place is not automated yet, so the deploy must refuse such an inventory
before any operation: without this check the cluster deploy uploads the cluster's new
password files over the single host's, skips the seed's start (its container runs) and
starts Patroni on the two empty hosts, one of which would initialise a new, empty
cluster instead of the seed adopting its data. On a lab of three hosts: host 1 is converged as a
single host (Postgres 17, the cluster's version) and gets rows; then the 3-host cluster
inventory is deployed, with host 1 first (the seed) and with host 1 second. Each run must
fail naming host 1 and the reason, and change nothing: the same container still serves
the same system identifier and rows, its password files are byte-for-byte the same, and
the other hosts run no container and hold no Patroni file.

Opt-in (its own make target, ``make lab-cluster-adopt``): a 3-host lab of its own.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Iterator

import pytest

from pgsteady.cluster import member_service as ms
from pgsteady.lab.cluster_backend import read_inventory
from pgsteady.lab.recipe import render_inventory
from tests.lab.conftest import LabTarget, cluster_lab, record

DATA = {"compose_project": "labad", "backup_schedule": "@daily"}
ROWS = 500
pytestmark = [
    pytest.mark.timeout(3600),
    pytest.mark.skipif(
        os.environ.get("PGSTEADY_LAB_ADOPT") != "1",
        reason="opt-in (a 3-host lab of its own): make lab-cluster-adopt",
    ),
]


def _inventory(target: LabTarget, order: list[str], cluster: bool, name: str) -> LabTarget:
    """``target`` with an inventory of the hosts ``order`` names, in that order; without
    the cluster's name when ``cluster`` is False (a single host)."""
    lab_name, entries = read_inventory(target.inventory)
    data = dict(entries)
    hosts = []
    for host in order:
        d = dict(data[host])
        if not cluster:
            d.pop("postgres_cluster_name", None)
        hosts.append((host, d))
    path = target.inventory.with_name(name)
    path.write_text(render_inventory(lab_name, hosts))
    return dataclasses.replace(target, inventory=path)


@pytest.fixture(scope="module")
def single() -> Iterator[tuple[list[LabTarget], LabTarget]]:
    """The 3-host lab, host 1 converged as a single host holding ROWS rows."""
    with cluster_lab("pgsadp", DATA) as targets:
        one = _inventory(targets[0], [targets[0].host.name], False, "single.py")
        started = time.monotonic()
        result = one.make("deploy", timeout=3600)
        assert result.returncode == 0, result.output[-6000:]
        record("adopt lab: single-host deploy of host 1 (image built)", time.monotonic() - started)
        made = one.sql(
            "CREATE TABLE IF NOT EXISTS public.kept (n int PRIMARY KEY);"
            f"INSERT INTO public.kept SELECT generate_series(1, {ROWS}) ON CONFLICT DO NOTHING"
        )
        assert made.returncode == 0, made.stderr
        yield targets, one


def _state(one: LabTarget) -> dict[str, str]:
    """What must not change: the container, the data's identity and rows, the secrets."""
    s = one.settings
    sysid = one.sql("SELECT system_identifier FROM pg_control_system()")
    rows = one.sql("SELECT count(*) FROM public.kept")
    fmt = "'{{.Id}} {{.State.Running}}'"
    container = one.ssh(f"docker inspect -f {fmt} {s.container_name}")
    sums = one.ssh(f"cd {s.layout.secrets} && sha256sum -- *")  # hashes only, never values
    for proc in (sysid, rows, container, sums):
        assert proc.returncode == 0, proc.stderr
    return {
        "sysid": sysid.stdout.strip(),
        "rows": rows.stdout.strip(),
        "container": container.stdout.strip(),
        "secrets": sums.stdout,
    }


@pytest.mark.parametrize("seed_first", [True, False], ids=["seed-first", "seed-second"])
def test_a_single_hosts_data_in_a_cluster_group_is_refused_before_any_change(
    single: tuple[list[LabTarget], LabTarget], seed_first: bool
) -> None:
    targets, one = single
    names = [t.host.name for t in targets]
    order = names if seed_first else [names[1], names[0], names[2]]
    before = _state(one)
    assert before["rows"] == str(ROWS) and before["container"].endswith(" true")
    cluster = _inventory(targets[0], order, True, f"cluster-{int(seed_first)}.py")
    started = time.monotonic()
    result = cluster.make("deploy", timeout=1800)
    record(f"adopt lab: refused cluster deploy ({'seed first' if seed_first else 'second'})",
           time.monotonic() - started)  # fmt: skip
    assert result.returncode != 0, result.output[-4000:]
    if seed_first:
        expected = f"{names[0]}: its data volume holds a single host's Postgres 17 data"
        assert expected in result.output and "not automated yet" in result.output
    else:
        expected = f"{names[0]}: its data volume holds Postgres data, but the seed"
        assert expected in result.output and f"is {names[1]}" in result.output
    assert "Grand total" not in result.output  # no operation ran
    assert _state(one) == before
    for t in targets:
        patroni = t.ssh(f"test -e {t.settings.layout.config}/{ms.PATRONI_YML}")
        assert patroni.returncode == 1, f"{t.host.name}: a Patroni file was written"
    for t in targets[1:]:
        ps = t.ssh("docker ps -aq 2>/dev/null || true")
        assert ps.stdout.strip() == "", f"{t.host.name} runs containers: {ps.stdout}"
