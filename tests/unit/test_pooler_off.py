"""Turning the pooler off (pgbouncer_enabled = False) leaves none of its files: the
converge removes its config, rules, key, certificate, auth file and the auth role's
password (init_db.sql drops the roles: integration/test_privileged_sql.py)."""

from __future__ import annotations

from pgsteady.settings import HostFacts, build_settings
from pgsteady.stack import pgbouncer
from pgsteady.stack.compose import secret_names
from tasks import pgbouncer as pgbouncer_task
from tests.support.pyinfra_plan import plan


def test_pooler_off_removes_every_file_of_it_with_its_secret() -> None:
    on = build_settings({"app_dir": "/srv/pg"}, HostFacts(ram_mb=4096, cpus=2))
    off = build_settings(
        {"app_dir": "/srv/pg", "pgbouncer_enabled": False}, HostFacts(ram_mb=4096, cpus=2)
    )
    result, p = plan(pgbouncer_task.prepare, off, [], facts={"File": None, "FileState": None})
    assert result == {"reload": [], "restart": []}
    removed = {op.arguments["path"] for op in p.ops if op.arguments.get("present") is False}
    secret = f"/srv/pg/secrets/{pgbouncer.AUTH_SECRET}"
    assert pgbouncer.AUTH_SECRET in secret_names(on)
    assert pgbouncer.AUTH_SECRET not in secret_names(off)
    assert secret in removed
    assert {
        f"/srv/pg/secrets/{pgbouncer.USERLIST}",
        f"/srv/pg/config/{pgbouncer.CONFIG}",
    } <= removed
    assert all(op.operation == "files.file" for op in p.ops)
