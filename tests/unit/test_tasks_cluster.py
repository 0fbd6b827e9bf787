"""tasks/cluster.py: another member's paths and names come from its own inventory data,
through Settings (its layout, its data volume), and bad data names that member; the
adoption facts are read only while the decision can use them."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from pyinfra.api.exceptions import DeployError

from pgsteady.cluster.adopt import MemberData
from pgsteady.cluster.topology import cluster_from_mapping
from tasks.cluster import member_data, member_settings
from tests.support.pyinfra_plan import HOST, plan


def test_member_settings_follow_the_members_own_data() -> None:
    data = {"app_dir": "/srv/shop", "compose_project": "shop"}
    s, _ = plan(lambda: member_settings(HOST), facts={}, data=data)
    assert s.layout.state == "/srv/shop/state"
    assert s.layout.config == "/srv/shop/config"
    assert s.data_volume == "shop_pgdata"
    named, _ = plan(lambda: member_settings(HOST), facts={}, data={"postgres_data_volume": "v17"})
    assert named.data_volume == "v17"


def test_a_members_bad_data_names_the_member_and_the_key() -> None:
    with pytest.raises(DeployError) as exc:
        plan(lambda: member_settings(HOST), facts={}, data={"compose_project": "No Spaces"})
    assert f"member {HOST}: " in str(exc.value)
    assert "compose_project" in str(exc.value) and "'No Spaces'" in str(exc.value)


def _member_data(marked: str, files: set[str], version: int | None = 17) -> tuple[Any, Any]:
    three = [{"name": n, "address": f"10.0.0.{i}"} for i, n in enumerate("abc", 1)]
    cluster = cluster_from_mapping({"postgres_cluster_name": "main", "members": three})
    # the one host plan() has (its name has a dot, which a member's may not)
    cluster = replace(cluster, members=(replace(cluster.members[0], name=HOST),))
    facts = {"File": lambda path: path in files, "VolumePgVersion": lambda volume: version}
    data = {"app_dir": "/srv/pg", "pgbackrest_enabled": False}
    return plan(lambda: member_data(cluster, marked), facts=facts, data=data)


YML, ADOPTED = "/srv/pg/config/patroni.yml", "/srv/pg/state/adopted"


def _asked(p: Any) -> list[str]:
    return [name for name, _ in p.facts_asked]


def test_a_converged_member_is_not_asked_for_its_data_volume() -> None:
    """Each host reads every member's facts on every converge: a member Patroni manages
    costs one round trip, not two (three with the marker: the seed's record)."""
    found, p = _member_data("", {YML})
    assert _asked(p) == ["File"]
    assert found == [MemberData(HOST, None, True, False)]
    found, p = _member_data(HOST, {YML, ADOPTED})
    assert _asked(p) == ["File", "File"]
    assert found == [MemberData(HOST, None, True, True)]


def test_an_unrecorded_adoption_and_a_new_host_read_the_data_volume() -> None:
    found, p = _member_data(HOST, {YML})  # an interrupted adoption: FINISH needs versions
    assert _asked(p) == ["File", "File", "VolumePgVersion"]
    assert found == [MemberData(HOST, 17, True, False)]
    found, p = _member_data("", set())  # never a member: its data may be a single host's
    assert _asked(p) == ["File", "VolumePgVersion"]
    assert found == [MemberData(HOST, 17, False, False)]
