"""tasks/cluster.py: another member's paths and names come from its own inventory data,
through Settings (its layout, its data volume), and bad data names that member."""

from __future__ import annotations

import pytest
from pyinfra.api.exceptions import DeployError

from tasks.cluster import member_settings
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
