"""PgBouncer's files on the host (pgsteady/stack/pgbouncer.py has the service).

``prepare`` runs before the stack starts (compose bind-mounts these files: a missing one
would become a directory): pgbouncer.ini (root:pgbouncer_uid 0640), the pooler's TLS
certificate (root 0644) and key (root:pgbouncer_uid 0440) and its auth file (0440, made on
the host by root: no secret crosses the wire). With pgsteady's CA the key and certificate
are the pooler's own, issued like the server's (tasks/tls.py: its names, renewed below
RENEW_DAYS) but serverAuth only; with operator-supplied certificates (postgres_tls_cert_file)
they are copies of the server's, made by root on the host. ``restart_on_change`` restarts
or reloads the pooler when one of them changed after the stack was up.
"""

from __future__ import annotations

import shlex

from pyinfra import host
from pyinfra.api.exceptions import DeployError
from pyinfra.api.operation import OperationMeta
from pyinfra.facts.files import File, Sha256File
from pyinfra.facts.server import Hostname
from pyinfra.operations import files, server

from pgsteady.ca_store import load_or_create_ca
from pgsteady.cluster import pooler
from pgsteady.settings import Settings
from pgsteady.stack import pgbouncer
from pgsteady.stack.hostfiles import Owned
from pgsteady.stack.pooler_route import Route
from pgsteady.tls import (
    CERT_FILE,
    KEY_FILE,
    SERVER_ONLY,
    TlsError,
    issue_server_cert,
    server_names,
)
from tasks.cluster import load_cluster
from tasks.facts import NumericStat
from tasks.ownership import owner_and_mode, put_owned
from tasks.tls import Fqdn, ca_directory, put_certificate, renewal_needed


def _paths(s: Settings) -> dict[str, str]:
    return {
        "config": f"{s.layout.config}/{pgbouncer.CONFIG}",
        "hba": f"{s.layout.config}/{pgbouncer.HBA}",
        "cert": f"{s.layout.tls}/{pgbouncer.POOLER_CERT}",
        "key": f"{s.layout.tls}/{pgbouncer.POOLER_KEY}",
        "userlist": f"{s.layout.secrets}/{pgbouncer.USERLIST}",
    }


def prepare(s: Settings, tls_ops: list[OperationMeta]) -> dict[str, list[OperationMeta]]:
    """The pooler's config, TLS key and certificate and auth file (removed when off);
    returns the operations whose change needs the pooler to reload its config (``reload``:
    the config, its rules, the auth file) or to restart (``restart``: its TLS key)."""
    paths = _paths(s)
    if not s.pgbouncer_enabled:
        # With the auth role's password (secrets.ensure makes it only with the pooler on;
        # init_db.sql drops the role itself).
        for path in [*paths.values(), f"{s.layout.secrets}/{pgbouncer.AUTH_SECRET}"]:
            files.file(name=f"Remove {path}", path=path, present=False)
        return {"reload": [], "restart": []}
    uid = s.pgbouncer_uid
    ops = [
        put_owned(pgbouncer.render_config(s, _route(s)), Owned(paths["config"], 0, uid, "640")),
        put_owned(pgbouncer.render_hba(s), Owned(paths["hba"], 0, uid, "640")),
    ]

    restart = _copies(s, paths, tls_ops) if s.postgres_tls_cert_file else _own_pair(s, paths)

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


def refuse_pool_overflow(s: Settings) -> None:
    """Stop the run before any operation when the cluster's members' pools would not fit
    in the leader's max_connections together (pgsteady.cluster.pooler.pool_errors)."""
    cluster = load_cluster(s)
    problems = pooler.pool_errors(s, len(cluster.members)) if cluster is not None else []
    if problems:
        raise DeployError(f"{host.name}: " + "\n  ".join(problems))


def _route(s: Settings) -> Route | None:
    """A cluster member's route to the leader (None: the single host's socket)."""
    cluster = load_cluster(s)
    if cluster is None:
        return None
    return pooler.route(s, cluster, cluster.member(host.name))


def _member_names(s: Settings) -> list[str]:
    """A cluster member's name and private address: the names its clients dial."""
    cluster = load_cluster(s)
    if cluster is None:
        return []
    member = cluster.member(host.name)
    return [member.name, member.address]


def restart_on_change(s: Settings, ops: dict[str, list[OperationMeta]]) -> None:
    """Once the stack runs: restart the pooler for a new TLS key (its clients reconnect);
    for a new config, rules or auth file, make it reload them (SIGHUP), which keeps its
    clients connected."""
    if not s.pgbouncer_enabled:
        return
    name = shlex.quote(pgbouncer.container_name(s))
    # A cluster member's stack starts later in the run (tasks/cluster_member.py): a
    # pooler that does not exist yet starts with the new files and needs neither.
    running = f"[ \"$(docker inspect -f '{{{{.State.Running}}}}' {name} 2>/dev/null)\" != true ] ||"
    restarted = server.shell(
        name="Restart PgBouncer (its TLS key changed)",
        commands=[f"{running} docker restart -t 10 {name}"],
        _if=lambda: any(o.did_change() for o in ops["restart"]),
    )
    server.shell(
        name="Reload PgBouncer's config, rules and auth file (SIGHUP; clients stay)",
        commands=[f"{running} docker kill -s HUP {name} >/dev/null"],
        _if=lambda: any(o.did_change() for o in ops["reload"]) and not restarted.did_change(),
    )


def _own_pair(s: Settings, paths: dict[str, str]) -> list[OperationMeta]:
    """The pooler's key and certificate from the inventory's CA, for the server's names
    (serverAuth only); replaced when missing, not of this CA, near expiry or naming other
    names, as tasks/tls.py does the server's. The server's key never leaves its file."""
    directory, label = ca_directory(s)
    try:
        ca = load_or_create_ca(directory, label)
    except TlsError as exc:
        raise DeployError(f"TLS: {exc}") from None
    names = server_names(
        hostname=str(host.get_fact(Hostname) or ""),
        fqdn=host.get_fact(Fqdn) or "",
        bind=s.postgres_bind,
        inventory_name=host.name,
        extra=[
            *s.postgres_tls_extra_names,
            str(host.data.get("ssh_hostname") or ""),
            *_member_names(s),
        ],
    )
    uid, cert, key = s.pgbouncer_uid, paths["cert"], paths["key"]
    reason = renewal_needed(cert, key, ca.cert_pem, names)
    if reason is None:
        owner_and_mode(cert, 0, 0, "644")
        owner_and_mode(key, 0, uid, "440")
        return []
    cert_pem, key_pem = issue_server_cert(ca, names, usages=SERVER_ONLY)
    return put_certificate("PgBouncer", cert, cert_pem, key, key_pem, uid, "440", f" ({reason})")


def _copies(
    s: Settings, paths: dict[str, str], tls_ops: list[OperationMeta]
) -> list[OperationMeta]:
    """Operator-supplied certificates: copies of the server's certificate (root 0644) and
    key (root:pgbouncer_uid 0440; the server's is root:postgres 0640), made by root on the
    host; again whenever they changed in this run (a new supplied pair)."""
    uid, tls = s.pgbouncer_uid, s.layout.tls
    ops = []
    for src, copy, group, mode in (
        (f"{tls}/{CERT_FILE}", paths["cert"], 0, "644"),
        (f"{tls}/{KEY_FILE}", paths["key"], uid, "440"),
    ):
        want = host.get_fact(Sha256File, path=src)
        stale = (
            want is None
            or host.get_fact(Sha256File, path=copy) != want
            or host.get_fact(NumericStat, path=copy) != (0, group, mode)
        )
        q_src, q_copy = shlex.quote(src), shlex.quote(copy)
        ops.append(
            server.shell(
                name=f"Install a copy of the server's {src} for PgBouncer"
                f" ({copy}, {mode} root:{group})",
                commands=[
                    f"umask 077 && install -o 0 -g {group} -m 0{mode} {q_src} {q_copy}.new"
                    f" && mv -f {q_copy}.new {q_copy}"
                ],
                _if=lambda stale=stale: stale or any(o.did_change() for o in tls_ops),
            )
        )
    return ops
