"""TLS files on the host: app_dir/tls/{ca.crt, server.crt, private/server.key}.

The CA is made once per inventory on the deploy machine (pgsteady/tls.py) and each host's
key and certificate are issued there and pushed over pyinfra's own connection: the host
needs no openssl and no copy of the CA key, and one CA can later verify every member of
a cluster. A converge replaces the certificate only when it is missing, not from this
CA, has fewer than RENEW_DAYS left or lists other names; otherwise nothing changes.
Operators may supply their own certificate, key and CA instead (postgres_tls_*_file).
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Iterable
from io import BytesIO, StringIO
from pathlib import Path

from pyinfra import host
from pyinfra.api import FactBase, deploy, operation
from pyinfra.api.command import FileUploadCommand, QuoteString, StringCommand
from pyinfra.api.exceptions import DeployError
from pyinfra.api.operation import OperationMeta
from pyinfra.facts.files import FileContents, Sha256File
from pyinfra.facts.server import Hostname
from pyinfra.operations import files, server

from pgsteady.ca_store import ca_dir, load_or_create_ca
from pgsteady.settings import Settings
from pgsteady.tls import (
    CA_FILE,
    CERT_FILE,
    KEY_FILE,
    TlsError,
    issue_server_cert,
    renewal_reason,
    server_names,
)
from tasks.facts import NumericStat
from tasks.noop_guard import guarded_put, is_file
from tasks.ownership import owner_and_mode


class Fqdn(FactBase[str]):
    """The host's fully qualified name (``hostname -f``), or its short name."""

    def command(self) -> str:
        return "hostname -f 2>/dev/null || uname -n"

    def process(self, output: Iterable[str]) -> str:
        lines = [line.strip() for line in output if line.strip()]
        return lines[0] if lines else ""


def inventory_file() -> Path | None:
    """The inventory file of this pyinfra run: the argument named like one of the host's
    groups (pyinfra puts every host in a group named after the inventory file)."""
    for arg in sys.argv[1:]:
        path = Path(arg)
        if path.suffix == ".py" and path.stem in host.groups and path.is_file():
            return path.resolve()
    return None


def ca_directory(s: Settings) -> tuple[Path, str]:
    """Where this inventory's CA lives on the deploy machine, and the inventory's name."""
    return ca_dir(s.postgres_tls_ca_dir, inventory_file())


@operation()
def private_file(src: bytes, dest: str, uid: int, gid: int, mode: str):
    """Upload a private key: compared by hash, never shown (no diff), never in argv; the
    remote temp file of a sudo upload is made 0600 before the content is written."""
    want = hashlib.sha256(src).hexdigest()
    chown = StringCommand("chown", f"{uid}:{gid}", QuoteString(dest))
    chmod = StringCommand("chmod", mode, QuoteString(dest))
    if host.get_fact(Sha256File, path=dest) != want:
        # A random name, created exclusively (noclobber): never a file someone planted.
        tmp = host.get_temp_filename()
        yield StringCommand("umask 077 && set -C && : >", QuoteString(tmp), _sudo=False)
        yield FileUploadCommand(BytesIO(src), dest, remote_temp_filename=tmp)
        yield chown
        yield chmod
        yield StringCommand("rm", "-f", QuoteString(tmp), _sudo=False)
    elif host.get_fact(NumericStat, path=dest) != (uid, gid, mode.zfill(3)):
        yield chown
        yield chmod
    else:
        host.noop(f"{dest} is up to date")


def renewal_needed(cert: str, key: str, ca_pem: bytes, names: list[str]) -> str | None:
    """Why the certificate at ``cert`` on the host (with its key at ``key``) must be issued
    anew from the CA ``ca_pem`` for ``names`` (pgsteady.tls.renewal_reason, or the key is
    missing), or None when the pair is good as it is."""
    current = host.get_fact(FileContents, path=cert)
    reason = renewal_reason("\n".join(current) + "\n" if current else None, ca_pem, names)
    if reason is None and not is_file(key):
        reason = "the key is missing"
    return reason


def put_certificate(
    what: str,
    cert: str,
    cert_pem: bytes,
    key: str,
    key_pem: bytes,
    gid: int,
    key_mode: str,
    why: str = "",
) -> list[OperationMeta]:
    """Push a key pair: the key (root:``gid`` ``key_mode``, by hash, never shown: see
    private_file), then its certificate (root 0644). ``why`` ends the certificate's
    operation name (the renewal reason)."""
    return [
        private_file(
            name=f"Upload the {what} key {key} ({key_mode} root:{gid}, not shown)",
            src=key_pem,
            dest=key,
            uid=0,
            gid=gid,
            mode=key_mode,
        ),
        files.put(
            name=f"Issue the {what} certificate {cert}{why}",
            src=StringIO(cert_pem.decode()),
            dest=cert,
            user="root",
            group="root",
            mode="644",
        ),
    ]


@deploy("TLS certificate")
def ensure(s: Settings) -> list[OperationMeta]:
    """Converge app_dir/tls; returns the operations whose change needs a reload."""
    tls = f"{s.app_dir}/tls"
    uid = s.postgres_uid
    files.directory(
        name="Create the TLS directory", path=tls, user="root", group="root", mode="755"
    )
    private = f"{tls}/private"
    # Root only: the container gets the key file alone, bind-mounted (compose.py).
    files.directory(
        name="Create the TLS private directory", path=private, user="root", group="root", mode="700"
    )

    if s.postgres_tls_cert_file:
        ca_pem = Path(s.postgres_tls_ca_file or "").read_bytes()
        cert_pem = Path(s.postgres_tls_cert_file).read_bytes()
        key_pem = Path(s.postgres_tls_key_file or "").read_bytes()
        why = " (supplied by postgres_tls_cert_file)"
    else:
        directory, label = ca_directory(s)
        try:
            ca = load_or_create_ca(directory, label)
        except TlsError as exc:
            raise DeployError(f"TLS: {exc}") from None
        ca_pem = ca.cert_pem
        extra = [*s.postgres_tls_extra_names, str(host.data.get("ssh_hostname") or "")]
        extra += _cluster_names(s)
        names = server_names(
            hostname=str(host.get_fact(Hostname) or ""),
            fqdn=host.get_fact(Fqdn) or "",
            bind=s.postgres_bind,
            inventory_name=host.name,
            extra=extra,
        )
        reason = renewal_needed(f"{tls}/{CERT_FILE}", f"{tls}/{KEY_FILE}", ca.cert_pem, names)
        if reason is None:
            host.noop("server certificate is current (issued by this inventory's CA)")
            owner_and_mode(f"{tls}/{CERT_FILE}", 0, 0, "644")
            owner_and_mode(f"{tls}/{KEY_FILE}", 0, uid, "640")
            return [_put_ca(tls, ca.cert_pem)]
        cert_pem, key_pem = issue_server_cert(ca, names)
        why = f" ({reason})"

    # The key root-owned, group-readable by the server's uid: Postgres accepts a root-owned
    # key up to 0640 (a key owned by the server's uid must be 0600).
    pair = put_certificate(
        "server", f"{tls}/{CERT_FILE}", cert_pem, f"{tls}/{KEY_FILE}", key_pem, uid, "640", why
    )
    return [_put_ca(tls, ca_pem), *pair]


def _cluster_names(s: Settings) -> list[str]:
    """A member's certificate also names every member (name and private address): a
    client through HAProxy, and a replica verifying its leader, meet any of them."""
    from tasks.cluster import load_cluster

    cluster = load_cluster(s)
    if cluster is None:
        return []
    return [x for m in cluster.members for x in (m.name, m.address)]


def _put_ca(tls: str, ca_pem: bytes) -> OperationMeta:
    return guarded_put(
        name=f"Upload the CA certificate {tls}/{CA_FILE}",
        src=StringIO(ca_pem.decode()),
        dest=f"{tls}/{CA_FILE}",
        user="root",
        group="root",
        mode="644",
    )


def reload_on_change(s: Settings, tls_ops: list[OperationMeta]) -> None:
    """Reload the server when its certificate files changed (ssl files are reloadable)."""
    server.shell(
        name="Reload Postgres for the new TLS certificate",
        commands=[f"{s.layout.bin}/pgsteady-ctl apply-config"],
        _if=lambda: any(o.did_change() for o in tls_ops),
    )
