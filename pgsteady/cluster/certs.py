"""A cluster's etcd PKI: its own CA, the members' certificates, Patroni's client certificate.

etcd trusts one CA per cluster, never the inventory's (review R8, M1): the inventory CA
signs every host's Postgres certificate, whose key the postgres uid of any container
reads, and etcd would take any certificate that CA signs as a client (and its Common
Name as an etcd user name). The etcd CA signs only what this module issues:

- a member's certificate (serverAuth and clientAuth: etcd dials its peers with it, and
  the local etcdctl of the deploy and of ``make verify`` presents it), with the fixed
  Common Name :data:`MEMBER_CN`; etcd's ``--peer-cert-allowed-cn`` admits only that CN to
  the peer port, so a client certificate of the same CA is no peer;
- Patroni's etcd client certificate: no Common Name, on purpose. Patroni speaks to etcd
  through its gRPC gateway (HTTP/JSON), and once RBAC is on etcd answers every gateway
  request whose client certificate carries a Common Name with HTTP 400 ("CommonName of
  client sending a request against gateway will be ignored ...", etcd's embed/serve.go).
  This one has an empty subject, its name only in the subjectAltName, and clientAuth
  only; Patroni authenticates with its etcd user's password.

No certificate of this CA has a Common Name that is an etcd user name (:data:`ETCD_USERS`):
etcd maps a client certificate's CN to a user without asking for its password.
"""

from __future__ import annotations

import datetime as dt

from pgsteady import tls
from pgsteady.cluster.topology import ETCD_USERS

#: The Common Name of every etcd member's certificate: no etcd user has it.
MEMBER_CN = "pgsteady-etcd-member"
if MEMBER_CN in ETCD_USERS:  # pragma: no cover - a constant's guard
    raise AssertionError(f"{MEMBER_CN} is an etcd user name")


def ca_label(label: str, cluster_name: str) -> str:
    """The etcd CA's label (its CN: "pgsteady CA <label>") for a cluster of inventory
    ``label``."""
    return f"{label} etcd {cluster_name}"


def create_etcd_ca(label: str, cluster_name: str) -> tls.Authority:
    """A new CA for cluster ``cluster_name`` of inventory ``label``: etcd's trust anchor
    (the deploy makes it through pgsteady.ca_store, with the same label)."""
    return tls.create_ca(ca_label(label, cluster_name))


def member_names(name: str, address: str) -> list[str]:
    """The names a member's etcd certificate lists: its name, its private address, and
    loopback (the local etcdctl dials 127.0.0.1; a peer on the same host shows it)."""
    return list(dict.fromkeys([name, address, "127.0.0.1"]))


def issue_etcd_member_cert(
    ca: tls.Authority,
    name: str,
    address: str,
    now: dt.datetime | None = None,
    days: int = tls.SERVER_DAYS,
) -> tuple[bytes, bytes]:
    """(certificate PEM, key PEM): member ``name``'s etcd server and peer certificate,
    CN :data:`MEMBER_CN`, signed by the cluster's etcd CA ``ca``."""
    usages = (*tls.SERVER_ONLY, *tls.CLIENT_ONLY)
    names = member_names(name, address)
    return tls.issue_cert(ca, names, usages, now=now, days=days, common_name=MEMBER_CN)


def issue_etcd_client_cert(
    ca: tls.Authority, name: str, now: dt.datetime | None = None, days: int = tls.SERVER_DAYS
) -> tuple[bytes, bytes]:
    """(certificate PEM, key PEM): Patroni's clientAuth certificate for ``name`` (in the
    SAN, which is then critical as RFC 5280 requires for an empty subject), signed by the
    cluster's etcd CA ``ca``."""
    return tls.issue_cert(ca, [name], tls.CLIENT_ONLY, now=now, days=days, common_name=False)
