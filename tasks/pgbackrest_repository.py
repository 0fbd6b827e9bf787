"""A backup host of the inventory: the pgBackRest repository server, its first backups
of each database host, and their schedules (see pgsteady/backup/repository_host.py).

The deploy orders the steps across hosts: the server starts before any database host
creates its stanza through it, and a first full backup of each new stanza is taken after
(deploy.py calls :func:`prepare` first and :func:`first_backups` last).
"""

from __future__ import annotations

import shlex
from io import StringIO

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.api.exceptions import DeployError
from pyinfra.api.operation import OperationMeta
from pyinfra.facts.files import Link
from pyinfra.operations import files, server

from pgsteady.backup import pgbackrest
from pgsteady.backup import repository_host as repository
from pgsteady.settings import Settings
from pgsteady.stack.hostfiles import server_readable
from tasks import pgbackrest_peers
from tasks.facts import DockerInspect
from tasks.jobs import ensure_jobs
from tasks.ownership import directory_owned, owner_and_mode, put_owned


def check_topology(s: Settings) -> None:
    """Before any operation: a backup host can serve its clients; a database host's
    off-host repositories name backup hosts of the inventory."""
    pgbackrest_peers.check_unique_addresses()
    if pgbackrest_peers.is_backup_host():
        clients = pgbackrest_peers.clients_of(host.name)
        errors = repository.client_errors(s, host.name, clients)
        if errors:
            raise DeployError("backup host settings:\n  - " + "\n  - ".join(errors))
    else:
        pgbackrest_peers.peers_of(s)


def _healthy(s: Settings) -> bool:
    c = host.get_fact(DockerInspect, kind="container", object_id=repository.container_name(s))
    state = (c or {}).get("State") or {}
    return bool(state.get("Running")) and (state.get("Health") or {}).get("Status") == "healthy"


@deploy("pgBackRest repository server")
def prepare(s: Settings, compose_cmd: str, image_ops: list[OperationMeta]) -> None:
    """The repository directory, configuration, passphrases, certificate and the server."""
    clients = pgbackrest_peers.clients_of(host.name)
    uid = s.postgres_uid
    files.directory(name="Create app_dir", path=s.app_dir, user="root", group="root", mode="755")
    files.directory(
        name="Create the pgBackRest directory", path=f"{s.app_dir}/pgbackrest", user="root",
        group="root", mode="755",
    )  # fmt: skip
    files.directory(
        name="Create the state directory (verify verdicts)", path=repository.state_dir(s),
        user="root", group="root", mode="700",
    )  # fmt: skip
    path = repository.repo_dir(s)
    made = files.directory(name="Create the pgBackRest repository directory", path=path, mode="750")
    owner_and_mode(path, uid, uid, "750", created_by=made)

    directory_owned(
        server_readable(s, s.layout.config, directory=True), "Create the config directory"
    )
    changed = [
        put_owned(
            repository.render_conf(s, clients),
            server_readable(s, f"{s.layout.config}/pgbackrest.conf"),
        )
    ]
    directory_owned(
        server_readable(s, pgbackrest.secrets_dir(s), directory=True),
        "Create the pgBackRest secrets directory",
    )
    for c in (group[0] for group in repository.stanzas(clients)):
        phrase = pgbackrest_peers.shared_passphrase(s, host.name, c.stanza)
        text = pgbackrest.passphrase_include(c.stanza, c.repo, phrase)
        dest = repository.passphrase_file(s, c.stanza)
        changed.append(pgbackrest_peers.put_passphrase(s, dest, text, f"stanza {c.stanza}"))
    changed += pgbackrest_peers.ensure_tls(s, pgbackrest_peers.peer(host.name).address)

    compose_file = repository.compose_file(s)
    compose = files.put(
        name="Write pgbackrest-repository.yml",
        src=StringIO(repository.render_compose(s)),
        dest=compose_file,
        user="root",
        group="root",
        mode="640",
    )
    project = f"{s.compose_project}-repository"
    container = shlex.quote(repository.container_name(s))
    wait = (
        f"for i in $(seq 60); do [ \"$(docker inspect -f '{{{{.State.Health.Status}}}}' "
        f'{container})" = healthy ] && exit 0; sleep 1; done; '
        f"echo '{repository.container_name(s)} is not healthy' >&2; exit 1"
    )
    was_ok = _healthy(s)
    up_triggers = [compose, *image_ops]
    up = server.shell(
        name="Start or update the pgBackRest repository server, wait until healthy",
        commands=[
            f"{compose_cmd} -p {shlex.quote(project)} -f {shlex.quote(compose_file)} up -d",
            wait,
        ],
        _if=None if not was_ok else (lambda: any(o.did_change() for o in up_triggers)),
    )
    server.shell(
        name="Restart the repository server for its new configuration",
        commands=[f"docker restart {container}", wait],
        _if=lambda: any(o.did_change() for o in changed) and not up.did_change(),
    )


@deploy("pgBackRest first backups on the backup host")
def first_backups(s: Settings) -> None:
    """A full backup of each stanza that has none yet in this repository, then the jobs."""
    clients = pgbackrest_peers.clients_of(host.name)
    for c in (group[0] for group in repository.stanzas(clients)):
        who = c.name if c.cluster is None else f"cluster {c.cluster}"
        latest = f"{repository.repo_dir(s)}/backup/{c.stanza}/latest"
        if host.get_fact(Link, path=latest):
            continue
        server.shell(
            name=f"Take and verify the first full backup of {who} (stanza {c.stanza})",
            commands=[
                shlex.join(repository.command(s, c, "backup", "--type=full")),
                # A verdict from the start: make verify fails while none exists.
                shlex.join(repository.verify_command(s, c)),
            ],
        )
    ensure_jobs(s, [(job, True) for job in repository.jobs(s, clients)])
