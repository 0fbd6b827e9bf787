"""make verify on a cluster member (issue 15, M3): the runner hands each host's suite the
inventory's members, so its checks rebuild the cluster (the compose file with the etcd
service, the members Patroni must list) exactly as the deploy does."""

from __future__ import annotations

from pgsteady.inventory import InventoryHost
from pgsteady.settings import HostFacts
from pgsteady.verify import VerifyContext, cluster_members_of

DATA = {
    "postgres_cluster_name": "main",
    "pgbackrest_enabled": False,
    "pgbouncer_enabled": False,
    "metrics_enabled": False,
    "postgres_allowed_networks": ["10.0.0.0/24"],
}


def test_the_members_travel_with_the_context_and_rebuild_the_cluster() -> None:
    hosts = [InventoryHost(f"pg{i}", {**DATA, "ssh_hostname": f"10.0.0.{i}"}) for i in (1, 2, 3, 4)]
    hosts.append(InventoryHost("single", {"ssh_hostname": "10.0.0.9"}))
    members = cluster_members_of(hosts[1], hosts)
    assert members == {f"pg{i}": f"10.0.0.{i}" for i in (1, 2, 3, 4)}
    assert cluster_members_of(hosts[4], hosts) == {}
    facts = HostFacts(ram_mb=4096, cpus=2, has_systemd=True)
    ctx = VerifyContext("pg2", "inv.py", hosts[1].data, facts, (), {}, members)
    loaded = VerifyContext.load(ctx.dump())
    cluster = loaded.cluster()
    assert [m.name for m in cluster.etcd_members] == ["pg1", "pg2", "pg3"]
    assert cluster.member("pg4").address == "10.0.0.4"
    single = VerifyContext("single", "inv.py", {}, facts)
    assert VerifyContext.load(single.dump()).cluster() is None
