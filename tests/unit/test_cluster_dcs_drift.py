"""The DCS comparison of make verify (pgsteady/cluster/dcs_drift.py, review R8 L4); the
real Patroni round trip is tests/integration/test_cluster_dcs_drift_live.py."""

from __future__ import annotations

import shlex

from pgsteady.cluster import dcs_drift

DESIRED = {
    "ttl": 24,
    "synchronous_mode": True,
    "postgresql": {"use_slots": True, "parameters": {"work_mem": "4MB"}, "pg_hba": ["a", "b"]},
}


def test_a_converged_document_shows_nothing() -> None:
    current = {"ttl": "24", "synchronous_mode": True, "postgresql": dict(DESIRED["postgresql"])}
    assert dcs_drift.unmanaged(current, DESIRED) == []
    assert dcs_drift.removal_patch(current, DESIRED) == {}


def test_planted_keys_by_their_shortest_path() -> None:
    current = {
        "ttl": 24,
        "synchronous_mode": False,
        "standby_cluster": {"host": "10.9.9.9", "port": 5432},
        "postgresql": {
            "use_slots": True,
            "parameters": {"work_mem": "4MB", "archive_library": "evil"},
            "pg_hba": ["a", "b", "host all all 0.0.0.0/0 trust"],
        },
    }
    planted = dcs_drift.unmanaged(current, DESIRED)
    assert [dcs_drift.name(p) for p in planted] == [
        "postgresql.parameters.archive_library",
        "standby_cluster",
    ]
    # only the planted keys: managed values (the pg_hba above) are the next deploy's
    assert dcs_drift.removal_patch(current, DESIRED) == {
        "standby_cluster": None,
        "postgresql": {"parameters": {"archive_library": None}},
    }


def test_fix_command_pipes_the_patch_into_patronictl_in_the_container() -> None:
    cmd = dcs_drift.fix_command("pg-it", {"slots": None, "x": "it's"})
    printf, apply = cmd.split(" | ")
    assert shlex.split(printf) == ["printf", "%s\\n", '{"slots":null,"x":"it\'s"}']
    argv = shlex.split(apply)
    assert argv[:6] == ["docker", "exec", "-i", "-u", "postgres", "pg-it"]
    assert argv[6:] == [
        "patronictl", "-c", "/run/patroni", "edit-config", "--apply", "-", "--force", "--quiet"
    ]  # fmt: skip
