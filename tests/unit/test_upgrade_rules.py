"""Major upgrade rules: a version change on a host with data is refused unless the
inventory asks for the upgrade, into a new volume, from an older major."""

from __future__ import annotations

import pytest
import yaml

from pgsteady.settings import HostFacts, SettingsError, build_settings
from pgsteady.stack.compose import render_compose, render_ctl_env
from pgsteady.stack.upgrade import VolumeState, refusals, upgrade_needed


def settings(**data):
    base = {"postgres_version": 17, "postgres_image_source": "debian", "compose_project": "p"}
    return build_settings({**base, **data}, HostFacts(ram_mb=8192, cpus=2))


UPGRADE = {"postgres_data_volume": "p_pgdata17", "postgres_upgrade_from_volume": "p_pgdata"}


def test_default_data_volume_is_composes_own_name():
    assert settings().data_volume == "p_pgdata"
    assert settings(**UPGRADE).data_volume == "p_pgdata17"


def test_version_change_without_the_upgrade_keys_is_refused():
    (why,) = refusals(settings(), VolumeState(15, False, None))
    assert "p_pgdata holds a Postgres 15 cluster; postgres_version=17 cannot run on it" in why
    assert not upgrade_needed(settings(), VolumeState(15, False, None))


def test_asked_for_upgrade_runs_once_into_the_new_volume():
    s = settings(**UPGRADE)
    fresh = VolumeState(data_version=None, data_incomplete=False, from_version=15)
    assert refusals(s, fresh) == [] and upgrade_needed(s, fresh)
    done = VolumeState(data_version=17, data_incomplete=False, from_version=15)
    assert refusals(s, done) == [] and not upgrade_needed(s, done)
    # Done, and the old volume removed later: still fine, nothing to do.
    assert refusals(s, VolumeState(17, False, None)) == []


def test_unfinished_upgrade_is_never_served():
    half = VolumeState(data_version=17, data_incomplete=True, from_version=15)
    assert upgrade_needed(settings(**UPGRADE), half)  # starts over
    plain = settings(postgres_data_volume="p_pgdata17")
    (why,) = refusals(plain, half)
    assert "p_pgdata17 holds an unfinished major upgrade" in why


def test_source_must_hold_an_older_cluster():
    s = settings(**UPGRADE)
    (empty,) = refusals(s, VolumeState(None, False, None))
    assert "postgres_upgrade_from_volume = 'p_pgdata': holds no Postgres cluster" in empty
    (newer,) = refusals(s, VolumeState(None, False, 17))
    assert "holds Postgres 17, not older than postgres_version=17" in newer


def test_settings_refuse_upgrading_into_the_source_or_without_the_debian_image():
    with pytest.raises(SettingsError) as err:
        settings(postgres_upgrade_from_volume="p_pgdata")
    assert "postgres_upgrade_from_volume = 'p_pgdata': is the data volume itself" in str(err.value)
    with pytest.raises(SettingsError) as err:
        settings(postgres_image_source="registry", **UPGRADE)
    assert "needs postgres_image_source = 'debian'" in str(err.value)
    with pytest.raises(SettingsError) as err:
        settings(postgres_data_volume="bad/name")
    assert "postgres_data_volume" in str(err.value) and "not a Docker volume name" in str(err.value)


def test_compose_and_ctl_env_name_the_data_volume():
    assert yaml.safe_load(render_compose(settings()))["volumes"]["pgdata"] == {}
    upgraded = settings(**UPGRADE)
    assert yaml.safe_load(render_compose(upgraded))["volumes"]["pgdata"] == {"name": "p_pgdata17"}
    env = render_ctl_env(upgraded, "docker compose")
    assert "PGSTEADY_DATA_VOLUME=p_pgdata17\n" in env
    assert "PGSTEADY_IMAGE=pgsteady/p-postgres:17\n" in env
