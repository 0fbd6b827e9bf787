"""host: the machine itself is fit to run Postgres (what preflight demands, and more)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from pgsteady.settings import Settings
from pgsteady.stack.preflight import SUPPORTED_DISTROS
from pgsteady.units import parse_size
from pgsteady.verify import Fixes, check

if TYPE_CHECKING:
    from conftest import Host

SYSCTL_FILE = "/etc/sysctl.d/60-pgsteady.conf"
MAX_SWAPPINESS = 10


def _sysctl_fix(fixes: Fixes, key: str, value: int) -> str:
    return fixes.on_host(f"sysctl -w {key}={value} && echo '{key} = {value}' >> {SYSCTL_FILE}")


@pytest.mark.fix("reinstall the host with Debian 11+ or Ubuntu 20.04+")
def test_supported_os(host: Any) -> None:
    info = host.system_info
    name = {"debian": "Debian", "ubuntu": "Ubuntu"}.get(info.distribution or "")
    oldest = SUPPORTED_DISTROS.get(name or "")
    check(oldest is not None, f"{info.distribution} is not supported (Debian 11+, Ubuntu 20.04+)")
    major = int(str(info.release or "0").split(".")[0] or 0)
    check(major >= oldest, f"{name} {info.release} is too old: {name} {oldest}+ is required")


@pytest.mark.fix("use a host with more RAM, or lower preflight_min_ram in the inventory")
def test_ram(s: Settings) -> None:
    need = parse_size(s.preflight_min_ram)
    have = s.host_ram_mb * 1024 * 1024
    check(have >= need, f"RAM {s.host_ram_mb} MB is below preflight_min_ram={s.preflight_min_ram}")


@pytest.mark.fix("free space on the filesystem of app_dir, or grow it")
def test_disk_free(on: Host, s: Settings) -> None:
    need = parse_size(s.preflight_min_disk)
    free = on.free_bytes(s.app_dir)
    check(
        free >= need,
        f"{free / 1024**3:.1f} GB free on {s.app_dir}, below "
        f"preflight_min_disk={s.preflight_min_disk}",
    )


def _kernel_clock_synced(on: Host) -> bool | None:
    """adjtimex(2) state: TIME_ERROR (5) means the kernel clock is not synchronised."""
    res = on.run(
        "python3 -c 'import ctypes; b = ctypes.create_string_buffer(512); "
        "print(ctypes.CDLL(None).adjtimex(b))'"
    )
    return None if res.rc != 0 else res.stdout.strip() != "5"


def test_time_synchronised(on: Host, s: Settings, fixes: Fixes) -> None:
    """NTP sync as the host's own client reports it; skipped when there is none to ask."""
    fix = fixes.on_host("apt-get install -y chrony")
    if s.host_has_systemd:
        res = on.run("timedatectl show -p NTPSynchronized --value")
        check(res.stdout.strip() == "yes", "the clock is not NTP-synchronised (timedatectl)", fix)
    elif on.run("command -v chronyc").rc == 0:
        res = on.run("chronyc -n tracking")
        leap = [line for line in res.stdout.splitlines() if line.startswith("Leap status")]
        check(
            res.rc == 0 and leap and leap[0].split(":", 1)[1].strip() == "Normal",
            f"chrony is not synchronised ({(leap or ['no tracking data'])[0].strip()})",
            fix,
        )
    elif on.run("command -v ntpq").rc == 0:
        res = on.run("ntpq -pn")
        peers = [line for line in res.stdout.splitlines() if line.startswith("*")]
        check(peers, "ntpd has no selected peer (ntpq -pn shows no '*' line)", fix)
    else:
        synced = _kernel_clock_synced(on)
        state = {True: "synchronised", False: "unsynchronised", None: "unknown"}[synced]
        pytest.skip(f"no systemd, chronyc or ntpq to ask; the kernel says the clock is {state}")


def test_swap_policy(on: Host, host: Any, fixes: Fixes) -> None:
    """No swap, or vm.swappiness <= 10: Postgres pages should stay in RAM."""
    swap_kb = int(on.out("awk '/^SwapTotal:/ {print $2}' /proc/meminfo") or 0)
    if swap_kb == 0:
        return
    swappiness = host.sysctl("vm.swappiness")
    check(
        swappiness <= MAX_SWAPPINESS,
        f"swap is on ({swap_kb // 1024} MB) and vm.swappiness={swappiness} (> {MAX_SWAPPINESS})",
        _sysctl_fix(fixes, "vm.swappiness", 1),
    )


def test_overcommit(host: Any, fixes: Fixes) -> None:
    """vm.overcommit_memory=1 (always overcommit) trades malloc errors for the OOM killer."""
    mode = host.sysctl("vm.overcommit_memory")
    check(
        mode != 1,
        "vm.overcommit_memory=1: allocations never fail, the OOM killer picks the postmaster",
        _sysctl_fix(fixes, "vm.overcommit_memory", 0),
    )


def test_scheduler_running(on: Host, s: Settings, fixes: Fixes) -> None:
    """The daemon that runs the watchdog and backup jobs is up."""
    if s.host_has_systemd:
        res = on.run("systemctl is-active timers.target")
        check(res.stdout.strip() == "active", "systemd's timers.target is not active", fixes.deploy)
        return
    res = on.run("pgrep -x cron || pgrep -x crond")
    check(
        res.rc == 0,
        "cron is not running: the watchdog and backup jobs never run",
        fixes.on_host("service cron start"),
    )
