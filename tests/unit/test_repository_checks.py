"""make verify on a backup host: which stanzas it serves and what pgbackrest info says."""

from __future__ import annotations

import json
import time

from pgsteady.backup.repository_checks import check, stanza_problem, stanzas_served, verdict_problem
from pgsteady.inventory import InventoryHost
from pgsteady.settings import HostFacts, build_settings

OFFHOST = [{"kind": "posix"}, {"kind": "host", "host": "backup1"}]


def hosts() -> list[InventoryHost]:
    return [
        InventoryHost("db1", {"pgbackrest_repos": OFFHOST, "pgbackrest_stanza": "main"}),
        InventoryHost("db2", {"pgbackrest_repos": OFFHOST, "pgbackrest_stanza": "shop"}),
        InventoryHost("db3", {"pgbackrest_repos": [{"kind": "posix"}]}),
        InventoryHost("db4", {"pgbackrest_repos": OFFHOST, "pgbackrest_enabled": False}),
        InventoryHost("backup1", {"pgbackrest_repos": OFFHOST}, ("backup",)),
    ]


def info(stanza: str, code: int = 0, backups: int = 1) -> str:
    return json.dumps(
        [{"name": stanza, "status": {"code": code, "message": "x"},
          "backup": [{"label": f"b{i}"} for i in range(backups)]}]
    )  # fmt: skip


def test_stanzas_of_the_database_hosts_that_name_the_backup_host():
    weekly = "30 4 * * 0"  # the validator's default verify schedule
    assert stanzas_served("backup1", hosts()) == [("db1", "main", weekly), ("db2", "shop", weekly)]
    assert stanzas_served("backup2", hosts()) == []


def test_stanza_problem_names_status_missing_backup_and_missing_stanza():
    assert stanza_problem(info("main"), "main") is None
    assert "status 2" in str(stanza_problem(info("main", code=2), "main"))
    assert "no backup" in str(stanza_problem(info("main", backups=0), "main"))
    assert "not in the repository" in str(stanza_problem(info("other"), "main"))
    assert "no answer" in str(stanza_problem("", "main"))


def test_check_fails_an_unhealthy_server_and_a_stanza_without_backup():
    s = build_settings(
        {"postgres_bind": "10.0.0.9", "postgres_allowed_networks": ["10.0.0.0/24"]},
        HostFacts(ram_mb=2048, cpus=1),
    )
    answers = {"docker inspect": "unhealthy\n", "--stanza=main": info("main"),
               "--stanza=shop": info("shop", backups=0),
               "verify-main.json": json.dumps({"finished": time.time() - 60, "ok": False}),
               "verify-shop.json": ""}  # fmt: skip

    def run(command: str) -> str:
        return next(v for k, v in answers.items() if k in command)

    results = {name: (ok, what) for name, ok, what, _fix in check(hosts()[-1], s, hosts(), run)}
    assert results["server"][0] is False and "unhealthy" in results["server"][1]
    assert results["stanza[main]"][0] is True
    assert results["stanza[shop]"] == (
        False,
        "db2's stanza 'shop': no backup in the repository yet",
    )
    assert results["verify[main]"][0] is False and "corrupt" in results["verify[main]"][1]
    assert results["verify[shop]"][0] is False and "never verified" in results["verify[shop]"][1]


def test_a_verdict_vouches_only_when_ok_and_recent():
    now = 1_800_000_000.0
    fresh = json.dumps({"finished": now - 3600, "ok": True})
    assert verdict_problem(fresh, "30 4 * * 0", now) is None
    old = json.dumps({"finished": now - 30 * 86400, "ok": True})
    assert "is 30d old" in str(verdict_problem(old, "30 4 * * 0", now))
    bad = json.dumps({"finished": now, "ok": False})
    assert "corrupt" in str(verdict_problem(bad, "@daily", now))
    assert "cannot be read" in str(verdict_problem("{", "@daily", now))
    assert "never verified" in str(verdict_problem(None, "@daily", now))
