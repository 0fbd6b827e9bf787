"""pgBackRest on the host: repositories, passphrases and config before the server starts;
the stanza, ``pgbackrest check`` and a first full backup once it runs.

A converged host gets no operation: the stanza is created only when a repository lacks
it (a fact on the repository's backup.info), and ``check`` runs only when the
configuration or a passphrase changed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from pyinfra import host
from pyinfra.api import FactBase, deploy
from pyinfra.api.operation import OperationMeta
from pyinfra.facts.files import File
from pyinfra.operations import files, server

from pgsteady.backup import pgbackrest
from pgsteady.settings import Settings
from pgsteady.stack.hostfiles import server_readable
from tasks import cluster_member, pgbackrest_peers
from tasks.noop_guard import is_file
from tasks.ownership import directory_owned, ensure_owned, owner_and_mode, put_owned


class StanzaStatus(FactBase[dict[int, int]]):
    """pgBackRest's status code of the stanza per repository, read through the running
    server's container ({}: no container, or no answer): 0 is ok."""

    def command(self, ctl: str) -> str:
        return f"{ctl} pgbackrest info --output=json 2>/dev/null || true"

    def process(self, output: Iterable[str]) -> dict[int, int]:
        try:
            doc = json.loads("\n".join(output) or "[]")
        except ValueError:
            return {}
        out: dict[int, int] = {}
        for stanza in doc if isinstance(doc, list) else []:
            for repo in (stanza.get("repo") or []) if isinstance(stanza, dict) else []:
                try:
                    out[int(repo["key"])] = int(repo["status"]["code"])
                except (KeyError, TypeError, ValueError):
                    continue  # an answer it cannot read: that repository counts as missing
        return out


@deploy("pgBackRest repositories and configuration")
def prepare(s: Settings) -> list[OperationMeta]:
    """Before compose starts the server: every bind-mounted path exists with its owner."""
    if not s.pgbackrest_enabled:
        return []
    uid = s.postgres_uid
    changed: list[OperationMeta] = []
    for n, repo in pgbackrest.repos(s):
        if repo.kind != "posix":
            continue
        path = pgbackrest.repo_host_path(s, n, repo)
        if repo.path is None:
            files.directory(
                name="Create the parent of the pgBackRest repositories",
                path=f"{s.app_dir}/pgbackrest",
                user="root",
                group="root",
                mode="755",
            )
        # pgBackRest writes it as the server's uid (inside the container).
        made = files.directory(
            name=f"Create the pgBackRest repo{n} directory", path=path, mode="750"
        )
        owner_and_mode(path, uid, uid, "750", created_by=made)

    directory_owned(
        server_readable(s, pgbackrest.secrets_dir(s), directory=True),
        "Create the pgBackRest secrets directory",
    )
    peers = pgbackrest_peers.peers_of(s)
    for n, repo in pgbackrest.remote_repos(s):
        # A secret of this host and the backup host: made on the deploy machine, sent to both.
        phrase = pgbackrest_peers.shared_passphrase(s, str(repo.host), s.pgbackrest_stanza)
        text = pgbackrest.passphrase_include("global", n, phrase)
        dest = pgbackrest.secret_file(s, n)
        changed.append(pgbackrest_peers.put_passphrase(s, dest, text, f"repo{n}"))
    if peers:
        own = pgbackrest_peers.peer(host.name)
        changed += pgbackrest_peers.ensure_tls(s, own.address)
    for n, repo in pgbackrest.repos(s):
        if repo.kind != "posix":
            continue
        secret = pgbackrest.secret_file(s, n)
        generate = None
        if not is_file(secret):
            # Generated on the host: the passphrase never crosses the wire or enters a log.
            generate = server.shell(
                name=f"Generate the repo{n} cipher passphrase",
                commands=[pgbackrest.generate_secret_command(secret, n)],
            )
            changed.append(generate)
        ensure_owned(server_readable(s, secret), created_by=generate)

    directory_owned(
        server_readable(s, s.layout.config, directory=True), "Create the config directory"
    )
    conf = put_owned(
        pgbackrest.render_conf(s, peers),
        server_readable(s, f"{s.layout.config}/pgbackrest.conf"),
    )
    return [conf, *changed]


def _stanza_missing(s: Settings) -> bool:
    for n, repo in pgbackrest.repos(s):
        if repo.kind != "posix":
            continue
        info = f"{pgbackrest.repo_host_path(s, n, repo)}/backup/{s.pgbackrest_stanza}/backup.info"
        if not host.get_fact(File, path=info):
            return True
    remote = [n for n, _r in pgbackrest.remote_repos(s)]
    if remote:
        # 0 ok, 2 no valid backup yet (the backup host takes it): the stanza exists.
        # None: no output at all (a first deploy, before pgsteady-ctl or the container)
        status = host.get_fact(StanzaStatus, ctl=f"{s.layout.bin}/pgsteady-ctl") or {}
        return any(status.get(n) not in (0, 2) for n in remote)
    return False


@deploy("pgBackRest stanza and check")
def ensure_stanza(s: Settings, prepared: list[OperationMeta]) -> None:
    """Once the server runs: stanza-create (+ a first full backup of each repository on
    this host) where missing, else ``pgbackrest check`` when the configuration or a
    passphrase changed. Off-host repositories get their first backup from the backup
    host (tasks/pgbackrest_repository.py), later in the same run."""
    if not s.pgbackrest_enabled:
        return
    ctl = f"{s.layout.bin}/pgsteady-ctl pgbackrest"
    # A cluster's one stanza is created and checked from the member that leads (the
    # others are standbys, which pgBackRest cannot create a stanza from).
    leader = s.postgres_cluster_name is None or cluster_member.leads(s)
    if leader and _stanza_missing(s):
        server.shell(
            name="Create the pgBackRest stanza, check it, take a first full backup",
            commands=[
                # The server's asynchronous archive-push holds the archive lock for a moment
                # at a time (it retries the WAL that waits for the stanza): try again.
                f"n=0; until {ctl} stanza-create; do n=$((n + 1)); "
                '[ "$n" -lt 12 ] || exit 1; sleep 5; done',
                # WAL that failed before the stanza existed may hold the archiver in its
                # retry back-off past check's 60 s wait (seen once in CI): up to 3 tries.
                f'n=0; until {ctl} check; do n=$((n + 1)); [ "$n" -lt 3 ] || exit 1; done',
                *(f"{ctl} --repo={n} backup --type=full" for n in pgbackrest.local_repos(s)),
                # A verdict from the start (make verify reads it; the job renews it weekly).
                *(
                    f"{s.layout.bin}/pgsteady-ctl pgbackrest-verify {n}"
                    for n in pgbackrest.local_repos(s)
                ),  # fmt: skip
            ],
        )
        return
    side = pgbackrest.sidecar(s)
    if side is not None:
        # Its configuration and certificate are read when it starts (renewals included).
        server.shell(
            name="Restart the pgBackRest server of the backup host for its new files",
            commands=[f"docker restart {side['container_name']}"],
            _if=lambda: any(op.did_change() for op in prepared),
        )
    if leader:
        server.shell(
            name="Check pgBackRest after a configuration change",
            commands=[f"{ctl} check"],
            _if=lambda: any(op.did_change() for op in prepared),
        )
