"""container: the Postgres container runs as the Settings describe it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from pgsteady.cluster import etcd_service
from pgsteady.settings import Settings
from pgsteady.stack.compose import render_compose
from pgsteady.stack.jobs import render_cron, render_service, render_timer, watchdog_job
from pgsteady.stack.layout import DATA_MOUNT
from pgsteady.units import parse_size
from pgsteady.verify import Fixes, VerifyContext, check

if TYPE_CHECKING:
    from conftest import Host

UP = "{paths.bin}/pgsteady-ctl up"


def test_running(on: Host, s: Settings, fixes: Fixes) -> None:
    ctl = f"{s.layout.bin}/pgsteady-ctl"
    fix = fixes.on_host(f"{ctl} up") if on.stat(ctl) else fixes.deploy
    info = on.inspect("container", s.container_name)
    check(info is not None, f"container {s.container_name} does not exist", fix)
    state = info["State"]
    stopped = on.run(f"test -e {s.app_dir}/.stopped").rc == 0
    why = f" (stopped on purpose: {s.app_dir}/.stopped exists)" if stopped else ""
    check(state.get("Running"), f"container {s.container_name} is {state.get('Status')}{why}", fix)


@pytest.mark.fix(UP, on_host=True)
def test_healthy(container: dict[str, Any]) -> None:
    health = (container["State"].get("Health") or {}).get("Status")
    check(health == "healthy", f"container health is {health}, not healthy")


def test_restart_policy(container: dict[str, Any], s: Settings) -> None:
    got = container["HostConfig"]["RestartPolicy"]["Name"]
    want = s.postgres_restart_policy
    check(got == want, f"restart policy is {got!r}; settings say {want!r}")


def test_memory_limit(container: dict[str, Any], s: Settings) -> None:
    hc = container["HostConfig"]
    want = s.memory_limit_bytes
    check(
        hc.get("Memory") == want and hc.get("MemorySwap") == want,
        f"memory limit {hc.get('Memory')} B (swap {hc.get('MemorySwap')}); "
        f"settings say {want} B ({s.memory_limit_mb} MB) and no swap",
    )


def test_cpu_limit(container: dict[str, Any], s: Settings) -> None:
    got = container["HostConfig"].get("NanoCpus") or 0
    want = round(s.cpu_limit * 1e9)
    check(got == want, f"CPU limit {got / 1e9:g}; settings say {s.cpu_limit:g}")


def test_shm_size(container: dict[str, Any], s: Settings) -> None:
    got = container["HostConfig"].get("ShmSize")
    want = parse_size(s.postgres_shm_size)
    check(got == want, f"/dev/shm is {got} B; settings say {s.postgres_shm_size}")


def test_not_privileged(container: dict[str, Any], s: Settings) -> None:
    hc = container["HostConfig"]
    check(not hc.get("Privileged"), "the container runs --privileged")
    check(not hc.get("CapAdd"), f"the container has extra capabilities {hc.get('CapAdd')}")
    # a cluster member is on the host's network by design: peers dial its private address
    modes = (
        ("PidMode", "IpcMode") if s.postgres_cluster_name else ("NetworkMode", "PidMode", "IpcMode")
    )
    for mode in modes:
        check(hc.get(mode) != "host", f"the container shares the host's {mode}")


def test_port_published(container: dict[str, Any], s: Settings) -> None:
    """Published only on postgres_bind:postgres_port, in the config and in effect (a
    cluster member publishes nothing: HAProxy serves postgres_port on the host network)."""
    want = {"5432/tcp": [{"HostIp": s.postgres_bind, "HostPort": str(s.postgres_port)}]}
    if s.postgres_cluster_name:
        want = {}
    configured = container["HostConfig"].get("PortBindings") or {}
    active = {k: v for k, v in (container["NetworkSettings"].get("Ports") or {}).items() if v}
    seen = [("configured", configured)]
    if container["State"].get("Running"):  # a stopped container publishes nothing
        seen.append(("published", active))
    for what, got in seen:
        check(
            got == want,
            f"port {what} as {_ports(got)}; settings say {s.postgres_bind}:{s.postgres_port}",
        )


def _ports(bindings: dict[str, Any]) -> str:
    return ", ".join(
        f"{b.get('HostIp') or '0.0.0.0'}:{b.get('HostPort')}->{port}"
        for port, binds in bindings.items()
        for b in binds or []
    )


def test_image(on: Host, container: dict[str, Any], s: Settings) -> None:
    got = container["Config"]["Image"]
    check(got == s.image_alias, f"the container runs {got}; settings say {s.image_alias}")
    alias = on.inspect("image", s.image_alias)
    check(
        alias is not None and alias["Id"] == container["Image"],
        f"the container runs an older build of {s.image_alias} (recreate it)",
    )


def test_data_volume(container: dict[str, Any], s: Settings) -> None:
    mounts = [m for m in container.get("Mounts", []) if m.get("Destination") == DATA_MOUNT]
    want = s.data_volume
    check(
        mounts and mounts[0].get("Type") == "volume" and mounts[0].get("Name") == want,
        f"{DATA_MOUNT} is not the named volume {want}: data would not survive a recreate",
    )


def test_compose_file_matches(on: Host, s: Settings, ctx: VerifyContext) -> None:
    got = on.read(s.layout.compose)
    cluster, etcd = ctx.cluster(), None
    if cluster is not None:  # an etcd host's file also holds its etcd service
        etcd = etcd_service.service(s, cluster, cluster.member(ctx.host))
    want = render_compose(s, etcd)
    check(got == want, f"{s.layout.compose} is missing or differs from settings")


def test_watchdog_job(on: Host, s: Settings, fixes: Fixes) -> None:
    job = watchdog_job(s)
    if s.host_has_systemd:
        base = f"/etc/systemd/system/{job.unit}"
        check(on.read(f"{base}.service") == render_service(job), f"{base}.service differs")
        check(on.read(f"{base}.timer") == render_timer(job), f"{base}.timer differs")
        res = on.run(f"systemctl is-active {job.unit}.timer")
        check(res.stdout.strip() == "active", f"{job.unit}.timer is not active")
        return
    path = f"/etc/cron.d/{job.unit}"
    check(on.read(path) == render_cron(job), f"{path} is missing or differs from the settings")
    uid_gid_mode = on.stat(path)
    check(uid_gid_mode == (0, 0, 0o644), f"{path} must be root:root 0644 or cron ignores it")
