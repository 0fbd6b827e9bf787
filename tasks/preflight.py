"""Preflight: refuse, before changing anything, a host that cannot run pgsteady well."""

from __future__ import annotations

from pyinfra import host
from pyinfra.api.exceptions import DeployError
from pyinfra.facts.server import LinuxDistribution, Port

from pgsteady.cluster.member_service import haproxy_container
from pgsteady.settings import Settings
from pgsteady.stack.preflight import PreflightInput, check, port_is_ours
from tasks.cluster import adopting
from tasks.facts import DockerInspect, FreeDiskBytes
from tasks.upgrade_major import volume_state


def run(s: Settings) -> None:
    """Raise DeployError naming every failed check and its fix."""
    distro = host.get_fact(LinuxDistribution) or {}
    # on a cluster member, the stack's HAProxy serves postgres_port on the host network
    name = s.container_name if s.postgres_cluster_name is None else haproxy_container(s)
    container = host.get_fact(DockerInspect, kind="container", object_id=name)
    owner, _pid = host.get_fact(Port, port=s.postgres_port) or (None, None)
    if owner and s.postgres_cluster_name is not None and adopting(s):
        # the seed's single-host server publishes the port until its restart under Patroni
        single = host.get_fact(DockerInspect, kind="container", object_id=s.container_name)
        if port_is_ours(s.model_copy(update={"postgres_cluster_name": None}), single):
            owner = None
    failures = check(
        s,
        PreflightInput(
            distro=str(distro.get("name") or "unknown"),
            distro_major=distro.get("major"),
            free_disk_bytes=host.get_fact(FreeDiskBytes, path=s.app_dir),
            port_owner=owner,
            container=container,
            volumes=volume_state(s),
        ),
    )
    if failures:
        lines = "\n".join(f"  - {f}" for f in failures)
        raise DeployError(f"preflight failed on {host.name}:\n{lines}")
