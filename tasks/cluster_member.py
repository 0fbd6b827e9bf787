"""A cluster member's Postgres: Patroni's files, the seed-first start, the DCS patch and
init_db.sql on the leader (issue 15, M3; docs/cluster.md).

Order (each step a point every host passes, tasks/barrier.py): etcd starts on the etcd
hosts; its RBAC is bootstrapped once; Patroni starts on the **seed** (the first member in
inventory order) and the deploy waits until the seed holds the leader key; only then do
the other members start, so an empty member never races the seed to initialise the
cluster, and they clone the leader with pg_basebackup. Last, one member (the seed) sends
the DCS patch, and the member that leads applies init_db.sql and the schema files.

The cluster's passwords are made once on the deploy machine and pushed by hash, 0640
root:postgres like a single host's generated ones (tasks/etcd.py's cluster_secret).
"""

from __future__ import annotations

import json
import secrets
import shlex
import string
from collections.abc import Iterable
from dataclasses import dataclass
from io import StringIO
from typing import Any

import yaml
from pyinfra import host
from pyinfra.api import FactBase
from pyinfra.api.operation import OperationMeta
from pyinfra.facts.files import FileContents
from pyinfra.operations import server

from pgsteady.backup import cluster_archive
from pgsteady.cluster import dcs, patroni
from pgsteady.cluster import member_service as ms
from pgsteady.cluster.certs import issue_etcd_client_cert
from pgsteady.cluster.etcd_service import container_name as etcd_container
from pgsteady.cluster.haproxy import render_haproxy_cfg
from pgsteady.cluster.topology import Cluster, Member
from pgsteady.postgres.conf_files import APP_PASSWORD_FILE, SCHEMA_PSQL
from pgsteady.settings import Settings
from pgsteady.stack.compose import INIT_SQL, SUPERUSER, secret_names
from pgsteady.stack.hostfiles import Owned, server_readable
from pgsteady.stack.layout import INIT_MOUNT, TLS_MOUNT
from tasks import cluster_adopt, haproxy_client_cert, haproxy_reload
from tasks.cluster import adopting, adoption_unrecorded, load_cluster
from tasks.etcd import cluster_secret, etcd_ca
from tasks.facts import DockerInspect
from tasks.noop_guard import guarded_put
from tasks.ownership import put_owned
from tasks.patroni_exec import PATRONICTL, exec_in, wait_leader
from tasks.tls import private_file, put_certificate, renewal_needed

#: The etcd password Patroni logs in with is etcd's own "patroni" user's (tasks/etcd.py).
SECRET_SOURCES = {"etcd_patroni_password": "etcd-patroni.password"}
DCS_MANAGED = "dcs-managed.json"


def _alnum() -> bytes:
    """40 letters and digits, as tasks/secrets.py makes a single host's."""
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(40)).encode()


def context(s: Settings) -> tuple[Cluster, Member] | None:
    """(cluster, this member), or None on a single host."""
    cluster = load_cluster(s)
    return None if cluster is None else (cluster, cluster.member(host.name))


def is_seed(s: Settings) -> bool:
    ctx = context(s)
    return ctx is not None and ctx[1] == ctx[0].members[0]


class PatroniDcsConfig(FactBase[Any]):
    """Patroni's dynamic configuration (``patronictl show-config``), None when the member's
    Patroni does not answer."""

    def command(self, container: str) -> str:
        argv = ["docker", "exec", "-u", "postgres", container, *dcs.show_argv(ms.PATRONI_DIR)]
        # only a successful answer: a failed exec prints its error on stdout (a container
        # without patronictl: the single host a cluster adopts)
        return f'if out=$({shlex.join(argv)} 2>/dev/null); then printf "%s\\n" "$out"; fi'

    def process(self, output: Iterable[str]) -> Any:
        text = "\n".join(output).strip()
        return yaml.safe_load(text) if text else None


class PatroniMembers(FactBase[Any]):
    """``patronictl list`` as JSON (member, role, state, timeline), None without Patroni."""

    def command(self, container: str) -> str:
        argv = ["docker", "exec", "-u", "postgres", container, *PATRONICTL, "list", "-f", "json"]
        return f"{shlex.join(argv)} 2>/dev/null || true"

    def process(self, output: Iterable[str]) -> Any:
        text = "\n".join(output).strip()
        return json.loads(text) if text.startswith("[") else None


def push_secrets(s: Settings, cluster: Cluster) -> list[OperationMeta]:
    """Every password of the member's stack, the same on every member (a replica is a copy
    of the leader's roles; Patroni logs in to its peers)."""
    ops = []
    for name in secret_names(s):
        value = cluster_secret(s, cluster, SECRET_SOURCES.get(name, name), _alnum)
        o = server_readable(s, f"{s.layout.secrets}/{name}")
        ops.append(
            private_file(
                name=f"Upload the cluster's {name} (0640 root:{o.gid}, not shown)",
                src=value,
                dest=o.path,
                uid=o.uid,
                gid=o.gid,
                mode=o.mode,
            )
        )
    return ops


def prepare(s: Settings) -> list[OperationMeta]:
    """The files a member's Patroni and HAProxy read, before the stack starts."""
    ctx = context(s)
    if ctx is None:
        return []
    cluster, member = ctx
    p = s.layout
    ops = _etcd_client_cert(s, cluster, member)
    paths = patroni.container_paths(s.postgres_version)
    desired = dcs.desired(s, cluster)
    replica = cluster_archive.replica_method(s)
    yml = patroni.render_patroni_yml(cluster, member, paths, desired, SUPERUSER, replica)
    ops.append(put_owned(yml, server_readable(s, f"{p.config}/{ms.PATRONI_YML}")))
    _restart_for_new_etcd_ca(s, ops[0])  # after patroni.yml: Patroni starts with the new one
    # custom_conf: an empty file, so the initdb sample postgresql.conf is never included
    custom = paths.custom_conf.rsplit("/", 1)[1]
    ops.append(
        put_owned(
            "# pgsteady: settings live in Patroni's DCS\n",
            server_readable(s, f"{p.config}/{custom}"),
        )
    )
    ops += haproxy_client_cert.ensure(s, member)
    cfg = render_haproxy_cfg(
        cluster,
        member,
        f"{TLS_MOUNT}/ca.crt",
        ms.STATS_SOCKET,
        ms.client_sources(s),
        ms.HAPROXY_CLIENT_MOUNT,
    )
    cfg_op = put_owned(cfg, Owned(f"{p.config}/{ms.HAPROXY_CFG}", 0, ms.HAPROXY_UID, "640"))
    ops.append(cfg_op)
    haproxy_reload.on_cfg(s, cfg_op, cfg)  # 'up' recreates nothing; a failed one is retried
    return ops


def _etcd_client_cert(s: Settings, cluster: Cluster, member: Member) -> list[OperationMeta]:
    """Patroni's etcd trust anchor (app_dir/tls/etcd-ca.crt, the cluster's etcd CA) and
    client certificate (no Common Name: pgsteady/cluster/certs.py), issued anew when
    tasks/tls.renewal_needed says so; its key 0640 root:postgres like the server's.
    Patroni's etcd client (urllib3) loads the certificate and key at each new connection,
    so a renewal needs no restart; a new CA file does (:func:`_restart_for_new_etcd_ca`).
    The first operation is the CA file's."""
    tls = f"{s.app_dir}/tls"
    crt, key = f"{tls}/{ms.ETCD_CLIENT_CERT}", f"{tls}/{ms.ETCD_CLIENT_KEY}"
    ca = etcd_ca(s, cluster)
    ca_op = guarded_put(
        name=f"Upload the cluster's etcd CA {tls}/{ms.ETCD_CA_CERT}",
        src=StringIO(ca.cert_pem.decode()),
        dest=f"{tls}/{ms.ETCD_CA_CERT}",
        user="root",
        group="root",
        mode="644",
    )
    ops = [ca_op]
    reason = renewal_needed(crt, key, ca.cert_pem, [member.name])
    if reason is not None:
        cert_pem, key_pem = issue_etcd_client_cert(ca, member.name)
        why, uid = f" ({reason})", s.postgres_uid
        ops += put_certificate("Patroni etcd client", crt, cert_pem, key, key_pem, uid, "640", why)
    return ops


def _restart_for_new_etcd_ca(s: Settings, ca_op: OperationMeta) -> None:
    """A running member whose etcd CA file changed (a cluster from before the etcd CA):
    restart its container, so Patroni's entrypoint copies the new patroni.yml (the etcd
    ``cacert`` path changed) and Patroni builds its etcd client anew; a reload does not
    re-read TLS paths. Every member at once, after etcd restarted with that CA."""
    if adopting(s):  # the running server is the single host's, restarted by _adopt
        return
    running = f"docker inspect -f '{{{{.State.Running}}}}' {s.container_name} 2>/dev/null"
    server.shell(
        name="Restart Patroni for the cluster's new etcd CA (a member that runs)",
        commands=[f"if {running} | grep -qx true; then docker restart {s.container_name}; fi"],
        _if=lambda: ca_op.did_change(),
    )


@dataclass
class Pending:
    """What postgres.ensure wrote and left for the cluster's ordered start."""

    compose_cmd: str
    triggers: list[OperationMeta]
    running: bool
    init_sql: OperationMeta | None = None
    schema: list[OperationMeta] | None = None


def _compose(s: Settings, p: Pending, *args: str) -> str:
    where = shlex.join(["-p", s.compose_project, "-f", s.layout.compose, *args])
    return f"{p.compose_cmd} {where}"


def _changed(p: Pending) -> Any:
    return None if not p.running else (lambda: any(o.did_change() for o in p.triggers))


def start_etcd(s: Settings, p: Pending | None, etcd_here: bool) -> None:
    """etcd alone, on the etcd hosts whose etcd does not run (Patroni needs its quorum and
    RBAC first): a first start runs on every etcd host at once, the members need each
    other for a quorum. A RUNNING etcd whose image or compose service changed is left to
    the seed's rolling step, which recreates one host at a time and waits until every
    etcd member is healthy before the next (R9 H1: never every member at once)."""
    if p is None or not etcd_here:
        return
    etcd_state = host.get_fact(DockerInspect, kind="container", object_id=etcd_container(s))
    if ((etcd_state or {}).get("State") or {}).get("Running"):
        return
    server.shell(
        name="Start etcd (its quorum before any Patroni)",
        commands=[_compose(s, p, "up", "-d", "etcd")],
    )


def start_member(s: Settings, p: Pending | None, seed_turn: bool) -> OperationMeta | None:
    """Patroni, HAProxy and the rest of the stack: on the seed when ``seed_turn`` (then
    wait until the cluster has a leader: the seed itself when it starts alone), on the
    other members after."""
    ctx = context(s)
    if p is None or ctx is None or is_seed(s) != seed_turn:
        return None
    if adopting(s):
        if seed_turn:
            p.running = False  # the rolling step leaves it alone: it runs the new stack
            return cluster_adopt.seed_step(s, ctx[1])
        if not p.running:
            cluster_adopt.require_leader(ctx[0])
    if p.running:  # a running member's new image or compose file: one at a time, by
        return None  # the seed's rolling step (tasks/cluster_roll.py, recreate_changed)
    cluster, member = ctx
    commands = [f"{s.layout.bin}/pgsteady-ctl up"]
    if seed_turn:
        commands.append(wait_leader(s, member.name))
    what = "the seed, until it leads" if seed_turn else "a member (clones the leader)"
    return server.shell(
        name=f"Start Patroni and HAProxy on {what}", commands=commands, _if=_changed(p)
    )


def converge_dcs(s: Settings) -> None:
    """The seed sends the DCS patch (nothing once converged) and records what it manages."""
    ctx = context(s)
    if ctx is None or not is_seed(s):
        return
    cluster, member = ctx
    if adoption_unrecorded(s):
        cluster_adopt.record_completed(s, member)
    desired = dcs.desired(s, cluster)
    managed_path = f"{s.layout.state}/{DCS_MANAGED}"
    lines = host.get_fact(FileContents, path=managed_path)
    before = json.loads("\n".join(lines)) if lines else []
    current = host.get_fact(PatroniDcsConfig, container=s.container_name)
    if current is not None:  # a new cluster took bootstrap.dcs: the same document
        change = dcs.patch(current, desired, before)
        if change:
            server.shell(
                name=f"Apply a patch to Patroni's dynamic configuration ({dcs.describe(change)})",
                commands=[
                    f"printf '%s' {shlex.quote(json.dumps(change))} | "
                    + exec_in(s, dcs.apply_argv(ms.PATRONI_DIR), stdin=True)
                ],
            )
    guarded_put(
        name=f"Write the DCS keys pgsteady manages ({managed_path})",
        src=StringIO(json.dumps(dcs.managed_paths(desired), indent=1) + "\n"),
        dest=managed_path,
        user="root",
        group="root",
        mode="600",
    )


def leads(s: Settings) -> bool:
    """This member holds the leader key now; before Patroni answers, the seed will."""
    members = host.get_fact(PatroniMembers, container=s.container_name)
    if members is None:
        return is_seed(s)
    return any(m.get("Member") == host.name and m.get("Role") == "Leader" for m in members)


def apply_sql(s: Settings, p: Pending | None) -> None:
    """init_db.sql and the schema files, on the member that leads (idempotent SQL; the
    seed's post-bootstrap already ran them on a new cluster)."""
    if p is None or p.init_sql is None or not leads(s):
        return
    init_sql = p.init_sql
    server.shell(
        name="Apply init_db.sql on the leader",
        commands=[f"{s.layout.bin}/pgsteady-ctl apply-sql {INIT_MOUNT}/{INIT_SQL}"],
        _if=lambda: init_sql.did_change(),
    )
    if p.schema:
        ops = [init_sql, *p.schema]
        args = [s.postgres_user, s.postgres_db, APP_PASSWORD_FILE, f"{INIT_MOUNT}/{SCHEMA_PSQL}"]
        server.shell(
            name="Apply the schema files as the application's role, on the leader",
            commands=[f"{s.layout.bin}/pgsteady-ctl apply-schema {shlex.join(args)}"],
            _if=lambda: any(o.did_change() for o in ops),
        )
