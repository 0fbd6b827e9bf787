"""pgBackRest on the host: repositories, passphrases and config before the server starts;
the stanza, ``pgbackrest check`` and a first full backup once it runs.

A converged host gets no operation: the stanza is created only when a repository lacks
it (a fact on the repository's backup.info), and ``check`` runs only when the
configuration or a passphrase changed.
"""

from __future__ import annotations

from pathlib import Path

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.api.operation import OperationMeta
from pyinfra.facts.files import File
from pyinfra.operations import files, server

from pgsteady import pgbackrest
from pgsteady.hostfiles import server_readable
from pgsteady.settings import Settings
from tasks.ownership import directory_owned, ensure_owned, owner_and_mode, put_owned

PITR = Path(__file__).resolve().parent.parent / "files" / "bin" / "pgsteady-pitr"


@deploy("pgBackRest repositories and configuration")
def prepare(s: Settings) -> list[OperationMeta]:
    """Before compose starts the server: every bind-mounted path exists with its owner."""
    if not s.pgbackrest_enabled:
        return []
    uid = s.postgres_uid
    changed: list[OperationMeta] = []
    for n, repo in pgbackrest.repos(s):
        path = pgbackrest.repo_host_path(s, n, repo)
        if repo.path is None:
            files.directory(
                name="pgBackRest repositories parent",
                path=f"{s.app_dir}/pgbackrest",
                user="root",
                group="root",
                mode="755",
            )
        # pgBackRest writes it as the server's uid (inside the container).
        made = files.directory(name=f"pgBackRest repo{n} directory", path=path, mode="750")
        owner_and_mode(path, uid, uid, "750", created_by=made)

    directory_owned(
        server_readable(s, pgbackrest.secrets_dir(s), directory=True), "pgBackRest secrets"
    )
    for n, _repo in pgbackrest.repos(s):
        secret = pgbackrest.secret_file(s, n)
        generate = None
        if not host.get_fact(File, path=secret):
            # Generated on the host: the passphrase never crosses the wire or enters a log.
            generate = server.shell(
                name=f"Generate the repo{n} cipher passphrase",
                commands=[pgbackrest.generate_secret_command(secret, n)],
            )
            changed.append(generate)
        ensure_owned(server_readable(s, secret), created_by=generate)

    directory_owned(server_readable(s, s.paths["config"], directory=True), "config directory")
    conf = put_owned(
        pgbackrest.render_conf(s), server_readable(s, f"{s.paths['config']}/pgbackrest.conf")
    )
    return [conf, *changed]


def _stanza_missing(s: Settings) -> bool:
    for n, repo in pgbackrest.repos(s):
        if repo.kind != "posix":
            continue
        info = f"{pgbackrest.repo_host_path(s, n, repo)}/backup/{s.pgbackrest_stanza}/backup.info"
        if not host.get_fact(File, path=info):
            return True
    return False


@deploy("pgBackRest stanza and check")
def ensure_stanza(s: Settings, prepared: list[OperationMeta]) -> None:
    """Once the server runs: stanza-create (+ a first full backup) where missing, else
    ``pgbackrest check`` when the configuration or a passphrase changed."""
    if not s.pgbackrest_enabled:
        return
    files.put(
        name="pgsteady-pitr",
        src=str(PITR),
        dest=f"{s.paths['bin']}/pgsteady-pitr",
        user="root",
        group="root",
        mode="755",
    )
    ctl = f"{s.paths['bin']}/pgsteady-ctl pgbackrest"
    if _stanza_missing(s):
        server.shell(
            name="pgBackRest stanza-create, check and a first full backup",
            commands=[
                f"{ctl} stanza-create",
                f"{ctl} check",
                f"{ctl} backup --type=full",
            ],
        )
        return
    server.shell(
        name="pgbackrest check (configuration changed)",
        commands=[f"{ctl} check"],
        _if=lambda: any(op.did_change() for op in prepared),
    )
