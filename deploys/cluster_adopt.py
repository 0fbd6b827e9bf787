"""Prepare a running single host to seed its cluster: `make cluster-adopt HOST=<seed>`.

Copies the seed's password files (superuser, application, monitor...) into the cluster's
secret folder on the deploy machine (0600, never printed), so the cluster's deploy pushes
the same values back and every client keeps its password, then records the seed's name
(pgsteady.cluster.adopt.MARKER), which lets the next `make deploy` adopt its data. This
is the one run that reads a secret from a host. A value the cluster already has must be
the seed's: a different one stops the run.
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path
from typing import Any

from pyinfra import host
from pyinfra.api.exceptions import DeployError
from pyinfra.facts.files import File
from pyinfra.operations import python

from pgsteady.cluster.member_service import CLUSTER_SECRETS, PATRONI_YML
from pgsteady.stack.compose import secret_names
from tasks.cluster import adopt_marker, load_cluster
from tasks.facts import VolumePgVersion
from tasks.settings import load_settings


def _write_private(path: Path, value: bytes) -> None:
    """``path`` with ``value``, 0600, written whole under a temporary name first."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".adopt-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(value)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _copy(remote: str, local: Path) -> None:
    buf = io.BytesIO()
    if not host.get_file(remote, buf):
        raise DeployError(f"{host.name}: could not read {remote}")
    value = buf.getvalue()
    if not value:
        raise DeployError(f"{host.name}: {remote} is empty")
    if local.exists():
        if local.read_bytes() != value:
            raise DeployError(
                f"{host.name}: the cluster already has another {local.name} ({local}); "
                "accepted: the seed's value. Remove that file if no member uses it yet"
            )
        return
    _write_private(local, value)


settings = load_settings()
cluster = load_cluster(settings)
if cluster is None:
    raise DeployError(f"{host.name}: postgres_cluster_name is not set: not a cluster member")
if cluster.members[0].name != host.name:
    raise DeployError(
        f"{host.name}: the seed of cluster {cluster.name!r} is {cluster.members[0].name} "
        "(the first member in inventory order); accepted: HOST=<the host with the data>, first"
    )
version = host.get_fact(VolumePgVersion, volume=settings.data_volume)
was_member = host.get_fact(File, path=f"{settings.layout.config}/{PATRONI_YML}")
if was_member or version != settings.postgres_version:
    raise DeployError(
        f"{host.name}: nothing to adopt: its data volume holds "
        f"{'a cluster member' if was_member else version or 'no'} data; "
        f"accepted: a single host's Postgres {settings.postgres_version} data"
    )
marker = adopt_marker(settings, cluster)
names = [n for n in secret_names(settings) if n not in CLUSTER_SECRETS]


def copy_all(*_: Any) -> None:
    for name in names:
        _copy(f"{settings.layout.secrets}/{name}", marker.parent / name)
    _write_private(marker, f"{host.name}\n".encode())
    print(f"    [{host.name}] copied {', '.join(names)} (not shown); next: make deploy")


python.call(
    name=f"Copy {host.name}'s password files into cluster {cluster.name!r}'s secrets",
    function=copy_all,
)
