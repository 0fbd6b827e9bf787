"""The Postgres stack: layout, configuration, compose file, and keeping it running.

A converged host gets no operation that changes anything: compose runs only when the
compose file, image or secrets changed or the container is not running; a configuration
change reloads the server and restarts it only when a changed setting requires it.
"""

from __future__ import annotations

import shlex
from io import StringIO
from pathlib import Path
from typing import Any

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.api.operation import OperationMeta
from pyinfra.operations import files, server

from pgsteady.postgres.conf_files import (
    APP_PASSWORD_FILE,
    SCHEMA_PSQL,
    render_init_db_sql,
    render_pg_hba_conf,
    render_postgresql_conf,
    render_schema_psql,
    schema_file_names,
)
from pgsteady.settings import Settings
from pgsteady.stack import exporters
from pgsteady.stack.compose import INIT_SQL, render_compose, render_ctl_env
from pgsteady.stack.hostfiles import OLD_ROOT_FILES_IN_CONFIG, root_only, server_readable
from pgsteady.stack.layout import INIT_MOUNT
from tasks import cluster_member, etcd, upgrade_major
from tasks.facts import DockerInspect
from tasks.noop_guard import guarded_put, guarded_remove
from tasks.ownership import directory_owned, put_owned

CTL = Path(__file__).resolve().parent.parent / "files" / "bin" / "pgsteady-ctl"
PITR = CTL.parent / "pgsteady-pitr"
UPGRADE = CTL.parent / "pgsteady-upgrade-major"  # sourced by pgsteady-ctl upgrade-major


def _state(name: str) -> dict[str, Any]:
    """A container's docker inspect State ({} when there is no such container)."""
    return (host.get_fact(DockerInspect, kind="container", object_id=name) or {}).get("State") or {}


def _container_ok(s: Settings) -> bool:
    """The server runs healthy, and so does every other service of the stack (running)."""
    state = _state(s.container_name)
    others = [_state(name) for name in exporters.container_names(s).values()]
    healthy = (state.get("Health") or {}).get("Status") == "healthy"
    return bool(state.get("Running")) and healthy and all(o.get("Running") for o in others)


@deploy("Postgres stack")
def ensure(
    s: Settings,
    compose_cmd: str,
    image_ops: list[OperationMeta],
    cluster_ops: list[OperationMeta] | None = None,
) -> cluster_member.Pending | None:
    """Write the stack's files and start it; a cluster member's start is left to the
    cluster's ordered steps (tasks/cluster_member.py), which get what they need back."""
    p = s.layout
    files.directory(name="Create app_dir", path=s.app_dir, user="root", group="root", mode="755")
    for key in ("bin", "etc", "state"):
        mode = "755" if key == "bin" else "700"
        directory_owned(
            root_only(getattr(p, key), mode, directory=True), f"Create the {key} directory"
        )
    # Read by the server through its group; only root writes them (issue 11, item 2).
    for key in ("config", "init"):
        directory_owned(
            server_readable(s, getattr(p, key), directory=True), f"Create the {key} directory"
        )
    files.directory(
        name="Create the backup directory", path=p.backups, user="root", group="root", mode="700"
    )

    scripts = [(CTL, "755"), (UPGRADE, "644"), *([(PITR, "755")] if s.pgbackrest_enabled else [])]
    for script, mode in scripts:
        guarded_put(
            name=f"Upload {script.name}",
            src=str(script),
            dest=f"{p.bin}/{script.name}",
            user="root",
            group="root",
            mode=mode,
        )
    guarded_put(
        name="Write ctl.env",
        src=StringIO(render_ctl_env(s, compose_cmd)),
        dest=p.ctl_env,
        user="root",
        group="root",
        mode="600",
    )
    # Hosts converged before etc/ existed kept root's files in the server's config dir.
    for old in OLD_ROOT_FILES_IN_CONFIG:
        guarded_remove(name=f"Remove old {p.config}/{old}", path=f"{p.config}/{old}")

    conf = put_owned(render_postgresql_conf(s), server_readable(s, f"{p.config}/postgresql.conf"))
    hba = put_owned(render_pg_hba_conf(s), server_readable(s, f"{p.config}/pg_hba.conf"))
    schema_ops = _schema_files(s)
    init_sql = put_owned(render_init_db_sql(s), server_readable(s, f"{p.init}/{INIT_SQL}"))
    compose = guarded_put(
        name="Write docker-compose.yml",
        src=StringIO(render_compose(s, etcd.compose_service(s))),
        dest=p.compose,
        user="root",
        group="root",
        mode="640",
    )

    upgrade_major.run(s)  # a major upgrade the inventory asks for, before the stack starts
    ctl_cmd = f"{p.bin}/pgsteady-ctl"
    was_ok = _container_ok(s)
    up_triggers = [compose, *image_ops]
    if s.postgres_cluster_name is not None:
        # Patroni reads its files at start; the DCS carries postgresql.conf and pg_hba.
        triggers = [*up_triggers, *(cluster_ops or [])]
        # A member whose Postgres container runs exists: any 'up' of it is the roll's (one
        # at a time, a switchover for the leader), never a busy or unhealthy moment's (R9 M3).
        running = bool(_state(s.container_name).get("Running"))
        return cluster_member.Pending(compose_cmd, triggers, running, init_sql, schema_ops)
    up = server.shell(
        name="Start or update the stack, wait until healthy",
        commands=[f"{ctl_cmd} up"],
        _if=None if not was_ok else (lambda: any(o.did_change() for o in up_triggers)),
    )
    # A server that was just started or recreated already runs the new files.
    server.shell(
        name="Apply changed server configuration (reload; restart only if required)",
        commands=[f"{ctl_cmd} apply-config"],
        _if=lambda: (conf.did_change() or hba.did_change()) and not up.did_change(),
    )
    # Idempotent SQL: also harmless right after the entrypoint applied it to a new cluster.
    server.shell(
        name="Apply init_db.sql",
        commands=[f"{ctl_cmd} apply-sql {INIT_MOUNT}/{INIT_SQL}"],
        _if=lambda: init_sql.did_change(),
    )
    if schema_ops:
        # Logged in as the application's role, never the superuser (issue 11 review).
        args = [s.postgres_user, s.postgres_db, APP_PASSWORD_FILE, f"{INIT_MOUNT}/{SCHEMA_PSQL}"]
        server.shell(
            name="Apply the schema files as the application's role",
            commands=[f"{ctl_cmd} apply-schema {' '.join(shlex.quote(a) for a in args)}"],
            _if=lambda: any(o.did_change() for o in (init_sql, *schema_ops)),
        )
    return None


def _schema_files(s: Settings) -> list[OperationMeta]:
    ops = []
    schema_dir = f"{s.layout.init}/schema"
    if s.postgres_schema_files:
        directory_owned(
            server_readable(s, schema_dir, directory=True), "Create the schema directory"
        )
    for local, name in zip(s.postgres_schema_files, schema_file_names(s), strict=True):
        text = Path(local).read_text()
        ops.append(put_owned(text, server_readable(s, f"{schema_dir}/{name}")))
    if s.postgres_schema_files:
        script = server_readable(s, f"{s.layout.init}/{SCHEMA_PSQL}")
        ops.append(put_owned(render_schema_psql(s), script))
    return ops
