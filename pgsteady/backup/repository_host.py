"""A backup host: the pgBackRest repository that database hosts keep off their own disk.

Hosts of the inventory's ``backup`` group run no Postgres. Each runs ``pgbackrest
server`` in a container (pgsteady's Debian image, so the same pgBackRest version as its
clients) over one directory, ``app_dir/pgbackrest/repository``, holding one stanza per
database host that names it in ``pgbackrest_repos`` (``kind: host``). Database hosts push
WAL and restore through that server; the backup host takes their full and differential
backups (pgBackRest runs backups where the repository is) through each database host's
own server, and verifies them. Every connection is TLS with certificates of the
inventory's CA, and each server admits only the certificates it expects, per stanza.

Pure: the clients (read from the inventory by tasks/pgbackrest_repository.py) in, text
and jobs out.
"""

from __future__ import annotations

from dataclasses import dataclass

from pgsteady.backup import cluster_archive, pgbackrest
from pgsteady.render import render
from pgsteady.settings import Settings
from pgsteady.stack.jobs import Job
from pgsteady.stack.layout import PGDATA

GROUP = "backup"
REPO_MOUNT = "/var/lib/pgbackrest/repository"


@dataclass(frozen=True)
class Client:
    """A database host whose ``pgbackrest_repos`` names this backup host."""

    name: str
    peer: pgbackrest.Peer
    stanza: str
    repo: int  # the repository's number in the client's list (repoN on both ends)
    retention_full: int
    retention_diff: int
    full_schedule: str
    diff_schedule: str
    verify_schedule: str
    postgres_version: int
    process_max: int
    #: a cluster member's cluster (its members share one stanza), and its Postgres port
    cluster: str | None = None
    pg_port: int = 5432


def repo_dir(s: Settings) -> str:
    """The repository directory on the backup host (written by the server's uid)."""
    return f"{s.app_dir}/pgbackrest/repository"


def container_name(s: Settings) -> str:
    return f"{s.compose_project}-pgbackrest-repository"


def compose_file(s: Settings) -> str:
    return f"{s.app_dir}/pgbackrest-repository.yml"


def passphrase_file(s: Settings, stanza: str) -> str:
    return f"{pgbackrest.secrets_dir(s)}/{stanza}.conf"


def client_errors(s: Settings, name: str, clients: list[Client]) -> list[str]:
    """What stops ``name`` from serving these clients, each with the fix."""
    errors = []
    if s.postgres_image_source not in ("debian", "auto"):
        errors.append(
            f"{name}: postgres_image_source = {s.postgres_image_source!r}: a backup host runs "
            "pgBackRest from pgsteady's Debian-built image; use 'debian' or 'auto'"
        )
    if pgbackrest.is_loopback(s.postgres_bind):
        errors.append(
            f"{name}: postgres_bind = {s.postgres_bind!r}: database hosts reach the backup "
            "host's pgBackRest server there; use the host's private address"
        )
    if len({c.cluster or f"host {c.name}" for c in clients}) > 1:
        # One database host, or the members of one cluster (one stanza, one archive).
        # pgBackRest's TLS server checks the stanza when a client connects, then serves
        # any path of the repository: database hosts sharing one would reach each other's
        # backups and passphrases.
        errors.append(
            f"{name}: database hosts {', '.join(c.name for c in clients)} all name it in "
            "pgbackrest_repos; a backup host keeps one database host's or one cluster's "
            "repository (its server lets a client reach the whole repository): give each its "
            "own backup host"
        )
    stanzas: dict[str, str] = {}
    numbers = sorted({c.repo for c in clients})
    if len(numbers) > 1:
        errors.append(
            f"{name}: its database hosts list it at different places in pgbackrest_repos "
            f"(repo {', '.join(map(str, numbers))}); pgBackRest needs the same repoN on both "
            "ends: put it at the same position on every database host"
        )
    for c in clients:
        if c.stanza in stanzas and c.cluster is None:
            errors.append(
                f"{c.name}: pgbackrest_stanza = {c.stanza!r}: {stanzas[c.stanza]} uses it too "
                f"in backup host {name}'s repository; give each database host its own stanza"
            )
        stanzas[c.stanza] = c.name
        if c.postgres_version != s.postgres_version:
            errors.append(
                f"{c.name}: postgres_version = {c.postgres_version}: backup host {name} has "
                f"postgres_version = {s.postgres_version}; pgBackRest must be the same version "
                "on both ends, which the same image guarantees: set the same postgres_version"
            )
    return errors


def conf_context(s: Settings, clients: list[Client]) -> dict[str, object]:
    """Template context (pgbackrest.conf.j2) of the backup host."""

    numbers = sorted({c.repo for c in clients}) or [1]
    return {
        "repos": [
            [(f"repo{n}-path", REPO_MOUNT), (f"repo{n}-cipher-type", pgbackrest.CIPHER_TYPE)]
            for n in numbers
        ],
        "secrets_mount": pgbackrest.SECRETS_MOUNT,
        "global": [
            *pgbackrest.server_tls_lines(
                pgbackrest.SERVER_PORT, sorted((c.peer.address, c.stanza) for c in clients)
            ),
            ("compress-type", "zst"),
            ("start-fast", "y"),
            ("log-path", pgbackrest.LOG_DIR),
            ("log-level-console", "info"),
            ("log-level-file", "info"),
        ],
        "stanzas": [_stanza(group) for group in stanzas(clients)],
    }


def stanzas(clients: list[Client]) -> list[list[Client]]:
    """The clients by stanza (a cluster's members share one), in stanza order."""
    by: dict[str, list[Client]] = {}
    for c in clients:
        by.setdefault(c.stanza, []).append(c)
    return [by[k] for k in sorted(by)]


def _stanza(group: list[Client]) -> tuple[str, list[tuple[str, str]]]:
    """One stanza's section: a single host as pg1, exactly as before; a cluster's members
    as pg1..pgN with standby backups (pgsteady.backup.cluster_archive.stanza_members)."""
    c = group[0]
    if c.cluster is None:
        pg = [*pgbackrest.client_tls_lines("pg1", c.peer), ("pg1-path", PGDATA)]
    else:
        pg = cluster_archive.stanza_members([m.peer for m in group], c.pg_port)
    return (
        c.stanza,
        [
            *pg,
            ("process-max", str(c.process_max)),
            (f"repo{c.repo}-retention-full-type", "count"),
            (f"repo{c.repo}-retention-full", str(c.retention_full)),
            (f"repo{c.repo}-retention-diff", str(c.retention_diff)),
        ],
    )


def render_conf(s: Settings, clients: list[Client]) -> str:
    return render("pgbackrest.conf.j2", **conf_context(s, clients))


def compose_context(s: Settings) -> dict[str, object]:
    """Template context of the backup host's compose file (one service)."""
    uid = s.postgres_uid
    return {
        "service": "pgbackrest-repository",
        "image": s.image_alias,
        "container_name": container_name(s),
        "restart": s.postgres_restart_policy,
        "user": f"{uid}:{uid}",
        "command": [
            "pgbackrest",
            f"--config={pgbackrest.CONF_FILE}",
            f"--config-include-path={pgbackrest.SECRETS_MOUNT}",
            "server",
        ],
        "ports": [f"{s.postgres_bind}:{s.pgbackrest_tls_port}:{pgbackrest.SERVER_PORT}"],
        "volumes": [
            f"{repo_dir(s)}:{REPO_MOUNT}",
            f"{s.layout.config}:/etc/pgsteady:ro",
            f"{pgbackrest.secrets_dir(s)}:{pgbackrest.SECRETS_MOUNT}:ro",
            f"{s.app_dir}/tls:{pgbackrest.TLS_DIR_MOUNT}:ro",
            f"{s.app_dir}/tls/{pgbackrest.TLS_KEY}:{pgbackrest.TLS_KEY_MOUNT}:ro",
        ],
        "environment": {
            "PGBACKREST_CONFIG": pgbackrest.CONF_FILE,
            "PGBACKREST_CONFIG_INCLUDE_PATH": pgbackrest.SECRETS_MOUNT,
        },
        "healthcheck": [
            "CMD",
            "pgbackrest",
            "server-ping",
            "127.0.0.1",
            f"--tls-server-port={pgbackrest.SERVER_PORT}",
        ],  # fmt: skip
        "logging": {"max-size": s.docker_log_max_size, "max-file": str(s.docker_log_max_file)},
        "labels": {"io.pgsteady.project": s.compose_project, "io.pgsteady.role": "backup"},
    }


def render_compose(s: Settings) -> str:
    return render("pgbackrest-repository.yml.j2", **compose_context(s))


def command(s: Settings, c: Client, *args: str) -> tuple[str, ...]:
    """``pgbackrest`` for one client's stanza and repository, in the server's container."""
    uid = str(s.postgres_uid)
    return ("docker", "exec", "-u", uid, container_name(s), "pgbackrest",
            f"--stanza={c.stanza}", f"--repo={c.repo}", *args)  # fmt: skip


#: ``pgbackrest verify`` exits 0 even when it finds corrupt or missing files (it prints
#: ``status: error``): the job asks for every result and fails unless it says ``status:
#: ok`` with no file missing or invalid (the rule of ``pgsteady-ctl pgbackrest-verify``).
VERIFY_JUDGE = (
    'v=$1; shift; out=$("$@" --output=text --verbose 2>&1); rc=$?; printf "%s\\n" "$out"; '
    'bad="status: (error|invalid)|(missing|checksum invalid|size invalid|other): [1-9]"; '
    'ok=false; [ "$rc" -eq 0 ] && printf "%s\\n" "$out" | grep -q "^ *status: ok" '
    '&& ! printf "%s\\n" "$out" | grep -Eq "$bad" && ok=true; '
    'printf \'{"finished": %s, "ok": %s}\\n\' "$(date +%s)" "$ok" > "$v.tmp" '
    '&& mv -f "$v.tmp" "$v"; '
    '[ "$ok" = true ]'
)


def state_dir(s: Settings) -> str:
    """Root-only directory of the backup host's verdicts (``make verify`` reads them)."""
    return f"{s.app_dir}/state"


def verdict_file(s: Settings, stanza: str) -> str:
    return f"{state_dir(s)}/verify-{stanza}.json"


def verify_command(s: Settings, c: Client) -> tuple[str, ...]:
    """The judged verify of one stanza: fails, and keeps the verdict, unless it is sound."""
    judged = ("sh", "-c", VERIFY_JUDGE, "pgbackrest-verify", verdict_file(s, c.stanza))
    return (*judged, *command(s, c, "verify"))


def jobs(s: Settings, clients: list[Client]) -> list[Job]:
    """Full and differential backups and verify of each client, on its own schedules."""
    out = []
    for group in stanzas(clients):
        c = group[0]  # a cluster's stanza: one set of jobs, from whichever member serves
        who = c.name if c.cluster is None else f"cluster {c.cluster}"
        for kind, schedule, args in (
            ("full", c.full_schedule, ("backup", "--type=full")),
            ("diff", c.diff_schedule, ("backup", "--type=diff")),
            ("verify", c.verify_schedule, ("verify",)),
        ):
            unit = f"pgsteady-repository-{kind}-{c.stanza}"
            what = "verify" if kind == "verify" else f"pgBackRest {kind} backup"
            argv = verify_command(s, c) if kind == "verify" else command(s, c, *args)
            out.append(
                Job(
                    unit=unit,
                    description=f"{what} of {who} (stanza {c.stanza})",
                    schedule=schedule,
                    command=argv,
                    log_tag=unit,
                )
            )
    return out
