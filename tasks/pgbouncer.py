"""PgBouncer's files on the host (pgsteady/stack/pgbouncer.py has the service).

``prepare`` runs before the stack starts (compose bind-mounts these files: a missing one
would become a directory): pgbouncer.ini (root:pgbouncer_uid 0640), the pooler's copy of
the server's TLS key and its auth file (both root:pgbouncer_uid 0440, made on the host by
root: no secret crosses the wire). ``restart_on_change`` restarts the pooler when one of
them changed after the stack was up.
"""

from __future__ import annotations

import shlex

from pyinfra import host
from pyinfra.api.operation import OperationMeta
from pyinfra.facts.files import File, Sha256File
from pyinfra.operations import files, server

from pgsteady.settings import Settings
from pgsteady.stack import pgbouncer
from pgsteady.stack.hostfiles import Owned
from pgsteady.tls import KEY_FILE
from tasks.facts import NumericStat
from tasks.ownership import put_owned


def _paths(s: Settings) -> dict[str, str]:
    return {
        "config": f"{s.layout.config}/{pgbouncer.CONFIG}",
        "hba": f"{s.layout.config}/{pgbouncer.HBA}",
        "key": f"{s.layout.tls}/{pgbouncer.KEY_COPY}",
        "userlist": f"{s.layout.secrets}/{pgbouncer.USERLIST}",
    }


def prepare(s: Settings, tls_ops: list[OperationMeta]) -> dict[str, list[OperationMeta]]:
    """The pooler's config, key copy and auth file (removed when the pooler is off);
    returns the operations whose change needs the pooler to reload its config (``reload``:
    the config, its rules, the auth file) or to restart (``restart``: its TLS key)."""
    paths = _paths(s)
    if not s.pgbouncer_enabled:
        for path in paths.values():
            files.file(name=f"Remove {path}", path=path, present=False)
        return {"reload": [], "restart": []}
    uid = s.pgbouncer_uid
    ops = [
        put_owned(pgbouncer.render_config(s), Owned(paths["config"], 0, uid, "640")),
        put_owned(pgbouncer.render_hba(s), Owned(paths["hba"], 0, uid, "640")),
    ]

    # The server's key, copied by root on the host for the pooler's gid (the server's copy
    # is root:postgres 0640); again whenever the key changed (renewal) in this run.
    src, copy = f"{s.layout.tls}/{KEY_FILE}", paths["key"]
    want = host.get_fact(Sha256File, path=src)
    stale = (
        want is None
        or host.get_fact(Sha256File, path=copy) != want
        or host.get_fact(NumericStat, path=copy) != (0, uid, "440")
    )
    q_src, q_copy = shlex.quote(src), shlex.quote(copy)
    restart = [
        server.shell(
            name=f"Write PgBouncer's copy of the server's TLS key ({copy}, 0440 root:{uid})",
            commands=[
                f"umask 077 && install -o 0 -g {uid} -m 0440 {q_src} {q_copy}.new"
                f" && mv -f {q_copy}.new {q_copy}"
            ],
            _if=lambda: stale or any(o.did_change() for o in tls_ops),
        )
    ]

    # The auth file: the auth role's password (secrets.ensure made it) and a generated
    # admin console password, written once; only owner and mode are kept after that.
    userlist = paths["userlist"]
    if not host.get_fact(File, path=userlist):
        ops.append(
            server.shell(
                name=f"Write PgBouncer's auth file {userlist} (0440 root:{uid}, not shown)",
                commands=[pgbouncer.render_userlist_command(s, userlist)],
            )
        )
    elif host.get_fact(NumericStat, path=userlist) != (0, uid, "440"):
        q = shlex.quote(userlist)
        ops.append(
            server.shell(
                name=f"Set {userlist}'s owner and mode (0440 root:{uid})",
                commands=[f"chown 0:{uid} {q} && chmod 0440 {q}"],
            )
        )
    return {"reload": ops, "restart": restart}


def restart_on_change(s: Settings, ops: dict[str, list[OperationMeta]]) -> None:
    """Once the stack runs: restart the pooler for a new TLS key (its clients reconnect);
    for a new config, rules or auth file, make it reload them (SIGHUP), which keeps its
    clients connected."""
    if not s.pgbouncer_enabled:
        return
    name = shlex.quote(pgbouncer.container_name(s))
    restarted = server.shell(
        name="Restart PgBouncer (its TLS key changed)",
        commands=[f"docker restart -t 10 {name}"],
        _if=lambda: any(o.did_change() for o in ops["restart"]),
    )
    server.shell(
        name="Reload PgBouncer's config, rules and auth file (SIGHUP; clients stay)",
        commands=[f"docker kill -s HUP {name} >/dev/null"],
        _if=lambda: any(o.did_change() for o in ops["reload"]) and not restarted.did_change(),
    )
