"""pgBackRest in a Patroni cluster (issue 15 item 5, issue 16 item 4): one stanza per
cluster in one off-host repository, archived from whichever member is primary.

Where each piece lives, and why:

* ``archive_mode``/``archive_command``/``archive_timeout`` are Postgres parameters of the
  cluster's DCS document (pgsteady.cluster.dcs.parameters, the same values a single host
  writes to postgresql.conf): one place every member reads, so a promoted replica
  archives with exactly the command its predecessor used.
* ``restore_command`` is Patroni's ``postgresql.recovery_conf`` in the same DCS document
  (Patroni manages recovery settings and refuses them as parameters): a replica that falls
  behind its primary's ``wal_keep_size`` fetches the WAL from the repository.
* The replica creation method ``pgbackrest`` is local (patroni.yml): Patroni runs it as
  the postgres user inside the member's container, ``--delta`` over what the data
  directory holds (``keep_data``), without Patroni's own arguments (``no_params``); with no
  backup in the repository it fails, and Patroni falls back to ``basebackup``.
* The backup host's stanza lists every member as pg1..pgN (their pgBackRest servers):
  pgBackRest finds the primary itself, and ``backup-standby=prefer`` copies the files from
  a healthy standby (else from the primary).

Pure: Settings (and the members) in, values out.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence

from pgsteady.backup import pgbackrest
from pgsteady.settings import Settings
from pgsteady.stack.layout import PGDATA

#: pgBackRest copies from a standby when one answers, else from the primary (>= 2.50;
#: the cluster image's Debian suite ships 2.55).
BACKUP_STANDBY = "prefer"
REPLICA_METHODS = ["pgbackrest", "basebackup"]


def in_cluster(s: Settings) -> bool:
    """True for a cluster member that archives (pgBackRest on, a cluster name set)."""
    return s.pgbackrest_enabled and s.postgres_cluster_name is not None


def pg_port(s: Settings) -> int:
    """The port Postgres listens on inside the container: a member's own port (Patroni
    sets it), else the image's 5432."""
    return s.postgres_member_port if s.postgres_cluster_name is not None else 5432


def restore_command(s: Settings) -> str:
    """The recovery ``restore_command``: WAL from the repository (``%p`` quoted for
    Postgres' own substitution)."""
    return " ".join([*pgbackrest.command(s, "archive-get", "%f"), '"%p"'])


def recovery_conf(s: Settings) -> dict[str, str]:
    """Patroni's ``postgresql.recovery_conf`` of the DCS document ({} without archiving)."""
    return {"restore_command": restore_command(s)} if in_cluster(s) else {}


def replica_method(s: Settings) -> dict[str, object]:
    """patroni.yml's ``postgresql`` keys for cloning from pgBackRest ({} without it)."""
    if not in_cluster(s):
        return {}
    argv = pgbackrest.command(s, "--delta", "--type=standby", "restore")
    return {
        "create_replica_methods": list(REPLICA_METHODS),
        "pgbackrest": {"command": shlex.join(argv), "keep_data": True, "no_params": True},
    }


def stanza_members(peers: Sequence[pgbackrest.Peer], port: int) -> list[tuple[str, str]]:
    """The backup host's stanza lines for a cluster: every member as pgN (its pgBackRest
    server over TLS, its data directory and port), and standby backups."""
    lines: list[tuple[str, str]] = []
    for n, peer in enumerate(peers, 1):
        lines += pgbackrest.client_tls_lines(f"pg{n}", peer)
        lines += [(f"pg{n}-path", PGDATA), (f"pg{n}-port", str(port))]
    if len(peers) > 1:
        lines.append(("backup-standby", BACKUP_STANDBY))
    return lines
