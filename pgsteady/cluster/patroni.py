"""Patroni's configuration for one member, and the cluster's DCS document.

Patroni 3.0.2 reads a directory and merges its ``*.yml`` files in name order, so a member's
configuration is two files: :func:`render_patroni_yml` (``10-pgsteady.yml``, no secrets)
and :func:`render_secrets_yml` (``90-secrets.yml``, 0600, written on the host from the
secret files when the container starts). Passwords therefore never reach argv, the
environment or a compose file.

:func:`dcs_document` is the cluster-wide dynamic configuration (timings, durability,
Postgres parameters, pg_hba): it seeds ``bootstrap.dcs`` and is what a converge PATCHes
into ``/config`` later. Parameters Patroni manages itself are refused, not overridden.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from pgsteady.cluster.etcd import PATRONI_USER
from pgsteady.cluster.topology import Cluster, ClusterError, Member
from pgsteady.render import MANAGED

#: Set by Patroni on every member (postgresql.conf it writes, recovery, replication);
#: pgsteady must not set them in a cluster.
PATRONI_MANAGED = frozenset(
    {
        "listen_addresses",
        "port",
        "cluster_name",
        "hba_file",
        "ident_file",
        "config_file",
        "data_directory",
        "primary_conninfo",
        "primary_slot_name",
        "restore_command",
        "hot_standby",
        "synchronous_standby_names",
    }
)
REPLICATION_USER = "replicator"
LOOPBACK = ("127.0.0.1/32", "::1/128")
#: pg_rewind's role: not the superuser, which pg_hba rejects over TCP. Patroni creates it
#: when it bootstraps a cluster (PostgreSQL >= 11), LOGIN without SUPERUSER, and grants it
#: EXECUTE on the four pg_catalog file functions pg_rewind calls (Patroni 3.0.2 and 4.0.7:
#: patroni/postgresql/bootstrap.py, post_bootstrap).
REWIND_USER = "pgsteady_rewind"
REST_USER = "patroni"
#: How long Patroni 4 keeps a departed member's replication slot (its default, 30 min).
#: pgsteady manages the key so that a ``make remove-member`` killed while it held it at 0
#: (pgsteady.cluster.removal) is set back by the next deploy or removal (review R10 L1).
MEMBER_SLOTS_TTL_S = 1800


@dataclass(frozen=True)
class PatroniPaths:
    """Files a member's Patroni reads (paths inside its container)."""

    data_dir: str
    bin_dir: str
    ca_file: str
    cert_file: str
    key_file: str
    etcd_cert_file: str
    etcd_key_file: str
    pgpass: str
    custom_conf: str
    #: run by Patroni on the member that ran initdb (the database, the init scripts)
    post_bootstrap: str | None = None
    #: the cluster's etcd CA (pgsteady/cluster/certs.py); None: ``ca_file`` (test harnesses
    #: whose one CA signs everything)
    etcd_ca_file: str | None = None


def container_paths(postgres_version: int) -> PatroniPaths:
    """The paths in pgsteady's cluster container (see docs/architecture.md)."""
    return PatroniPaths(
        data_dir="/var/lib/postgresql/data/pgdata",
        bin_dir=f"/usr/lib/postgresql/{postgres_version}/bin",
        ca_file="/etc/pgsteady-tls/ca.crt",
        cert_file="/etc/pgsteady-tls/server.crt",
        key_file="/etc/pgsteady-tls-key/server.key",
        etcd_cert_file="/etc/pgsteady-tls/etcd-client.crt",
        etcd_key_file="/etc/pgsteady-tls-key/etcd-client.key",
        pgpass="/run/patroni/pgpass",
        custom_conf="/etc/pgsteady/patroni-custom.conf",
        post_bootstrap="/usr/local/bin/docker-entrypoint.sh post-bootstrap",
        etcd_ca_file="/etc/pgsteady-tls/etcd-ca.crt",
    )


def _hostport(address: str, port: int) -> str:
    host = f"[{address}]" if ipaddress.ip_address(address).version == 6 else address
    return f"{host}:{port}"


def member_hba_line(database: str, user: str, cidr: str) -> str:
    """A members-only line: SCRAM over TLS, and a client certificate from the CA
    (``clientcert=verify-ca``; review R8 L2): HAProxy relays any client it admits with a
    member's source address, so the address alone does not tell a member; the password
    and the member's certificate (Patroni's ``sslcert``/``sslkey``) together do."""
    return f"hostssl {database} {user} {cidr} scram-sha-256 clientcert=verify-ca"


def _member_lines(cluster: Cluster, database: str, user: str) -> list[str]:
    lines = []
    for m in cluster.members:
        bits = 32 if ipaddress.ip_address(m.address).version == 4 else 128
        lines.append(member_hba_line(database, user, f"{m.address}/{bits}"))
    return lines


def replication_hba(cluster: Cluster) -> list[str]:
    """One ``hostssl replication`` line per member (SCRAM, TLS, client certificate), and
    loopback: Patroni reads a replica's own timeline over a replication connection to
    localhost before deciding on pg_rewind (it never rewinds without it)."""
    loopback = [member_hba_line("replication", REPLICATION_USER, a) for a in LOOPBACK]
    return [*_member_lines(cluster, "replication", REPLICATION_USER), *loopback]


def rewind_hba(cluster: Cluster) -> list[str]:
    """One ``hostssl postgres`` line per member for pg_rewind's role (as replication's)."""
    return _member_lines(cluster, "postgres", REWIND_USER)


def _catch_all_reject(line: str) -> bool:
    fields = line.split()
    return (
        len(fields) >= 4
        and fields[0] in ("local", "host")
        and fields[1:3] == ["all", "all"]
        and fields[-1] == "reject"
    )


def with_member_hba(cluster: Cluster, pg_hba: list[str]) -> list[str]:
    """``pg_hba`` with the members' lines: pg_rewind's before the first catch-all reject
    (it connects to the ``postgres`` database, which ``all`` matches), replication's at the
    end (``all`` never matches ``replication``)."""
    cut = next((i for i, line in enumerate(pg_hba) if _catch_all_reject(line)), len(pg_hba))
    return [*pg_hba[:cut], *rewind_hba(cluster), *pg_hba[cut:], *replication_hba(cluster)]


def dcs_document(
    cluster: Cluster, parameters: Mapping[str, Any], pg_hba: list[str]
) -> dict[str, Any]:
    """The dynamic configuration: ``parameters`` are pgsteady's tuned postgresql.conf
    values (a plain dict, e.g. from pgsteady.postgres.conf_files), ``pg_hba`` its rules;
    the members' pg_rewind and replication lines are added (:func:`with_member_hba`)."""
    managed = sorted(set(parameters) & PATRONI_MANAGED)
    if managed:
        raise ClusterError(
            [
                f"postgres_settings[{k!r}] = {parameters[k]!r}: Patroni manages this parameter "
                "in a cluster; remove it"
                for k in managed
            ]
        )
    params = {k: parameters[k] for k in sorted(parameters)}
    params["wal_log_hints"] = "on"  # pg_rewind after a failover needs it (or checksums)
    # a dump on a standby (pgsteady-backup dumps there) keeps its snapshot: vacuum on the
    # primary keeps the rows it still reads, as for a dump on the primary; postgres_settings
    # may turn it off (docs/operations.md, logical backups in a cluster)
    params.setdefault("hot_standby_feedback", "on")
    return {
        "ttl": cluster.ttl,
        "loop_wait": cluster.loop_wait,
        "retry_timeout": cluster.retry_timeout,
        "maximum_lag_on_failover": cluster.maximum_lag_on_failover,
        "synchronous_mode": cluster.synchronous_mode,
        "synchronous_mode_strict": cluster.synchronous_mode_strict,
        "failsafe_mode": False,
        "member_slots_ttl": MEMBER_SLOTS_TTL_S,
        "postgresql": {
            "use_pg_rewind": True,
            "use_slots": True,
            "parameters": params,
            "pg_hba": with_member_hba(cluster, pg_hba),
        },
    }


def patroni_config(
    cluster: Cluster,
    member: Member,
    paths: PatroniPaths,
    dcs: Mapping[str, Any],
    superuser: str = "postgres",
    replica_methods: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The member's local configuration without any password; ``replica_methods``
    replaces ``create_replica_methods`` (pgsteady.backup.cluster_archive.replica_method)."""
    if member not in cluster.members:
        raise ValueError(f"{member.name} is not a member of cluster {cluster.name}")
    if superuser in (REWIND_USER, REPLICATION_USER):
        raise ValueError(f"superuser {superuser!r}: the name of a role Patroni makes")
    rest = _hostport(member.address, cluster.rest_port)
    local = [] if ipaddress.ip_address(member.address).is_loopback else ["127.0.0.1"]
    tls = {"certfile": paths.cert_file, "keyfile": paths.key_file}
    # the member's certificate is also its client certificate (clientcert=verify-ca)
    verify = {
        "sslmode": "verify-full",
        "sslrootcert": paths.ca_file,
        "sslcert": paths.cert_file,
        "sslkey": paths.key_file,
    }
    return {
        "scope": cluster.name,
        "namespace": cluster.namespace,
        "name": member.name,
        "restapi": {
            "listen": rest,
            "connect_address": rest,
            **tls,
            "cafile": paths.ca_file,
            # a client certificate from the CA on every endpoint (review R8 L1: GET /config
            # shows the whole pg_hba and parameters); the members present ``ctl``'s below
            # when they call each other, HAProxy its own on its checks
            "verify_client": "required",
            "allowlist": sorted({m.address for m in cluster.members} | set(local)),
        },
        "ctl": {**tls, "cacert": paths.ca_file},
        "etcd3": {
            "hosts": [_hostport(m.address, cluster.etcd_client_port) for m in cluster.etcd_members],
            "protocol": "https",
            "cacert": paths.etcd_ca_file or paths.ca_file,
            # a certificate without a Common Name (pgsteady/cluster/certs.py): etcd refuses
            # gateway requests over one that has a CN once RBAC is on
            "cert": paths.etcd_cert_file,
            "key": paths.etcd_key_file,
            "username": PATRONI_USER,
        },
        "bootstrap": {
            "dcs": dict(dcs),
            "initdb": [
                {"encoding": "UTF8"},
                "data-checksums",
                {"auth-local": "peer"},
                {"auth-host": "scram-sha-256"},
            ],
            # required by Patroni 3.0.2's validator; the DCS pg_hba above is what applies
            "pg_hba": list(dcs["postgresql"]["pg_hba"]),
            **({"post_bootstrap": paths.post_bootstrap} if paths.post_bootstrap else {}),
        },
        "postgresql": {
            # listen_addresses style: a comma list, no brackets, then the port
            "listen": f"{','.join([member.address, *local])}:{cluster.member_port}",
            "connect_address": _hostport(member.address, cluster.member_port),
            "data_dir": paths.data_dir,
            "bin_dir": paths.bin_dir,
            "pgpass": paths.pgpass,
            "custom_conf": paths.custom_conf,
            "use_unix_socket": True,
            # replicas and pg_rewind dial the leader over TLS, check its name (the member
            # certificates list every member's address) and present their own
            "authentication": {
                "superuser": {"username": superuser},
                "replication": {"username": REPLICATION_USER, **verify},
                "rewind": {"username": REWIND_USER, **verify},
            },
            "create_replica_methods": ["basebackup"],
            **(replica_methods or {}),
        },
        "tags": {"nofailover": False, "noloadbalance": False, "clonefrom": False},
    }


def _dump(doc: Mapping[str, Any], comment: str) -> str:
    body = yaml.safe_dump(dict(doc), sort_keys=False, default_flow_style=False)
    return f"# {MANAGED}\n# {comment}\n{body}"


def render_patroni_yml(
    cluster: Cluster,
    member: Member,
    paths: PatroniPaths,
    dcs: Mapping[str, Any],
    superuser: str = "postgres",
    replica_methods: Mapping[str, Any] | None = None,
) -> str:
    """``10-pgsteady.yml``: the member's configuration, no secrets."""
    doc = patroni_config(cluster, member, paths, dcs, superuser, replica_methods)
    return _dump(
        doc, f"Patroni on {member.name} of cluster {cluster.name}; passwords: 90-secrets.yml"
    )


def render_secrets_yml(
    superuser_password: str,
    replication_password: str,
    rewind_password: str,
    rest_password: str,
    etcd_password: str,
) -> str:
    """``90-secrets.yml`` (0600): the passwords, merged over 10-pgsteady.yml by Patroni."""
    doc = {
        "restapi": {"authentication": {"username": REST_USER, "password": rest_password}},
        "etcd3": {"password": etcd_password},
        "postgresql": {
            "authentication": {
                "superuser": {"password": superuser_password},
                "replication": {"password": replication_password},
                "rewind": {"password": rewind_password},
            }
        },
    }
    return _dump(doc, "Secrets: keep this file 0600, owned by the postgres user")
