"""pgsteady's whole converge as one pyinfra deploy: what ``deploy.py`` runs, and what a
project with its own pyinfra deploy file can call (docs/architecture.md, "Calling
pgsteady from your own deploy").

Every setting of the host is validated, and every preflight check run, before the first
operation; a host with a problem stops the run with the list of what to fix. Hosts of
the inventory's ``backup`` group run no Postgres: they keep the off-host pgBackRest
repository of the database hosts that name them (pgbackrest_repos).
"""

from __future__ import annotations

from pyinfra.api import deploy

from tasks import (
    backup,
    cluster_growth,
    cluster_member,
    cluster_roll,
    docker,
    etcd,
    image,
    jobs,
    metrics,
    noop_guard,
    pgbackrest,
    pgbackrest_repository,
    pgbouncer,
    postgres,
    preflight,
    secrets,
    tls,
)
from tasks.barrier import barrier
from tasks.cluster import load_cluster, refuse_foreign_data
from tasks.pgbackrest_peers import is_backup_host
from tasks.settings import load_settings


@deploy("pgsteady")
def converge() -> None:
    """Converge the current host: a Postgres host, or a backup host of the inventory."""
    settings = load_settings()
    load_cluster(settings)  # the inventory-wide cluster rules, before any operation
    refuse_foreign_data(settings)  # a member holding a single host's data: stop now
    cluster_growth.refuse_etcd_change(settings)  # growth that would move etcd: stop now
    cluster_roll.refuse_while_rolling(settings)  # a rolling change elsewhere: stop now
    pgbouncer.refuse_pool_overflow(settings)  # the members' pools on one leader: stop now
    pgbackrest_repository.check_topology(settings)
    preflight.run(settings)
    compose_cmd = docker.compose_command(settings)
    # One round trip reads the files the converge writes (a no-op run skips their facts).
    noop_guard.prefetch_host_files(settings.layout, settings.compose_project)

    docker.install(settings)
    image_ops = image.ensure(settings)
    pending = None  # a cluster member's stack, started in the cluster's order below
    member_ops: list = []
    if is_backup_host():
        pgbackrest_repository.prepare(settings, compose_cmd, image_ops)
    else:
        secrets.ensure(settings)
        tls_ops = tls.ensure(settings)  # before the server starts: ssl = on needs the files
        pgbackrest_ops = pgbackrest.prepare(settings)  # bind-mounted repos and passphrases
        metrics.prepare(settings)  # files the exporter services bind-mount
        pooler_ops = pgbouncer.prepare(settings, tls_ops)  # files the pooler bind-mounts
        etcd.prepare(settings)  # a cluster's etcd hosts: TLS, token keys, initial env
        member_ops = cluster_member.prepare(settings)  # Patroni's and HAProxy's files
        pending = postgres.ensure(settings, compose_cmd, image_ops, member_ops)
        cluster_member.start_etcd(settings, pending, etcd.compose_service(settings) is not None)
        pgbouncer.restart_on_change(settings, pooler_ops)
    # Operations of different hosts are ordered only at points every host passes.
    barrier("every etcd member of a cluster has started")
    etcd.bootstrap_auth(settings)  # once, on the first etcd host
    barrier("etcd's users exist and its auth is on")
    cluster_member.start_member(settings, pending, seed_turn=True)
    barrier("the cluster's seed leads")
    cluster_member.start_member(settings, pending, seed_turn=False)  # they clone it
    cluster_roll.reload_patroni(settings, pending)  # a changed patroni.yml, no restart
    cluster_member.converge_dcs(settings)  # from the seed only
    cluster_member.apply_sql(settings, pending)  # on the leader only
    barrier("every member's files, the DCS and init_db.sql are converged")
    # one operation on the seed each, driving every member one at a time (switchover)
    cluster_roll.recreate_changed(settings, pending, member_ops)
    cluster_roll.restart_pending(settings)
    barrier("the cluster's rolling changes are done")
    barrier("the pgBackRest repository servers of the backup hosts run")
    if not is_backup_host():
        pgbackrest.ensure_stanza(settings, pgbackrest_ops)
        tls.reload_on_change(settings, tls_ops)
        backup.install(settings)
        metrics.install(settings)
        jobs.ensure(settings)
    barrier("every database host's stanza exists")
    if is_backup_host():
        pgbackrest_repository.first_backups(settings)
