"""Off-host pgBackRest repositories: both ends' configuration, the sidecar, jobs, checks."""

from __future__ import annotations

import configparser

import pytest
import yaml

from pgsteady.backup import pgbackrest
from pgsteady.backup import repository_host as repository
from pgsteady.settings import HostFacts, SettingsError, build_settings
from pgsteady.stack.compose import render_compose
from pgsteady.stack.jobs import pgbackrest_jobs

FACTS = HostFacts(ram_mb=4096, cpus=2)
BACKUP = pgbackrest.Peer("backup1", "10.0.0.9", 8432)
DB = pgbackrest.Peer("db1", "10.0.0.5", 8432)
OFFHOST = {
    "postgres_bind": "10.0.0.5",
    "postgres_allowed_networks": ["10.0.0.0/24"],
    "pgbackrest_repos": [{"kind": "posix"}, {"kind": "host", "host": "backup1"}],
}


def settings(**data):
    return build_settings(data, FACTS)


def parse(text: str) -> configparser.ConfigParser:
    conf = configparser.ConfigParser(strict=False, interpolation=None)
    conf.read_string(text)
    return conf


def client(**over) -> repository.Client:
    values = dict(name="db1", peer=DB, stanza="main", repo=2, retention_full=2,
                  retention_diff=6, full_schedule="30 1 * * 0", diff_schedule="30 1 * * 1-6",
                  verify_schedule="30 4 * * 0", postgres_version=17, process_max=1)  # fmt: skip
    values.update(over)
    return repository.Client(**values)


def test_database_host_reaches_the_backup_host_over_tls_and_admits_only_it():
    s = settings(**OFFHOST)
    text = pgbackrest.render_conf(s, {"backup1": BACKUP})
    g = parse(text)["global"]
    assert g["repo1-type"] == "posix"
    assert g["repo2-host"] == "10.0.0.9"
    assert g["repo2-host-type"] == "tls"
    assert g["repo2-host-ca-file"] == "/etc/pgsteady-tls/pgbackrest-ca.crt"
    assert g["repo2-cipher-type"] == "aes-256-cbc"
    assert "repo2-path" not in g  # the backup host decides where
    assert g["tls-server-auth"] == "10.0.0.9=main"  # the backup host's certificate, one stanza
    assert "cipher-pass=" not in text


def test_without_the_backup_host_known_the_conf_is_refused():
    with pytest.raises(ValueError, match="backup1"):
        pgbackrest.render_conf(settings(**OFFHOST), {})


def test_sidecar_shares_data_and_socket_and_is_published_like_postgres():
    s = settings(**OFFHOST)
    doc = yaml.safe_load(render_compose(s))
    side = doc["services"]["pgbackrest"]
    pg = doc["services"]["postgres"]
    assert side["user"] == "999:999"
    assert side["command"][-1] == "server"
    assert side["ports"] == ["10.0.0.5:8432:8432"]
    assert "pgdata:/var/lib/postgresql/data:ro" in side["volumes"]  # reads it, never writes
    assert not any("conf.d" in v or "secrets" in v for v in side["volumes"])  # no passphrase
    assert not any("config-include-path" in a for a in side["command"])
    assert "pgrun:/var/run/postgresql" in side["volumes"]
    assert "pgrun:/var/run/postgresql" in pg["volumes"]
    assert "pgrun" in doc["volumes"]
    key = "/opt/pgsteady/tls/private/pgbackrest.key:/etc/pgsteady-pgbackrest-key/pgbackrest.key:ro"
    assert key in side["volumes"]


def test_single_host_stack_is_unchanged_without_an_offhost_repository():
    # Without the exporters and the pooler, which share the socket directory too
    # (tests/unit/test_metrics.py, tests/unit/test_pgbouncer.py).
    doc = yaml.safe_load(render_compose(settings(metrics_enabled=False, pgbouncer_enabled=False)))
    assert list(doc["services"]) == ["postgres"]
    assert not any("pgrun" in v for v in doc["services"]["postgres"]["volumes"])


def test_database_host_jobs_back_up_only_its_own_repositories():
    jobs = pgbackrest_jobs(settings(**OFFHOST))
    assert {j.command[2] for j in jobs} == {"--repo=1", "1"}  # backups, verify of repo1
    only_remote = {**OFFHOST, "pgbackrest_repos": [{"kind": "host", "host": "backup1"}]}
    assert pgbackrest_jobs(settings(**only_remote)) == []


@pytest.mark.parametrize(
    ("data", "key", "fragment"),
    [
        ({"pgbackrest_repos": [{"kind": "host"}]}, "pgbackrest_repos.0", "needs host"),
        ({"pgbackrest_repos": [{"kind": "host", "host": "b", "path": "/srv/r"}]},
         "pgbackrest_repos.0", "takes no path"),
        ({"pgbackrest_repos": [{"kind": "posix", "host": "b"}]}, "pgbackrest_repos.0",
         "takes no host"),
        ({"pgbackrest_repos": [{"kind": "host", "host": "b"}]}, "postgres_bind = '127.0.0.1'",
         "private address"),
        ({"postgres_bind": "10.0.0.5", "postgres_allowed_networks": ["10.0.0.0/24"],
          "pgbackrest_repos": [{"kind": "host", "host": "b"}, {"kind": "host", "host": "b"}]},
         "pgbackrest_repos", "named twice"),
        ({"pgbackrest_tls_port": 80}, "pgbackrest_tls_port", "1024"),
    ],
)  # fmt: skip
def test_offhost_settings_refused_with_key_and_reason(data, key, fragment):
    with pytest.raises(SettingsError) as exc:
        build_settings(data, FACTS)
    assert any(key in e and fragment in e for e in exc.value.errors), exc.value.errors


def test_backup_host_serves_each_stanza_and_reaches_each_database_host():
    s = settings(postgres_bind="10.0.0.9", postgres_allowed_networks=["10.0.0.0/24"])
    other = client(name="db2", peer=pgbackrest.Peer("db2", "10.0.0.6", 8432), stanza="shop")
    conf = parse(repository.render_conf(s, [client(), other]))
    g = conf["global"]
    assert g["repo2-path"] == "/var/lib/pgbackrest/repository"
    assert g["repo2-cipher-type"] == "aes-256-cbc"
    assert conf["main"]["pg1-host"] == "10.0.0.5"
    assert conf["main"]["pg1-host-type"] == "tls"
    assert conf["shop"]["pg1-host"] == "10.0.0.6"
    assert conf["shop"]["repo2-retention-full"] == "2"
    # configparser keeps the last duplicate; the text has one auth line per client
    text = repository.render_conf(s, [client(), other])
    assert "tls-server-auth=10.0.0.5=main" in text
    assert "tls-server-auth=10.0.0.6=shop" in text


def test_backup_host_jobs_run_per_stanza_in_the_repository_container():
    s = settings(postgres_bind="10.0.0.9", postgres_allowed_networks=["10.0.0.0/24"])
    jobs = {j.unit: j for j in repository.jobs(s, [client()])}
    full = jobs["pgsteady-repository-full-main"]
    want = ("docker", "exec", "-u", "999", "pgsteady-pgbackrest-repository", "pgbackrest",
            "--stanza=main", "--repo=2", "backup", "--type=full")  # fmt: skip
    assert full.command == want
    verify = jobs["pgsteady-repository-verify-main"].command
    assert verify[:2] == ("sh", "-c") and verify[-1] == "verify"
    assert verify[4] == "/opt/pgsteady/state/verify-main.json"


@pytest.mark.parametrize(
    ("printed", "code", "sound"),
    [
        ("stanza: main\nstatus: ok\n  backup: x, status: valid\n"
         "    missing: 0, checksum invalid: 0, size invalid: 0, other: 0\n", 0, True),
        ("stanza: main\nstatus: ok\n    missing: 2, checksum invalid: 0\n", 0, False),
        ("stanza: main\nstatus: error\n  backup: x, status: invalid\n"
         "    checksum invalid: 1\n", 0, False),  # pgBackRest's exit code says nothing
        ("stanza: main\nstatus: ok\n", 1, False),
        ("", 0, False),
    ],
)  # fmt: skip
def test_backup_host_verify_job_judges_pgbackrest_s_verdict(printed, code, sound, tmp_path):
    """The job's shell wrapper, run for real around a stand-in for pgbackrest: its exit
    status and the verdict it keeps for make verify."""
    import json
    import subprocess

    fake = f"printf '{printed}'; exit {code}"
    verdict = tmp_path / "verify-main.json"
    argv = ["sh", "-c", repository.VERIFY_JUDGE, "pgbackrest-verify", str(verdict),
            "sh", "-c", fake]  # fmt: skip
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert (proc.returncode == 0) is sound, proc.stdout
    assert json.loads(verdict.read_text())["ok"] is sound


@pytest.mark.parametrize(
    ("clients", "fragment"),
    [
        ([client(), client(name="db2")], "give each database host its own stanza"),
        ([client(), client(name="db2", stanza="b", repo=3)], "same position"),
        ([client(postgres_version=15)], "same version"),
    ],
)
def test_backup_host_refuses_clients_it_cannot_serve(clients, fragment):
    s = settings(postgres_bind="10.0.0.9", postgres_allowed_networks=["10.0.0.0/24"])
    errors = repository.client_errors(s, "backup1", clients)
    assert any(fragment in e for e in errors), errors


def test_backup_host_on_loopback_is_refused():
    errors = repository.client_errors(settings(), "backup1", [client()])
    assert any("postgres_bind = '127.0.0.1'" in e for e in errors), errors


def test_peer_address_prefers_the_setting_then_ssh_hostname_then_the_name():
    assert pgbackrest.peer_address("b", {"pgbackrest_address": "x", "ssh_hostname": "y"}) == "x"
    assert pgbackrest.peer_address("b", {"ssh_hostname": "y"}) == "y"
    assert pgbackrest.peer_address("b", {}) == "b"


def test_status_lists_only_local_repositories_verify_checks_every_one():
    """make monitor refreshes every few seconds: no TLS listing of the off-host archive."""
    from pgsteady.monitor.archiving import script_values

    assert script_values(settings(**OFFHOST))["WAL_REPOS"] == "1"


def test_a_backup_host_keeps_one_database_host_s_repository():
    """pgBackRest's server checks the stanza at connect, then serves any path: two
    database hosts on one backup host would reach each other's backups."""
    s = settings(postgres_bind="10.0.0.9", postgres_allowed_networks=["10.0.0.0/24"])
    other = client(name="db2", peer=pgbackrest.Peer("db2", "10.0.0.6", 8432), stanza="shop")
    errors = repository.client_errors(s, "backup1", [client(), other])
    assert any("db1, db2" in e and "its own backup host" in e for e in errors), errors
    assert repository.client_errors(s, "backup1", [client()]) == []


@pytest.mark.parametrize("bind", ["127.0.0.1", "127.0.0.2", "::1", "::ffff:127.0.0.1", "localhost"])
def test_loopback_binds_are_refused_for_the_pgbackrest_servers(bind):
    assert pgbackrest.is_loopback(bind)
    with pytest.raises(SettingsError) as exc:
        build_settings({**OFFHOST, "postgres_bind": bind}, FACTS)
    assert any("private address" in e or "postgres_bind" in e for e in exc.value.errors)


@pytest.mark.parametrize(
    "address",
    [
        "10.0.0.9\ntls-server-auth=attacker=*",
        "db1\n",
        "a" * 65,
        "-db",
        "a b",
        "",
        "::1%x\ntls-server-auth=10.66.6.6=*",
        "fe80::1%eth0",
    ],  # fmt: skip
)
def test_pgbackrest_address_that_could_inject_config_or_miss_the_cn_is_refused(address):
    with pytest.raises(SettingsError) as exc:
        build_settings({"pgbackrest_address": address}, FACTS)
    assert any("pgbackrest_address" in e for e in exc.value.errors), exc.value.errors


def test_passphrase_store_makes_one_private_passphrase_and_refuses_odd_names(tmp_path, monkeypatch):
    from pyinfra.api.exceptions import DeployError

    from tasks import pgbackrest_peers

    ca = tmp_path / "ca"
    monkeypatch.setattr(pgbackrest_peers, "ca_directory", lambda s: (ca, "lab"))
    s = settings()
    first = pgbackrest_peers.shared_passphrase(s, "backup1", "main")
    assert first == pgbackrest_peers.shared_passphrase(s, "backup1", "main")  # made once
    assert first != pgbackrest_peers.shared_passphrase(s, "backup1", "shop")
    stored = ca / "pgbackrest" / "backup1" / "main.pass"
    assert stored.stat().st_mode & 0o777 == 0o600
    assert (ca / "pgbackrest" / "backup1").stat().st_mode & 0o777 == 0o700
    assert not [p for p in stored.parent.iterdir() if p.name.startswith(".pass-")]
    for bad in ("..", "a/b"):
        with pytest.raises(DeployError):
            pgbackrest_peers.shared_passphrase(s, bad, "main")
    stored.chmod(0o644)
    with pytest.raises(DeployError, match="0600"):
        pgbackrest_peers.shared_passphrase(s, "backup1", "main")


class _FakeHost:
    def __init__(self, name: str, data: dict, groups: tuple = ()) -> None:
        from types import SimpleNamespace

        self.name, self.groups = name, groups
        self.data = SimpleNamespace(get=data.get, dict=lambda: dict(data))


def test_two_pgbackrest_servers_with_one_address_are_refused(monkeypatch):
    """A certificate names its host by address: two hosts sharing one could pass for
    each other at the other end's tls-server-auth."""
    from pyinfra.api.exceptions import DeployError

    from tasks import pgbackrest_peers

    repos = [{"kind": "posix"}, {"kind": "host", "host": "b1"}]
    hosts = [
        _FakeHost("db1", {"ssh_hostname": "10.0.0.5", "pgbackrest_repos": repos}),
        _FakeHost("b1", {"ssh_hostname": "10.0.0.9"}, ("backup",)),
        _FakeHost("web", {"ssh_hostname": "10.0.0.9"}),  # no pgBackRest server: ignored
    ]
    monkeypatch.setattr(pgbackrest_peers, "inventory", _Inventory(hosts))
    pgbackrest_peers.check_unique_addresses()
    hosts.append(_FakeHost("db2", {"pgbackrest_address": "10.0.0.5", "pgbackrest_repos": repos}))
    with pytest.raises(DeployError, match="'10.0.0.5' is also db1's"):
        pgbackrest_peers.check_unique_addresses()


class _Inventory:
    def __init__(self, hosts: list) -> None:
        self.hosts = hosts

    def __iter__(self):
        return iter(self.hosts)

    def get_host(self, name: str):
        return next(h for h in self.hosts if h.name == name)


def test_pgbackrest_certificates_come_from_a_ca_of_their_own(tmp_path, monkeypatch):
    """No Postgres certificate (same inventory, other CA) can pass for a pgBackRest peer."""
    from tasks import pgbackrest_peers

    monkeypatch.setattr(pgbackrest_peers, "ca_directory", lambda s: (tmp_path / "ca", "lab"))
    own = pgbackrest_peers.pgbackrest_ca(settings())
    inventory_ca = (tmp_path / "ca" / "ca.crt").read_bytes()
    assert own.cert_pem != inventory_ca
    assert (tmp_path / "ca" / "pgbackrest-ca" / "ca.key").stat().st_mode & 0o777 == 0o600
    assert pgbackrest_peers.pgbackrest_ca(settings()).cert_pem == own.cert_pem  # made once
