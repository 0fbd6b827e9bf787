"""What pgBackRest's two ends need from the rest of the inventory, and from the deploy
machine: peers' addresses, a backup host's clients, TLS files and shared passphrases.

A passphrase of an off-host repository is a secret of a pair of hosts (the database
host encrypts what it pushes, the backup host what it backs up): it is generated once on
the deploy machine, beside the inventory's CA (0600 in a 0700 directory), and reaches
both hosts over the deploy's own SSH channel, compared by hash and never shown.
"""

from __future__ import annotations

import os
import re
import secrets
from io import StringIO

from pyinfra import host, inventory
from pyinfra.api.exceptions import DeployError
from pyinfra.api.operation import OperationMeta
from pyinfra.facts.files import File, FileContents
from pyinfra.operations import files

from pgsteady import pgbackrest
from pgsteady.pgbackrest_repository import GROUP, Client
from pgsteady.settings import PgBackRestRepo, Settings
from pgsteady.tls import TlsError, issue_server_cert, load_or_create_ca, renewal_reason
from tasks.tls import ca_directory, private_file

_SAFE = re.compile(r"[^A-Za-z0-9._-]")


def backup_host_names() -> list[str]:
    """Inventory names of the ``backup`` group (no such group: none)."""
    try:
        return [h.name for h in inventory.get_group(GROUP)]
    except Exception:  # pyinfra's NoGroupError: the inventory has no backup group
        return []


def is_backup_host() -> bool:
    return GROUP in host.groups


def peer(name: str) -> pgbackrest.Peer:
    """The pgBackRest server of inventory host ``name``."""
    data = inventory.get_host(name).data
    port = data.get("pgbackrest_tls_port") or 8432
    return pgbackrest.Peer(name, pgbackrest.peer_address(name, data.dict()), int(port))


def peers_of(s: Settings) -> dict[str, pgbackrest.Peer]:
    """The backup hosts this database host's ``kind: host`` repositories name."""
    names = backup_host_names()
    out = {}
    for n, repo in pgbackrest.remote_repos(s):
        if repo.host not in names:
            raise DeployError(
                f"{host.name}: pgbackrest_repos[{n - 1}].host = {repo.host!r}: not a host of "
                f"the inventory's {GROUP!r} group ({', '.join(names) or 'none'}); add it "
                "there or name one of those"
            )
        out[str(repo.host)] = peer(str(repo.host))
    return out


def clients_of(name: str) -> list[Client]:
    """The database hosts whose ``pgbackrest_repos`` name backup host ``name``."""
    out = []
    for h in inventory:
        if GROUP in h.groups or not h.data.get("pgbackrest_enabled", True):
            continue
        for n, raw in enumerate(h.data.get("pgbackrest_repos") or [], 1):
            try:
                repo = PgBackRestRepo.model_validate(raw)
            except ValueError:
                continue  # that host's own deploy reports it
            if repo.kind != "host" or repo.host != name:
                continue
            d = h.data
            out.append(
                Client(
                    name=h.name,
                    peer=peer(h.name),
                    stanza=str(d.get("pgbackrest_stanza") or "main"),
                    repo=n,
                    retention_full=repo.retention_full,
                    retention_diff=repo.retention_diff,
                    full_schedule=str(d.get("pgbackrest_full_schedule")),
                    diff_schedule=str(d.get("pgbackrest_diff_schedule")),
                    verify_schedule=str(d.get("pgbackrest_verify_schedule")),
                    postgres_version=int(d.get("postgres_version") or 0),
                    process_max=int(d.get("pgbackrest_process_max") or 1),
                )
            )
    return out


def shared_passphrase(s: Settings, backup_host: str, stanza: str) -> str:
    """The passphrase of ``stanza`` in ``backup_host``'s repository: made once, kept on the
    deploy machine beside the CA (0600), read by both ends' deploys."""
    directory, label = ca_directory(s)
    try:
        load_or_create_ca(directory, label)  # the CA first: it is made only in a new directory
    except TlsError as exc:
        raise DeployError(f"TLS: {exc}") from None
    folder = directory / "pgbackrest" / _SAFE.sub("_", backup_host)
    for d in (directory / "pgbackrest", folder):
        d.mkdir(mode=0o700, parents=True, exist_ok=True)
        if d.stat().st_uid != os.geteuid() or d.stat().st_mode & 0o077:
            raise DeployError(f"{d}: must be yours and private (0700): it holds passphrases")
    path = folder / f"{_SAFE.sub('_', stanza)}.pass"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(48) + "\n")
    st = path.stat()
    if st.st_uid != os.geteuid() or st.st_mode & 0o077:
        raise DeployError(f"{path}: must be yours and 0600: it is a repository passphrase")
    value = path.read_text().strip()
    if not re.fullmatch(r"[A-Za-z0-9_-]{32,}", value):
        raise DeployError(f"{path}: not a passphrase pgsteady wrote; restore it from a copy")
    return value


def put_passphrase(s: Settings, dest: str, text: str, what: str) -> OperationMeta:
    """Upload a passphrase include (root:server gid 0640): by hash, never shown."""
    return private_file(
        name=f"{what} passphrase {dest} (0640 root:{s.postgres_uid}, content not shown)",
        src=text.encode(),
        dest=dest,
        uid=0,
        gid=s.postgres_uid,
        mode="640",
    )


def ensure_tls(s: Settings, address: str) -> list[OperationMeta]:
    """The host's pgBackRest certificate (named by its address) from the inventory's CA,
    with the CA beside it; returns the operations that change what the servers read."""
    tls = f"{s.app_dir}/tls"
    files.directory(name="TLS directory", path=tls, user="root", group="root", mode="755")
    files.directory(
        name="TLS private directory", path=f"{tls}/private", user="root", group="root", mode="700"
    )
    directory, label = ca_directory(s)
    try:
        ca = load_or_create_ca(directory, label)
    except TlsError as exc:
        raise DeployError(f"TLS: {exc}") from None
    ca_op = files.put(
        name=f"pgBackRest CA {tls}/{pgbackrest.TLS_CA}",
        src=StringIO(ca.cert_pem.decode()),
        dest=f"{tls}/{pgbackrest.TLS_CA}",
        user="root",
        group="root",
        mode="644",
    )
    cert_path, key_path = f"{tls}/{pgbackrest.TLS_CERT}", f"{tls}/{pgbackrest.TLS_KEY}"
    current = host.get_fact(FileContents, path=cert_path)
    reason = renewal_reason("\n".join(current) + "\n" if current else None, ca.cert_pem, [address])
    if reason is None and not host.get_fact(File, path=key_path):
        reason = "the key is missing"
    if reason is None:
        return [ca_op]
    cert_pem, key_pem = issue_server_cert(ca, [address])
    return [
        ca_op,
        files.put(
            name=f"pgBackRest certificate {cert_path} ({reason})",
            src=StringIO(cert_pem.decode()),
            dest=cert_path,
            user="root",
            group="root",
            mode="644",
        ),
        private_file(
            name=f"pgBackRest key {key_path} (0640 root:{s.postgres_uid}, content not shown)",
            src=key_pem,
            dest=key_path,
            uid=0,
            gid=s.postgres_uid,
            mode="640",
        ),
    ]
