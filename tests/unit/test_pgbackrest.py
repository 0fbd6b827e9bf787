"""pgBackRest settings, pgbackrest.conf, the server's archive lines, mounts and jobs."""

from __future__ import annotations

import configparser

import pytest

from pgsteady.backup import pgbackrest
from pgsteady.postgres.conf_files import render_postgresql_conf
from pgsteady.settings import HostFacts, SettingsError, build_settings
from pgsteady.stack.compose import compose_context
from pgsteady.stack.hostfiles import layout
from pgsteady.stack.jobs import pgbackrest_jobs, render_cron

FACTS = HostFacts(ram_mb=4096, cpus=2)


def settings(**data):
    return build_settings(data, FACTS)


def errors_for(**data) -> list[str]:
    with pytest.raises(SettingsError) as exc:
        build_settings(data, FACTS)
    return exc.value.errors


def test_conf_has_encrypted_repo_bounded_async_queue_and_no_passphrase():
    s = settings(pgbackrest_archive_queue_max="2GB", pgbackrest_process_max=2)
    conf = configparser.ConfigParser()
    conf.read_string(pgbackrest.render_conf(s))
    g = conf["global"]
    assert g["repo1-type"] == "posix"
    assert g["repo1-path"] == "/var/lib/pgbackrest/repo1"
    assert g["repo1-cipher-type"] == "aes-256-cbc"
    assert g["repo1-retention-full"] == "2"
    assert g["archive-async"] == "y"
    assert g["archive-push-queue-max"] == "2048MiB"
    assert g["process-max"] == "2"
    assert not any("cipher-pass" in k for s_ in conf.sections() for k in conf[s_])
    assert conf["main"]["pg1-path"] == "/var/lib/postgresql/data/pgdata"


def test_several_repositories_each_numbered_with_own_path_and_passphrase_file():
    s = settings(
        pgbackrest_repos=[
            {"kind": "posix"},
            {"kind": "posix", "path": "/srv/pgbr", "retention_full": 4},
        ]
    )
    conf = configparser.ConfigParser()
    conf.read_string(pgbackrest.render_conf(s))
    assert conf["global"]["repo2-path"] == "/var/lib/pgbackrest/repo2"
    assert conf["global"]["repo2-retention-full"] == "4"
    vols = compose_context(s)["volumes"]
    assert "/opt/pgsteady/pgbackrest/repo1:/var/lib/pgbackrest/repo1" in vols
    assert "/srv/pgbr:/var/lib/pgbackrest/repo2" in vols
    assert "/opt/pgsteady/secrets/pgbackrest:/etc/pgbackrest/conf.d:ro" in vols
    paths = {o.path: o for o in layout(s)}
    for n in (1, 2):
        o = paths[f"/opt/pgsteady/secrets/pgbackrest/repo{n}.conf"]
        assert (o.uid, o.gid, o.mode) == (0, 999, "640")


def test_server_archives_through_pgbackrest_with_the_timeout_setting():
    text = render_postgresql_conf(settings(pgbackrest_archive_timeout="10s"))
    assert "archive_mode = on" in text
    assert "archive_timeout = 10s" in text
    assert "--stanza=main archive-push %p'" in text


def test_disabled_leaves_no_archiving_mounts_files_or_jobs():
    s = settings(
        pgbackrest_enabled=False,
        metrics_enabled=False,
        pgbouncer_enabled=False,
        postgres_image_source="registry",
    )
    assert "archive_mode" not in render_postgresql_conf(s)
    ctx = compose_context(s)
    assert not any("pgbackrest" in v for v in ctx["volumes"])
    assert not ctx["init"]
    assert not any("pgbackrest" in o.path for o in layout(s))  # jobs, config, secrets


def test_compose_runs_an_init_and_finds_the_config_by_env_without_secrets():
    ctx = compose_context(settings())
    assert ctx["init"] is True
    env = ctx["environment"]
    assert env["PGBACKREST_CONFIG"] == "/etc/pgsteady/pgbackrest.conf"
    assert not any("CIPHER" in k for k in env)  # POSTGRES_PASSWORD_FILE is a path


def test_jobs_full_diff_verify_through_pgsteady_ctl():
    jobs = {j.unit: j for j in pgbackrest_jobs(settings(compose_project="shop"))}
    full = jobs["pgsteady-pgbackrest-full-shop"]
    assert full.command == (
        "/opt/pgsteady/bin/pgsteady-ctl", "pgbackrest", "--repo=1", "backup", "--type=full"
    )  # fmt: skip
    assert "30 1 * * 1-6 root" in render_cron(jobs["pgsteady-pgbackrest-diff-shop"])
    # pgbackrest verify exits 0 on a corrupt repository: pgsteady-ctl judges its verdict.
    verify = jobs["pgsteady-pgbackrest-verify-shop"].command
    assert verify == ("/opt/pgsteady/bin/pgsteady-ctl", "pgbackrest-verify", "1")


@pytest.mark.parametrize(
    ("data", "key", "fragment"),
    [
        ({"postgres_image_source": "registry"}, "postgres_image_source", "pgbackrest_enabled"),
        ({"postgres_image_source": "archive", "postgres_image": "x:1",
          "postgres_image_archive": "/x.tar"}, "postgres_image_source", "Debian-built"),
        ({"postgres_version": 16}, "postgres_version = 16", "Debian packages"),
        ({"postgres_db_type": "desktop"}, "postgres_db_type", "wal_level"),
        ({"postgres_settings": {"archive_command": "/bin/true"}}, "archive_command", "manages"),
        ({"pgbackrest_archive_timeout": "500ms"}, "pgbackrest_archive_timeout", "whole seconds"),
        ({"pgbackrest_archive_queue_max": "16MB"}, "pgbackrest_archive_queue_max", "64MB"),
        ({"pgbackrest_repos": [{"kind": "posix", "path": "/opt/pgsteady/backups/r"}]},
         "pgbackrest_repos[0].path", "inside app_dir"),
        ({"pgbackrest_repos": [{"kind": "posix", "path": "/srv/bk/r"}], "backup_dir": "/srv/bk"},
         "pgbackrest_repos[0].path", "inside the backup directory"),
        ({"pgbackrest_repos": [{"kind": "posix", "path": "/srv/r"},
                               {"kind": "posix", "path": "/srv/r"}]},
         "pgbackrest_repos[1].path", "also repo1"),
        ({"pgbackrest_repos": [{"kind": "nfs"}]}, "pgbackrest_repos.0.kind", "posix"),
        ({"pgbackrest_repos": []}, "pgbackrest_repos", "at least 1"),
        ({"pgbackrest_full_schedule": "61 * * * *"}, "pgbackrest_full_schedule", "61"),
    ],
)  # fmt: skip
def test_refused_with_key_and_reason(data, key, fragment):
    errors = errors_for(**data)
    assert any(key in e and fragment in e for e in errors), errors


def test_registry_is_fine_without_archiving():
    s = settings(
        postgres_image_source="registry",
        pgbackrest_enabled=False,
        metrics_enabled=False,
        pgbouncer_enabled=False,
        postgres_version=16,
    )
    assert pgbackrest.server_settings(s) == {}


def test_passphrase_command_holds_no_secret_and_writes_0600_then_renames():
    cmd = pgbackrest.generate_secret_command("/opt/p/secrets/pgbackrest/repo2.conf", 2)
    assert cmd.startswith("umask 077 && ")
    assert "repo2-cipher-pass=" in cmd and "/dev/urandom" in cmd
    assert cmd.endswith(
        "mv /opt/p/secrets/pgbackrest/repo2.conf.new /opt/p/secrets/pgbackrest/repo2.conf"
    )


@pytest.mark.parametrize(
    "path",
    ["/opt/pgsteady", "/opt/pgsteady/bin", "/opt/pgsteady/state", "/opt/pgsteady/tls",
     "/opt/pgsteady/pgbackrest", "/opt", "/etc/cron.d", "/var/lib", "/",
     "/opt/pgsteady/./secrets", "/opt/pgsteady//etc", "/srv/r\n"],
)  # fmt: skip
def test_a_repository_never_takes_root_s_directories(path: str) -> None:
    """The deploy chowns a repository to the server's uid: never one of root's directories
    (bin/ holds what the root watchdog runs every minute), a parent of them, or a system one."""
    with pytest.raises(SettingsError) as err:
        build_settings({"pgbackrest_repos": [{"kind": "posix", "path": path}]}, FACTS)
    assert "pgbackrest_repos" in str(err.value)


@pytest.mark.parametrize("path", ["/srv/pgbackrest", "/opt/pgsteady/pgbackrest/repo9", "/data/r"])
def test_a_repository_of_its_own_is_accepted(path: str) -> None:
    s = build_settings({"pgbackrest_repos": [{"kind": "posix", "path": path}]}, FACTS)
    assert pgbackrest.repo_host_path(s, 1, s.pgbackrest_repos[0]) == path
