"""Preflight: each failure says what is wrong and how to fix it."""

from __future__ import annotations

from dataclasses import replace

from pgsteady.settings import HostFacts, build_settings
from pgsteady.stack.preflight import PreflightInput, check, port_is_ours
from pgsteady.stack.upgrade import VolumeState

OK = PreflightInput(
    distro="Debian", distro_major=12, free_disk_bytes=50 * 1024**3, port_owner=None,
    container=None,
)  # fmt: skip


def settings(ram_mb: int = 8192, **data):
    return build_settings(data, HostFacts(ram_mb=ram_mb, cpus=2))


def ours(port: int) -> dict:
    return {"HostConfig": {"PortBindings": {"5432/tcp": [{"HostIp": "127.0.0.1",
                                                          "HostPort": str(port)}]}}}  # fmt: skip


def test_a_good_host_passes():
    assert check(settings(), OK) == []


def test_unsupported_or_old_os():
    assert "unsupported OS 'CentOS'" in check(settings(), replace(OK, distro="CentOS"))[0]
    assert "Debian 10 is too old" in check(settings(), replace(OK, distro_major=10))[0]
    assert check(settings(), replace(OK, distro="Ubuntu", distro_major=24)) == []


def test_ram_and_disk_minimums_name_the_setting():
    failures = check(
        settings(ram_mb=512, preflight_min_disk="100GB"), replace(OK, free_disk_bytes=10**9)
    )
    assert any("below preflight_min_ram=1GB" in f for f in failures)
    assert any("below preflight_min_disk=100GB" in f for f in failures)


def test_port_in_use_by_someone_else_but_not_by_us():
    s = settings(postgres_port=6000)
    taken = check(s, replace(OK, port_owner="postgres"))
    assert taken == [
        "port 6000 is in use by 'postgres': stop it or set postgres_port to a free port"
    ]
    assert check(s, replace(OK, port_owner="docker-proxy", container=ours(6000))) == []
    assert port_is_ours(s, ours(6000)) and not port_is_ours(s, ours(6001))


def test_data_volume_of_another_major_version():
    failures = check(
        settings(postgres_version=17), replace(OK, volumes=VolumeState(15, False, None))
    )
    assert len(failures) == 1
    assert "holds a Postgres 15 cluster; postgres_version=17 cannot run on it" in failures[0]
    assert (
        check(settings(postgres_version=17), replace(OK, volumes=VolumeState(17, False, None)))
        == []
    )
