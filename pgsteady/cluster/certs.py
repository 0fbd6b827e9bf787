"""The etcd client certificate Patroni presents: no Common Name, on purpose.

etcd runs with ``--client-cert-auth``, so every client must present a certificate from the
cluster CA. Patroni speaks to etcd through its gRPC gateway (HTTP/JSON), and once RBAC is
on etcd answers every gateway request whose client certificate carries a Common Name with
HTTP 400 ("CommonName of client sending a request against gateway will be ignored ...",
etcd's embed/serve.go; the CN-as-username rule cannot cross the gateway). A member's
server certificate (CN = its name) therefore cannot be Patroni's etcd client certificate:
this one has an empty subject, its name only in the subjectAltName, and clientAuth only.
Patroni authenticates with its etcd user's password instead.
"""

from __future__ import annotations

import datetime as dt

from pgsteady import tls


def issue_etcd_client_cert(
    ca: tls.Authority, name: str, now: dt.datetime | None = None, days: int = tls.SERVER_DAYS
) -> tuple[bytes, bytes]:
    """(certificate PEM, key PEM): a clientAuth certificate for ``name`` (in the SAN, which
    is then critical as RFC 5280 requires for an empty subject), signed by ``ca`` with the
    builder every pgsteady certificate shares (:func:`pgsteady.tls.issue_cert`)."""
    return tls.issue_cert(ca, [name], tls.CLIENT_ONLY, now=now, days=days, common_name=False)
