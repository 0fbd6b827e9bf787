"""Passwords generated on the host on first converge: 0600 files, never overwritten or shown."""

from __future__ import annotations

from pyinfra.api import deploy
from pyinfra.operations import files, server

from pgsteady.settings import Settings
from pgsteady.stack.compose import secret_names
from pgsteady.stack.hostfiles import server_readable
from tasks import cluster_member
from tasks.cluster import load_cluster
from tasks.noop_guard import is_file
from tasks.ownership import ensure_owned


@deploy("Secrets")
def ensure(s: Settings) -> None:
    secrets = s.layout.secrets
    files.directory(
        name="Create the secrets directory (0700)", path=secrets, user="root", mode="700"
    )
    cluster = load_cluster(s)
    if cluster is not None:  # one value on every member, pushed from the deploy machine
        cluster_member.push_secrets(s, cluster)
        return
    for name in secret_names(s):
        path = f"{secrets}/{name}"
        generate = None
        if not is_file(path):
            # Generated on the host so the value never crosses the wire or enters a log;
            # the command itself holds no secret.
            generate = server.shell(
                name=f"Generate {name}",
                commands=[
                    f"umask 077 && tr -dc 'A-Za-z0-9' </dev/urandom | head -c 40 > {path}.new"
                    f" && mv {path}.new {path}"
                ],
            )
        # Compose bind-mounts secrets keeping owner/mode: the container's postgres reads
        # them through its group; only root may change them (pgsteady.stack.hostfiles).
        ensure_owned(server_readable(s, path), created_by=generate)
