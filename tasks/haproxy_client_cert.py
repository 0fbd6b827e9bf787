"""HAProxy's client certificate on a cluster member (review R8 L1).

Patroni's REST API requires a client certificate from the inventory's CA on every
endpoint (pgsteady.cluster.patroni: ``verify_client: required``), HAProxy's health checks
included. HAProxy gets a certificate of its own (clientAuth only, the member's name), not
the member's Postgres key: its key is root:haproxy 0440 and never reaches Postgres's
container. Issued anew when tasks/tls.renewal_needed says so; a running HAProxy then
reloads (SIGUSR2 to its master process: the new worker loads the files, sessions stay).
"""

from __future__ import annotations

from pyinfra.api.exceptions import DeployError
from pyinfra.api.operation import OperationMeta

from pgsteady.ca_store import load_or_create_ca
from pgsteady.cluster import member_service as ms
from pgsteady.cluster.topology import Member
from pgsteady.settings import Settings
from pgsteady.tls import CLIENT_ONLY, TlsError, issue_server_cert
from tasks import haproxy_reload
from tasks.tls import ca_directory, put_certificate, renewal_needed


def ensure(s: Settings, member: Member) -> list[OperationMeta]:
    """The pair at app_dir/tls/haproxy-client.crt and tls/private/haproxy-client.crt.key
    (root:HAProxy's uid 0440); a running HAProxy reloads when it was replaced."""
    tls = f"{s.app_dir}/tls"
    cert = f"{tls}/{ms.HAPROXY_CLIENT_CERT}"
    key = f"{tls}/private/{ms.HAPROXY_CLIENT_CERT}.key"
    directory, label = ca_directory(s)
    try:
        ca = load_or_create_ca(directory, label)
    except TlsError as exc:
        raise DeployError(f"TLS: {exc}") from None
    reason = renewal_needed(cert, key, ca.cert_pem, [member.name])
    if reason is None:
        return []
    cert_pem, key_pem = issue_server_cert(ca, [member.name], usages=CLIENT_ONLY)
    ops = put_certificate(
        "HAProxy client", cert, cert_pem, key, key_pem, ms.HAPROXY_UID, "440", f" ({reason})"
    )
    haproxy_reload.on_change(s, ops, "its new client certificate")
    return ops
