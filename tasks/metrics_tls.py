"""The exporters' own TLS and password files on the host (review H1, H2).

* the inventory's **metrics CA** (``<CA dir>/metrics-ca`` on the deploy machine, beside the
  inventory's CA and pgBackRest's): the exporters admit only its client certificates, so
  no Postgres or pgBackRest certificate (which a host's root holds) opens them;
* ``tls/exporter.crt`` (serverAuth only) and ``tls/private/exporter.key`` (root, group
  ``metrics_exporter_uid``, 0440): the exporters never read the server's key;
* ``tls/metrics-client.crt`` + ``tls/private/metrics-client.key`` (root 0600, clientAuth):
  what ``make verify`` scrapes the exporters with from the host;
* ``secrets/monitor_password_exporter``: postgres-exporter's own copy of the monitor
  password, made by root on the host (never crosses the wire), root:its gid 0440.
"""

from __future__ import annotations

import shlex
from io import StringIO

from pyinfra import host
from pyinfra.api.exceptions import DeployError
from pyinfra.facts.files import Sha256File
from pyinfra.facts.server import Hostname
from pyinfra.operations import files, server

from pgsteady.ca_store import load_or_create_ca
from pgsteady.settings import Settings
from pgsteady.stack import exporters
from pgsteady.tls import (
    CLIENT_ONLY,
    SERVER_ONLY,
    Authority,
    TlsError,
    issue_server_cert,
    server_names,
)
from tasks.facts import NumericStat
from tasks.noop_guard import guarded_put
from tasks.ownership import owner_and_mode
from tasks.tls import Fqdn, ca_directory, put_certificate, renewal_needed


def metrics_ca(s: Settings) -> Authority:
    """The inventory's metrics CA (made on first use, beside the inventory's CA)."""
    directory, label = ca_directory(s)
    try:
        load_or_create_ca(directory, label)  # the inventory's CA first: a 0700 directory
        return load_or_create_ca(directory / exporters.METRICS_CA_DIR, f"{label} metrics")
    except TlsError as exc:
        raise DeployError(f"TLS: {exc}") from None


def _pair(
    ca: Authority,
    names: list[str],
    usages: tuple,
    cert: str,
    key: str,
    gid: int,
    mode: str,
    what: str,
) -> None:
    """A certificate (root 0644) and its key (root:``gid``, ``mode``) from ``ca``, replaced
    only when missing, not of this CA, near expiry or naming other names."""
    reason = renewal_needed(cert, key, ca.cert_pem, names)
    if reason is None:
        owner_and_mode(key, 0, gid, mode)
        return
    cert_pem, key_pem = issue_server_cert(ca, names, usages=usages)
    put_certificate(what, cert, cert_pem, key, key_pem, gid, mode, f" ({reason})")


def ensure(s: Settings) -> None:
    """The metrics CA's certificate, the exporters' and verify's certificates and keys,
    and the exporter's password copy (removed when metrics are off)."""
    tls, secrets = s.layout.tls, s.layout.secrets
    copy = f"{secrets}/{exporters.EXPORTER_SECRET}"
    own = [
        f"{tls}/{exporters.EXPORTER_KEY}",
        f"{tls}/{exporters.VERIFY_CLIENT_KEY}",
        copy,
    ]
    if not s.metrics_enabled:
        for path in own:
            files.file(name=f"Remove {path}", path=path, present=False)
        return
    uid = s.metrics_exporter_uid
    ca = metrics_ca(s)
    guarded_put(
        name=f"Upload the metrics CA {tls}/{exporters.METRICS_CA}",
        src=StringIO(ca.cert_pem.decode()),
        dest=f"{tls}/{exporters.METRICS_CA}",
        user="root",
        group="root",
        mode="644",
    )
    names = server_names(
        hostname=str(host.get_fact(Hostname) or ""),
        fqdn=host.get_fact(Fqdn) or "",
        bind=s.metrics_bind,
        inventory_name=host.name,
        extra=[*s.postgres_tls_extra_names, str(host.data.get("ssh_hostname") or "")],
    )
    _pair(ca, names, SERVER_ONLY, f"{tls}/{exporters.EXPORTER_CERT}",
          f"{tls}/{exporters.EXPORTER_KEY}", uid, "440", "exporters'")  # fmt: skip
    _pair(ca, [exporters.VERIFY_CLIENT_NAME], CLIENT_ONLY,
          f"{tls}/{exporters.VERIFY_CLIENT_CERT}", f"{tls}/{exporters.VERIFY_CLIENT_KEY}",
          0, "600", "verify client")  # fmt: skip
    # Copied on the host by root (secrets.ensure made the source earlier in this run).
    src = f"{secrets}/monitor_password"
    want = host.get_fact(Sha256File, path=src)
    if (
        want is None
        or host.get_fact(Sha256File, path=copy) != want
        or host.get_fact(NumericStat, path=copy) != (0, uid, "440")
    ):
        q_src, q_copy = shlex.quote(src), shlex.quote(copy)
        server.shell(
            name=f"Write the monitor password copy for postgres-exporter ({copy}, 0440 root:{uid})",
            commands=[
                f"umask 077 && install -o 0 -g {uid} -m 0440 {q_src} {q_copy}.new"
                f" && mv -f {q_copy}.new {q_copy}"
            ],
        )
