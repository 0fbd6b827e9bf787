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
import stat
import tempfile
from collections.abc import Callable
from io import StringIO

from pyinfra import host, inventory
from pyinfra.api.exceptions import DeployError
from pyinfra.api.operation import OperationMeta
from pyinfra.operations import files

from pgsteady.backup import pgbackrest
from pgsteady.backup.repository_host import GROUP, Client
from pgsteady.ca_store import load_or_create_ca
from pgsteady.setting_types import _check_name as check_stanza
from pgsteady.setting_types import check_host_address
from pgsteady.settings import PgBackRestRepo, Settings, defaults
from pgsteady.stack.schedule_syntax import parse_schedule
from pgsteady.tls import (
    Authority,
    TlsError,
    issue_server_cert,
)
from tasks.tls import ca_directory, private_file, put_certificate, renewal_needed


def backup_host_names() -> list[str]:
    """Inventory names of the ``backup`` group (no such group: none)."""
    try:
        return [h.name for h in inventory.get_group(GROUP)]
    except Exception:  # pyinfra's NoGroupError: the inventory has no backup group
        return []


def is_backup_host() -> bool:
    return GROUP in host.groups


def _checked(name: str, key: str, value: object, check: Callable[[object], object]) -> object:
    """Another host's setting, validated like its own deploy would (a run limited to one
    host, or a project calling converge(), reaches here before that host's checks)."""
    try:
        return check(value)
    except (TypeError, ValueError) as exc:
        raise DeployError(f"{name}: {key} = {value!r}: {exc}") from None


def _port(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1024 <= value <= 65535:
        raise ValueError("use a port from 1024 to 65535")
    return value


def peer(name: str) -> pgbackrest.Peer:
    """The pgBackRest server of inventory host ``name``: its address (the name in its
    certificate and in the other end's tls-server-auth) validated, never pasted raw."""
    data = inventory.get_host(name).data
    address = pgbackrest.peer_address(name, data.dict())
    key = "pgbackrest_address" if data.get("pgbackrest_address") else "ssh_hostname"
    _checked(name, key, address, check_host_address)
    port = _checked(name, "pgbackrest_tls_port", _value(data, "pgbackrest_tls_port"), _port)
    return pgbackrest.Peer(name, address, int(port))  # type: ignore[call-overload]


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


def _value(data: object, key: str) -> object:
    """A setting of another host: its data, else pgsteady's default (a project that calls
    the converge from its own deploy has no pgsteady group_data)."""
    value = data.get(key)  # type: ignore[attr-defined]
    return defaults()[key] if value is None else value


def clients_of(name: str) -> list[Client]:
    """The database hosts whose ``pgbackrest_repos`` name backup host ``name``."""
    out = []
    for h in inventory:
        if GROUP in h.groups or not _value(h.data, "pgbackrest_enabled"):
            continue
        for n, raw in enumerate(_value(h.data, "pgbackrest_repos") or [], 1):  # type: ignore[arg-type]
            try:
                repo = PgBackRestRepo.model_validate(raw)
            except ValueError:
                continue  # that host's own deploy reports it
            if repo.kind != "host" or repo.host != name:
                continue
            d = h.data
            stanza = _checked(h.name, "pgbackrest_stanza", _value(d, "pgbackrest_stanza"),
                              check_stanza)  # fmt: skip
            for key in ("pgbackrest_full_schedule", "pgbackrest_diff_schedule",
                        "pgbackrest_verify_schedule"):  # fmt: skip
                _checked(h.name, key, _value(d, key), parse_schedule)
            _checked(h.name, "postgres_version", _value(d, "postgres_version"), _version)
            out.append(
                Client(
                    name=h.name,
                    peer=peer(h.name),
                    stanza=str(stanza),
                    repo=n,
                    retention_full=repo.retention_full,
                    retention_diff=repo.retention_diff,
                    full_schedule=str(_value(d, "pgbackrest_full_schedule")),
                    diff_schedule=str(_value(d, "pgbackrest_diff_schedule")),
                    verify_schedule=str(_value(d, "pgbackrest_verify_schedule")),
                    postgres_version=int(_value(d, "postgres_version")),  # type: ignore[call-overload]
                    process_max=int(_value(d, "pgbackrest_process_max")),  # type: ignore[call-overload]
                    **_cluster_of(d),
                )
            )
    return out


def _cluster_of(data: object) -> dict[str, object]:
    """A cluster member's cluster name and Postgres port (validated by its own deploy and
    the inventory-wide cluster rules); nothing for a single host."""
    name = data.get("postgres_cluster_name")  # type: ignore[attr-defined]
    if name is None:
        return {}
    port = _checked(str(name), "postgres_member_port", _value(data, "postgres_member_port"), _port)
    return {"cluster": str(name), "pg_port": port}


def _version(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("use a Postgres major version number, e.g. 17")
    return value


def _store_name(value: str) -> str:
    """A file name in the passphrase store: a validated stanza or inventory host name."""
    if value in (".", "..") or not re.fullmatch(r"[A-Za-z0-9._@-]+", value):
        raise DeployError(f"{value!r} cannot name a file in the passphrase store")
    return value


def shared_passphrase(s: Settings, backup_host: str, stanza: str) -> str:
    """The passphrase of ``stanza`` in ``backup_host``'s repository: made once, kept on the
    deploy machine beside the CA (0600), read by both ends' deploys."""
    directory, label = ca_directory(s)
    try:
        load_or_create_ca(directory, label)  # the CA first: it is made only in a new directory
    except TlsError as exc:
        raise DeployError(f"TLS: {exc}") from None
    folder = directory / "pgbackrest" / _store_name(backup_host)
    for d in (directory / "pgbackrest", folder):
        d.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = os.lstat(d)
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
            raise DeployError(
                f"{d}: must be your own private directory (0700): it holds passphrases"
            )
    path = folder / f"{_store_name(stanza)}.pass"
    if not path.exists():
        # Written whole under a temporary name, then linked into place: a deploy running at
        # the same time sees no file or the complete one, and the first one made wins.
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".pass-")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(48) + "\n")
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass  # another deploy made it first: use that one
            except OSError as exc:
                raise DeployError(
                    f"{folder}: cannot create the passphrase ({exc.strerror}); keep the CA "
                    "directory on a local filesystem with hard links"
                ) from None
        finally:
            os.unlink(tmp)
    st = os.lstat(path)
    if not stat.S_ISREG(st.st_mode):
        raise DeployError(f"{path}: not a regular file; restore the passphrase from a copy")
    if st.st_uid != os.geteuid() or st.st_mode & 0o077:
        raise DeployError(f"{path}: must be yours and 0600: it is a repository passphrase")
    value = path.read_text().strip()
    if not re.fullmatch(r"[A-Za-z0-9_-]{32,}", value):
        raise DeployError(f"{path}: not a passphrase pgsteady wrote; restore it from a copy")
    return value


def put_passphrase(s: Settings, dest: str, text: str, what: str) -> OperationMeta:
    """Upload a passphrase include (root:server gid 0640): by hash, never shown."""
    return private_file(
        name=f"Upload the {what} passphrase {dest} (0640 root:{s.postgres_uid}, not shown)",
        src=text.encode(),
        dest=dest,
        uid=0,
        gid=s.postgres_uid,
        mode="640",
    )


def pgbackrest_ca(s: Settings) -> Authority:
    """pgBackRest's own CA, beside the inventory's: the servers trust it alone, so no
    Postgres certificate (whose names a host's root can influence through its host
    name) can pass for a pgBackRest peer."""
    directory, label = ca_directory(s)
    try:
        load_or_create_ca(directory, label)  # the inventory's CA first (a new directory)
        return load_or_create_ca(directory / "pgbackrest-ca", f"{label} pgBackRest")
    except TlsError as exc:
        raise DeployError(f"TLS: {exc}") from None


def check_unique_addresses() -> None:
    """Every pgBackRest server of the inventory has an address of its own: a certificate
    names its host by address, so two hosts with one address could pass for each other."""
    seen: dict[str, str] = {}
    for h in inventory:
        is_backup = GROUP in h.groups
        repos = _value(h.data, "pgbackrest_repos") or []
        offhost = any(isinstance(r, dict) and r.get("kind") == "host" for r in repos)  # type: ignore[union-attr]
        if not (is_backup or (offhost and _value(h.data, "pgbackrest_enabled"))):
            continue
        address = peer(h.name).address
        if address in seen:
            raise DeployError(
                f"{h.name}: its pgBackRest address {address!r} is also {seen[address]}'s "
                "(pgbackrest_address, else ssh_hostname, else the inventory name); give each "
                "host its own"
            )
        seen[address] = h.name


def ensure_tls(s: Settings, address: str) -> list[OperationMeta]:
    """The host's pgBackRest certificate (named by its address) from the inventory's CA,
    with the CA beside it; returns the operations that change what the servers read."""
    tls = f"{s.app_dir}/tls"
    files.directory(
        name="Create the TLS directory", path=tls, user="root", group="root", mode="755"
    )
    files.directory(
        name="Create the TLS private directory",
        path=f"{tls}/private",
        user="root",
        group="root",
        mode="700",
    )
    ca = pgbackrest_ca(s)
    ca_op = files.put(
        name=f"Upload the pgBackRest CA {tls}/{pgbackrest.TLS_CA}",
        src=StringIO(ca.cert_pem.decode()),
        dest=f"{tls}/{pgbackrest.TLS_CA}",
        user="root",
        group="root",
        mode="644",
    )
    cert_path, key_path = f"{tls}/{pgbackrest.TLS_CERT}", f"{tls}/{pgbackrest.TLS_KEY}"
    reason = renewal_needed(cert_path, key_path, ca.cert_pem, [address])
    if reason is None:
        return [ca_op]
    cert_pem, key_pem = issue_server_cert(ca, [address])
    pair = put_certificate(
        "pgBackRest", cert_path, cert_pem, key_path, key_pem, s.postgres_uid, "640", f" ({reason})"
    )
    return [ca_op, *pair]
