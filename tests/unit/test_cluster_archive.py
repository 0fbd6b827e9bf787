"""pgBackRest in a cluster (issue 15 item 5, issue 16 item 4): what each member and the
backup host render, where archive_command and restore_command live, and the refusals."""

from __future__ import annotations

import configparser
from typing import Any

import pytest
import yaml

from pgsteady.backup import cluster_archive, pgbackrest
from pgsteady.backup import repository_host as repository
from pgsteady.cluster import dcs, patroni
from pgsteady.cluster.inventory import cluster_of
from pgsteady.settings import Settings, SettingsError, build_settings, defaults
from tests.unit.test_cluster_etcd_compose import FACTS, MEMBER

REPO = {"kind": "host", "host": "backup1"}
ARCHIVING = {
    **MEMBER,
    "pgbackrest_enabled": True,
    "pgbackrest_repos": [REPO],
    "postgres_bind": "10.0.0.1",
}
BACKUP = pgbackrest.Peer("backup1", "10.0.0.9", 8432)
BACKUP_HOST = {"postgres_bind": "10.0.0.9", "postgres_allowed_networks": ["10.0.0.0/24"]}
MEMBERS = [pgbackrest.Peer(f"pg{i}", f"10.0.0.{i}", 8432) for i in (1, 2, 3)]


def member(**over: Any) -> Settings:
    return build_settings({**ARCHIVING, **over}, FACTS)


def errors(**over: Any) -> list[str]:
    with pytest.raises(SettingsError) as exc:
        member(**over)
    return exc.value.errors


def parse(text: str) -> configparser.ConfigParser:
    conf = configparser.ConfigParser(strict=False, interpolation=None)
    conf.read_string(text)
    return conf


def client(peer: pgbackrest.Peer, cluster: str | None = "main", **over: Any) -> repository.Client:
    values: dict[str, Any] = dict(
        name=peer.name, peer=peer, stanza="main", repo=1, retention_full=2, retention_diff=6,
        full_schedule="30 1 * * 0", diff_schedule="30 1 * * 1-6",
        verify_schedule="30 4 * * 0", postgres_version=17, process_max=1,
        cluster=cluster, pg_port=15432,
    )  # fmt: skip
    values.update(over)
    return repository.Client(**values)


def test_a_member_archives_into_an_off_host_repository() -> None:
    s = member()
    assert s.pgbackrest_enabled and s.pgbackrest_repos[0].kind == "host"


def test_a_posix_repository_is_refused_in_a_cluster_with_key_value_and_accepted() -> None:
    errs = errors(pgbackrest_repos=[{"kind": "posix"}, REPO])
    assert any(
        e.startswith("pgbackrest_repos[0].kind = 'posix'") and "accepted: 'host'" in e for e in errs
    ), errs
    # a single host keeps its local repository
    build_settings({**ARCHIVING, "postgres_cluster_name": None,
                    "pgbackrest_repos": [{"kind": "posix"}, REPO]}, FACTS)  # fmt: skip


def test_archiving_without_a_backup_host_is_refused_in_a_cluster() -> None:
    errs = errors(pgbackrest_repos=[{"kind": "posix"}])
    assert any(
        e.startswith("pgbackrest_enabled = True with pgbackrest_repos = ['posix']")
        and "kind 'host'" in e
        for e in errs
    ), errs


def test_members_must_name_the_same_repository_and_stanza() -> None:
    hosts = [
        (f"pg{i}", {"postgres_cluster_name": "main", "ssh_hostname": f"10.0.0.{i}",
                    "pgbackrest_enabled": True, "pgbackrest_repos": [REPO]})
        for i in (1, 2, 3)
    ]  # fmt: skip
    hosts[2][1]["pgbackrest_repos"] = [{"kind": "host", "host": "backup2"}]
    hosts[1][1]["pgbackrest_stanza"] = "other"
    with pytest.raises(Exception) as exc:
        cluster_of("main", hosts, defaults())
    text = "\n".join(exc.value.errors)  # type: ignore[attr-defined]
    assert "pgbackrest_repos: differs between the members of cluster 'main'" in text
    assert "pg3" in text and "backup2" in text
    assert "pgbackrest_stanza: differs" in text and "'other' on pg2" in text


def test_a_member_conf_reaches_postgres_on_its_member_port() -> None:
    g = parse(pgbackrest.render_conf(member(), {"backup1": BACKUP}))
    assert g["main"]["pg1-port"] == "15432"
    assert g["main"]["pg1-path"] == "/var/lib/postgresql/data/pgdata"
    assert g["global"]["repo1-host"] == "10.0.0.9"
    assert g["global"]["tls-server-auth"] == "10.0.0.9=main"


def test_a_single_host_conf_keeps_port_5432() -> None:
    s = build_settings({**ARCHIVING, "postgres_cluster_name": None}, FACTS)
    assert parse(pgbackrest.render_conf(s, {"backup1": BACKUP}))["main"]["pg1-port"] == "5432"


def _cluster() -> Any:
    hosts = [(f"pg{i}", {"postgres_cluster_name": "main", "ssh_hostname": f"10.0.0.{i}"})
             for i in (1, 2, 3)]  # fmt: skip
    return cluster_of("main", hosts, defaults())


def test_archive_and_restore_commands_live_in_the_dcs_document() -> None:
    s = member()
    doc = dcs.desired(s, _cluster())
    params = doc["postgresql"]["parameters"]
    assert params["archive_mode"] == "on"
    assert params["archive_command"] == pgbackrest.archive_command(s)
    assert "--stanza=main archive-push %p" in params["archive_command"]
    assert "restore_command" not in params  # Patroni manages recovery: recovery_conf
    restore = doc["postgresql"]["recovery_conf"]["restore_command"]
    assert restore.startswith("pgbackrest --config=/etc/pgsteady/pgbackrest.conf ")
    assert restore.endswith('--stanza=main archive-get %f "%p"')
    # without pgBackRest: no archiving, no recovery_conf
    plain = dcs.desired(build_settings(MEMBER, FACTS), _cluster())
    assert "recovery_conf" not in plain["postgresql"]
    assert "archive_command" not in plain["postgresql"]["parameters"]


def test_replicas_clone_from_pgbackrest_first_then_basebackup() -> None:
    s = member()
    cluster = _cluster()
    paths = patroni.container_paths(17)
    desired = dcs.desired(s, cluster)
    text = patroni.render_patroni_yml(
        cluster, cluster.member("pg2"), paths, desired, "postgres",
        cluster_archive.replica_method(s),
    )  # fmt: skip
    pg = yaml.safe_load(text)["postgresql"]
    assert pg["create_replica_methods"] == ["pgbackrest", "basebackup"]
    method = pg["pgbackrest"]
    assert method["keep_data"] is True and method["no_params"] is True
    assert "--delta" in method["command"] and method["command"].endswith(" restore")
    assert "--stanza=main" in method["command"]
    assert "cipher-pass" not in text
    plain = patroni.render_patroni_yml(cluster, cluster.member("pg2"), paths, desired)
    assert yaml.safe_load(plain)["postgresql"]["create_replica_methods"] == ["basebackup"]


def test_the_backup_host_lists_every_member_and_backs_up_from_a_standby() -> None:
    s = build_settings(BACKUP_HOST, FACTS)
    clients = [client(p) for p in MEMBERS]
    assert repository.client_errors(s, "backup1", clients) == []
    conf = parse(repository.render_conf(s, clients))
    stanza = conf["main"]
    for i, p in enumerate(MEMBERS, 1):
        assert stanza[f"pg{i}-host"] == p.address
        assert stanza[f"pg{i}-host-type"] == "tls"
        assert stanza[f"pg{i}-port"] == "15432"
        assert stanza[f"pg{i}-path"] == "/var/lib/postgresql/data/pgdata"
    assert "pg4-host" not in stanza
    assert stanza["backup-standby"] == "prefer"
    auth = repository.render_conf(s, clients)
    for p in MEMBERS:
        assert f"tls-server-auth={p.address}=main" in auth
    jobs = repository.jobs(s, clients)
    assert sorted(j.unit for j in jobs) == [
        "pgsteady-repository-diff-main",
        "pgsteady-repository-full-main",
        "pgsteady-repository-verify-main",
    ]
    assert all("cluster main" in j.description for j in jobs)


def test_a_backup_host_still_refuses_two_separate_database_hosts() -> None:
    s = build_settings(BACKUP_HOST, FACTS)
    two = [client(MEMBERS[0], None), client(MEMBERS[1], None, stanza="other")]
    errs = repository.client_errors(s, "backup1", two)
    assert any("give each its own backup host" in e for e in errs), errs
    mixed = [client(MEMBERS[0]), client(MEMBERS[1], cluster="other")]
    assert any("give each its own backup host" in e
               for e in repository.client_errors(s, "backup1", mixed))  # fmt: skip


def test_a_single_host_backup_conf_is_unchanged() -> None:
    s = build_settings(BACKUP_HOST, FACTS)
    one = parse(repository.render_conf(s, [client(MEMBERS[0], None, pg_port=5432)]))["main"]
    assert one["pg1-host"] == "10.0.0.1" and "pg1-port" not in one
    assert "backup-standby" not in one and "pg2-host" not in one


def test_verify_on_the_backup_host_counts_a_clusters_members_as_one_database() -> None:
    from pgsteady.backup.repository_checks import check, stanzas_served
    from pgsteady.inventory import InventoryHost

    member = {"pgbackrest_repos": [REPO], "postgres_cluster_name": "main"}
    hosts = [InventoryHost(f"pg{i}", dict(member)) for i in (1, 2, 3)]
    hosts.append(InventoryHost("backup1", {}, ("backup",)))
    weekly = "30 4 * * 0"
    assert stanzas_served("backup1", hosts) == [("cluster main", "main", weekly)]
    s = build_settings(BACKUP_HOST, FACTS)

    def names(hs: list[InventoryHost]) -> set[str]:
        return {n for n, *_ in check(hs[-1], s, hs, lambda _cmd: "")}

    assert "one_database_host" not in names(hosts)
    # a single host beside the cluster on the same backup host is still refused
    single = InventoryHost("db9", {"pgbackrest_repos": [REPO], "pgbackrest_stanza": "shop"})
    assert "one_database_host" in names([single, *hosts])
