"""pgBackRest inside the Postgres container: configuration, mounts, commands and checks.

The server archives every WAL segment with ``pgbackrest archive-push`` (asynchronous,
queue bounded by ``pgbackrest_archive_queue_max``); scheduled jobs take full and
differential backups and verify the repository; ``make restore-pitr`` restores from it.

Where things are (container paths; the host side is in brackets):

* ``/etc/pgsteady/pgbackrest.conf``   rendered here [app_dir/config, root:999 0640]
* ``/etc/pgbackrest/conf.d/repoN.conf`` the repository passphrases, generated on the host
  [app_dir/secrets/pgbackrest, root:999 0640 in 0750]: the server's uid reads them,
  only root can change them, they are never rendered, uploaded, printed or put in env
* ``/var/lib/pgbackrest/repoN``        a posix repository [app_dir/pgbackrest/repoN,
  owned by the server's uid: pgBackRest writes it]
* ``/var/lib/postgresql/data/pgbackrest/spool``  the async push queue, on the data volume
  beside PGDATA; logs in the image's ``/var/log/pgbackrest`` (and the server log)

Off-host repositories (``kind: host``): the repository lives on a host of the
inventory's ``backup`` group (pgsteady/backup/repository_host.py). Both ends run
``pgbackrest server`` (TLS, certificates from the inventory's CA, each side admitting only
the other's certificate for this stanza): this host pushes WAL and restores through it;
the backup host takes the backups through this host's server, a sidecar container that
shares the data volume and the server's socket directory.

Pure: Settings in, text out.

Above 400 lines because pgBackRest's configuration, mounts, commands and
their checks must agree with each other, and splitting them would spread one contract
over several files.
"""

from __future__ import annotations

import ipaddress
import shlex
from dataclasses import dataclass

from pgsteady.render import render
from pgsteady.settings import PgBackRestRepo, Settings
from pgsteady.stack.layout import DATA_MOUNT, PGDATA
from pgsteady.units import parse_size

CONF_FILE = "/etc/pgsteady/pgbackrest.conf"
SECRETS_MOUNT = "/etc/pgbackrest/conf.d"
REPO_MOUNT = "/var/lib/pgbackrest"
WORK_DIR = "/var/lib/postgresql/data/pgbackrest"
LOG_DIR = "/var/log/pgbackrest"
SOCKET_DIR = "/var/run/postgresql"
CIPHER_TYPE = "aes-256-cbc"
#: pgBackRest's TLS server inside a container (published on postgres_bind:pgbackrest_tls_port).
SERVER_PORT = 8432
#: The pgBackRest certificate (always from the inventory's CA, also when the Postgres
#: certificate is the operator's): host files under app_dir/tls, container paths.
TLS_CERT, TLS_CA, TLS_KEY = "pgbackrest.crt", "pgbackrest-ca.crt", "private/pgbackrest.key"
TLS_DIR_MOUNT = "/etc/pgsteady-tls"
TLS_KEY_MOUNT = "/etc/pgsteady-pgbackrest-key/pgbackrest.key"
#: The shared socket directory of the server and the sidecar (compose volume).
SOCKET_VOLUME = "pgrun"
#: Server parameters pgsteady sets while archiving is on (postgres_settings may not).
ARCHIVE_KEYS = ("archive_mode", "archive_command", "archive_library", "archive_timeout")


@dataclass(frozen=True)
class Peer:
    """Another inventory host's pgBackRest server: how to reach it and the name its
    certificate carries (its address)."""

    name: str
    address: str
    port: int


def peer_address(name: str, data: dict[str, object]) -> str:
    """How other hosts reach ``name``'s pgBackRest server (and its certificate's name)."""
    for key in ("pgbackrest_address", "ssh_hostname"):
        value = data.get(key)
        if isinstance(value, str) and value:
            return value
    return name


def repos(s: Settings) -> list[tuple[int, PgBackRestRepo]]:
    """(number, repository): repo1 is the first of ``pgbackrest_repos``."""
    return list(enumerate(s.pgbackrest_repos, 1))


def local_repos(s: Settings) -> list[int]:
    """Numbers of the repositories on this host (backups of those run here)."""
    return [n for n, r in repos(s) if r.kind == "posix"]


def remote_repos(s: Settings) -> list[tuple[int, PgBackRestRepo]]:
    """(number, repository) of the repositories on backup hosts."""
    if not s.pgbackrest_enabled:
        return []
    return [(n, r) for n, r in repos(s) if r.kind == "host"]


def server_tls_lines(port: int, auth: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """``tls-server-*`` options of a pgBackRest server admitting (client name, stanza)."""
    return [
        ("tls-server-address", "*"),
        ("tls-server-port", str(port)),
        ("tls-server-cert-file", f"{TLS_DIR_MOUNT}/{TLS_CERT}"),
        ("tls-server-key-file", TLS_KEY_MOUNT),
        ("tls-server-ca-file", f"{TLS_DIR_MOUNT}/{TLS_CA}"),
        *(("tls-server-auth", f"{client}={stanza}") for client, stanza in auth),
    ]


def client_tls_lines(prefix: str, peer: Peer) -> list[tuple[str, str]]:
    """Options (``repoN-host*`` or ``pgN-host*``) that reach ``peer``'s server over TLS."""
    return [
        (f"{prefix}-host", peer.address),
        (f"{prefix}-host-type", "tls"),
        (f"{prefix}-host-port", str(peer.port)),
        (f"{prefix}-host-cert-file", f"{TLS_DIR_MOUNT}/{TLS_CERT}"),
        (f"{prefix}-host-key-file", TLS_KEY_MOUNT),
        (f"{prefix}-host-ca-file", f"{TLS_DIR_MOUNT}/{TLS_CA}"),
    ]


def passphrase_include(section: str, number: int, passphrase: str) -> str:
    """A conf.d include that sets ``repoN-cipher-pass`` for ``section`` (rendered on the
    deploy machine for off-host repositories; the text is uploaded, never shown)."""
    return f"[{section}]\nrepo{number}-cipher-pass={passphrase}\n"


def repo_host_path(s: Settings, number: int, repo: PgBackRestRepo) -> str:
    """A posix repository's directory on the host."""
    return repo.path or f"{s.app_dir}/pgbackrest/repo{number}"


def repo_mount(number: int) -> str:
    return f"{REPO_MOUNT}/repo{number}"


def secrets_dir(s: Settings) -> str:
    return f"{s.layout.secrets}/pgbackrest"


def secret_file(s: Settings, number: int) -> str:
    """The host file holding ``repoN-cipher-pass`` (generated on the host, never read here)."""
    return f"{secrets_dir(s)}/repo{number}.conf"


def generate_secret_command(path: str, number: int) -> str:
    """Shell that writes a new passphrase include file; the command itself holds no secret."""
    q = shlex.quote(path)
    return (
        f"umask 077 && {{ printf '[global]\\nrepo{number}-cipher-pass='; "
        "tr -dc 'A-Za-z0-9' </dev/urandom | head -c 64; echo; } "
        f"> {q}.new && mv {q}.new {q}"
    )


def environment(s: Settings) -> dict[str, str]:
    """Container env (paths and the stanza, no secret): any ``pgbackrest`` run in the
    container, by the server or by ``docker exec``, finds its configuration."""
    if not s.pgbackrest_enabled:
        return {}
    return {
        "PGBACKREST_CONFIG": CONF_FILE,
        "PGBACKREST_CONFIG_INCLUDE_PATH": SECRETS_MOUNT,
        "PGBACKREST_STANZA": s.pgbackrest_stanza,
    }


def volumes(s: Settings) -> list[str]:
    """Compose volume lines: the passphrases (read-only) and each posix repository; with an
    off-host repository also the pgBackRest key and the socket directory it shares."""
    if not s.pgbackrest_enabled:
        return []
    out = [f"{secrets_dir(s)}:{SECRETS_MOUNT}:ro"]
    out += [f"{repo_host_path(s, n, r)}:{repo_mount(n)}" for n, r in repos(s) if r.kind == "posix"]
    if remote_repos(s):
        out += [f"{s.app_dir}/tls/{TLS_KEY}:{TLS_KEY_MOUNT}:ro", f"{SOCKET_VOLUME}:{SOCKET_DIR}"]
    return out


def sidecar(s: Settings) -> dict[str, object] | None:
    """The compose service running this host's pgBackRest server for the backup hosts
    (None without an off-host repository): same image, the server's uid, the data volume
    and socket directory of the Postgres container, published like Postgres."""
    if not remote_repos(s):
        return None

    return {
        "name": "pgbackrest",
        "container_name": f"{s.compose_project}-pgbackrest",
        "user": f"{s.postgres_uid}:{s.postgres_uid}",
        # No passphrase and a read-only data volume: the backup host encrypts what it
        # reads through this server, and nothing it sends may change the data directory.
        "command": ["pgbackrest", f"--config={CONF_FILE}", "server"],
        "ports": [f"{s.postgres_bind}:{s.pgbackrest_tls_port}:{SERVER_PORT}"],
        "volumes": [
            f"pgdata:{DATA_MOUNT}:ro",
            f"{SOCKET_VOLUME}:{SOCKET_DIR}",
            f"{s.layout.config}:/etc/pgsteady:ro",
            f"{s.app_dir}/tls:{TLS_DIR_MOUNT}:ro",
            f"{s.app_dir}/tls/{TLS_KEY}:{TLS_KEY_MOUNT}:ro",
        ],
        "healthcheck": [
            "CMD",
            "pgbackrest",
            "server-ping",
            "127.0.0.1",
            f"--tls-server-port={SERVER_PORT}",
        ],
    }


def command(s: Settings, *args: str) -> list[str]:
    """``pgbackrest`` with every option it needs spelled out (independent of env)."""
    return [
        "pgbackrest",
        f"--config={CONF_FILE}",
        f"--config-include-path={SECRETS_MOUNT}",
        f"--stanza={s.pgbackrest_stanza}",
        *args,
    ]


def archive_command(s: Settings) -> str:
    return " ".join(command(s, "archive-push", "%p"))


def server_settings(s: Settings) -> dict[str, str]:
    """postgresql.conf lines for archiving (none when pgBackRest is off)."""
    if not s.pgbackrest_enabled:
        return {}
    return {
        "archive_mode": "on",
        "archive_command": archive_command(s),
        "archive_timeout": f"{int(s.seconds('pgbackrest_archive_timeout'))}s",
    }


def _size(value: str) -> str:
    """A size for pgbackrest.conf: whole MiB (pgBackRest sizes are powers of 1024)."""
    return f"{max(1, parse_size(value) // (1024 * 1024))}MiB"


def retention_lines(n: int, r: PgBackRestRepo) -> list[tuple[str, str]]:
    return [
        (f"repo{n}-cipher-type", CIPHER_TYPE),
        (f"repo{n}-retention-full-type", "count"),
        (f"repo{n}-retention-full", str(r.retention_full)),
        (f"repo{n}-retention-diff", str(r.retention_diff)),
    ]


def conf_context(s: Settings, peers: dict[str, Peer] | None = None) -> dict[str, object]:
    """Template context for pgbackrest.conf.j2; ``peers`` are the backup hosts that
    ``kind: host`` repositories name (and this host's own address, under its name)."""
    from pgsteady.backup.cluster_archive import pg_port
    from pgsteady.stack.compose import SUPERUSER

    peers = peers or {}
    repo_lines = []
    auth = []
    for n, r in repos(s):
        if r.kind == "host":
            peer = peers.get(str(r.host))
            if peer is None:
                raise ValueError(f"pgbackrest_repos[{n - 1}].host = {r.host!r}: no such peer")
            repo_lines.append([*client_tls_lines(f"repo{n}", peer), *retention_lines(n, r)])
            auth.append((peer.address, s.pgbackrest_stanza))
        else:
            repo_lines.append(
                [
                    (f"repo{n}-type", r.kind),
                    (f"repo{n}-path", repo_mount(n)),
                    *retention_lines(n, r),
                ]
            )
    return {
        "repos": repo_lines,
        "secrets_mount": SECRETS_MOUNT,
        "global": [
            *(server_tls_lines(SERVER_PORT, sorted(set(auth))) if auth else []),
            ("process-max", str(s.pgbackrest_process_max)),
            ("compress-type", "zst"),
            ("start-fast", "y"),
            ("archive-async", "y"),
            ("archive-push-queue-max", _size(s.pgbackrest_archive_queue_max)),
            ("spool-path", f"{WORK_DIR}/spool"),
            ("log-path", LOG_DIR),
            ("log-level-console", "info"),
            ("log-level-file", "info"),
        ],
        "stanzas": [
            (
                s.pgbackrest_stanza,
                [
                    ("pg1-path", PGDATA),
                    ("pg1-socket-path", SOCKET_DIR),
                    ("pg1-port", str(pg_port(s))),
                    ("pg1-user", SUPERUSER),
                ],
            )
        ],
    }


def render_conf(s: Settings, peers: dict[str, Peer] | None = None) -> str:
    return render("pgbackrest.conf.j2", **conf_context(s, peers))


def settings_errors(s: Settings) -> list[str]:
    """Combinations that cannot archive, each with the key, the value and what works."""
    from pgsteady.stack.image import SUITES

    if not s.pgbackrest_enabled:
        return []
    errors = []
    src = s.postgres_image_source
    if src in ("registry", "archive"):
        errors.append(
            f"postgres_image_source = {src!r}: WAL archiving (pgbackrest_enabled = True) needs "
            "pgBackRest inside the image, which only pgsteady's Debian-built image has; use "
            "'debian' (or 'auto'), or set pgbackrest_enabled = False to run without "
            "point-in-time recovery"
        )
    if src == "auto" and s.postgres_version not in SUITES:
        errors.append(
            f"postgres_version = {s.postgres_version}: with pgbackrest_enabled = True the image "
            f"is built from Debian packages, which have only {' or '.join(map(str, SUITES))}; "
            "use one of those or set pgbackrest_enabled = False"
        )
    if s.postgres_db_type == "desktop":
        errors.append(
            "postgres_db_type = 'desktop': its wal_level = minimal cannot archive WAL; use "
            "another workload or set pgbackrest_enabled = False"
        )
    for key in s.postgres_settings:
        if key.strip().lower() in ARCHIVE_KEYS:
            errors.append(
                f"postgres_settings[{key!r}]: pgBackRest archiving manages it; use "
                "pgbackrest_archive_timeout, or pgbackrest_enabled = False to manage "
                "archiving yourself"
            )
    if str(s.postgres_settings.get("wal_level", "")).lower() == "minimal":
        errors.append(
            "postgres_settings['wal_level'] = 'minimal': cannot archive WAL; use replica "
            "(the default) or set pgbackrest_enabled = False"
        )
    timeout = s.seconds("pgbackrest_archive_timeout")
    if timeout < 1 or timeout != int(timeout):
        errors.append(
            f"pgbackrest_archive_timeout = {s.pgbackrest_archive_timeout!r}: use whole seconds, "
            "at least 1s (e.g. '60s' or '5m')"
        )
    if parse_size(s.pgbackrest_archive_queue_max) < 64 * 1024 * 1024:
        errors.append(
            f"pgbackrest_archive_queue_max = {s.pgbackrest_archive_queue_max!r}: below 64MB "
            "(4 WAL segments) archiving would drop WAL at the first hiccup; use e.g. '1GB'"
        )
    errors += _remote_errors(s)
    seen: dict[str, int] = {}
    for n, r in repos(s):
        if r.kind != "posix":
            continue
        path = repo_host_path(s, n, r)
        if path in seen:
            errors.append(
                f"pgbackrest_repos[{n - 1}].path = {path!r}: also repo{seen[path]}'s "
                "directory; give each repository its own"
            )
        seen[path] = n
        why = _repo_path_problem(s, path)
        if why:
            errors.append(f"pgbackrest_repos[{n - 1}].path = {path!r}: {why}")
    return errors


def is_loopback(bind: str) -> bool:
    """True for an address only this host reaches (127.0.0.0/8, ::1, localhost)."""
    if bind == "localhost":
        return True
    try:
        address = ipaddress.ip_address(bind)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return bool(address.is_loopback or (mapped is not None and mapped.is_loopback))


def _remote_errors(s: Settings) -> list[str]:
    """Off-host repositories: the backup host must reach this host's pgBackRest server."""
    remote = remote_repos(s)
    if not remote:
        return []
    errors = []
    if is_loopback(s.postgres_bind):
        errors.append(
            f"postgres_bind = {s.postgres_bind!r}: an off-host repository (pgbackrest_repos "
            "kind 'host') takes backups through this host's pgBackRest server, published on "
            "postgres_bind; use the host's private address"
        )
    hosts = [str(r.host) for _n, r in remote]
    for dup in sorted({h for h in hosts if hosts.count(h) > 1}):
        errors.append(
            f"pgbackrest_repos: host {dup!r} is named twice; one repository per backup host"
        )
    return errors


def _within(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip("/") + "/")


#: Host directories a repository (chowned to the server's uid) must never be or contain.
_SYSTEM_DIRS = ("/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/opt", "/proc",
                "/root", "/run", "/sbin", "/srv", "/sys", "/tmp", "/usr", "/var",
                "/var/lib", "/var/lib/docker", "/var/tmp")  # fmt: skip


def _repo_path_problem(s: Settings, path: str) -> str | None:
    """Why the deploy must not give ``path`` to the server's uid (None: it may).

    The deploy chowns a posix repository to the server's uid: a path that is, contains or
    lies inside one of root's directories would let that uid change what root runs.
    """
    own = f"{s.app_dir}/pgbackrest"
    if _within(path, s.app_dir) and not (path != own and _within(path, own)):
        return (
            f"inside app_dir, whose files root runs or trusts; accepted: a directory under "
            f"{own}/ or outside app_dir"
        )
    for root_dir in (s.app_dir, s.backup_path):
        if _within(root_dir, path):
            return f"contains {root_dir}, which root trusts; use a directory of its own"
    if _within(path, s.backup_path):
        return "inside the backup directory, which root restores from; use a directory of its own"
    if path.rstrip("/") in _SYSTEM_DIRS or _within(path, "/etc") or _within(path, "/usr"):
        return "a system directory; use a directory of its own (e.g. /srv/pgbackrest)"
    return None


def server_written_dirs(s: Settings) -> list[str]:
    """Host directories the server's uid writes on purpose (the posix repositories).

    Root never runs, sources or trusts what is in them: pgBackRest reads them inside the
    container as the server's uid, which owns the data directory anyway.
    """
    if not s.pgbackrest_enabled:
        return []
    return [repo_host_path(s, n, r) for n, r in repos(s) if r.kind == "posix"]
