"""Every file pgsteady renders onto a host opens with the same "managed by" line."""

from __future__ import annotations

import re

import pytest

from pgsteady.backup import pgbackrest
from pgsteady.backup import repository_host as repository
from pgsteady.postgres import conf_files
from pgsteady.render import MANAGED, TEMPLATE_DIR
from pgsteady.settings import HostFacts, build_settings
from pgsteady.stack.compose import render_compose, render_ctl_env
from pgsteady.stack.jobs import backup_job, render_cron, render_service, render_timer

CLIENT = repository.Client(
    name="db1", peer=pgbackrest.Peer("db1", "10.0.0.5", 8432), stanza="main", repo=2,
    retention_full=2, retention_diff=6, full_schedule="30 1 * * 0",
    diff_schedule="30 1 * * 1-6", verify_schedule="30 4 * * 0", postgres_version=17,
    process_max=1,
)  # fmt: skip

RENDERED = {
    "docker-compose.yml": ("#", lambda s: render_compose(s)),
    "ctl.env": ("#", lambda s: render_ctl_env(s, "docker compose")),
    "postgresql.conf": ("#", lambda s: conf_files.render_postgresql_conf(s)),
    "pg_hba.conf": ("#", lambda s: conf_files.render_pg_hba_conf(s)),
    "init_db.sql": ("--", lambda s: conf_files.render_init_db_sql(s)),
    "schema_files.psql": ("--", lambda s: conf_files.render_schema_psql(s)),
    "pgbackrest.conf": ("#", lambda s: pgbackrest.render_conf(s)),
    "backup host pgbackrest.conf": ("#", lambda s: repository.render_conf(s, [CLIENT])),
    "pgbackrest-repository.yml": ("#", lambda s: repository.render_compose(s)),
    "cron job": ("#", lambda s: render_cron(backup_job(s))),
    "systemd service": ("#", lambda s: render_service(backup_job(s))),
    "systemd timer": ("#", lambda s: render_timer(backup_job(s))),
}


@pytest.fixture(scope="module")
def s(tmp_path_factory: pytest.TempPathFactory):
    schema = tmp_path_factory.mktemp("schema") / "01-app.sql"
    schema.write_text("SELECT 1;\n")
    data = {"postgres_schema_files": [str(schema)], "pgbackrest_enabled": True}
    return build_settings(data, HostFacts(ram_mb=4096, cpus=2))


@pytest.mark.parametrize("what", sorted(RENDERED))
def test_rendered_file_opens_with_the_managed_line(what: str, s) -> None:
    comment, render = RENDERED[what]
    first = render(s).lstrip("\n").splitlines()[0]
    assert first == f"{comment} {MANAGED}", first


def test_every_template_writes_the_managed_line() -> None:
    """A new template cannot forget it: each one uses the shared ``managed`` value.

    A partial that another template includes writes no file of its own: its includer's
    line opens the file, so partials are exempt (and must be included somewhere)."""
    templates = sorted(TEMPLATE_DIR.glob("*.j2"))
    assert len(templates) >= 11
    texts = {t.name: t.read_text() for t in templates}
    included = {
        name for text in texts.values() for name in re.findall(r'{%-? include "([^"]+)"', text)
    }
    assert included <= set(texts), included - set(texts)
    missing = [
        name
        for name, text in texts.items()
        if name not in included and not re.search(r"\bmanaged\b", text)
    ]
    assert not missing, missing
