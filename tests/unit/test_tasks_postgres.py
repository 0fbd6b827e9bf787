"""tasks/postgres.py, facts in and operations out: what a change starts on the host.

The stack's task is run without a host (tests.support.pyinfra_plan); the container's
state is the fact, and the test says which uploads changed. The ``_if`` wiring then
decides which of compose up, apply-config (reload/restart), apply-sql and apply-schema
run, as pyinfra would at execution.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pyinfra.operations import files

from pgsteady.settings import HostFacts, Settings, build_settings
from pgsteady.stack.upgrade import PGBACKREST_PENDING
from tasks import postgres
from tests.support.pyinfra_plan import Plan, plan

REPO = Path(__file__).resolve().parents[2]

UP = "Start or update the stack, wait until healthy"
APPLY_CONFIG = "Apply changed server configuration (reload; restart only if required)"
APPLY_SQL = "Apply init_db.sql"
APPLY_SCHEMA = "Apply the schema files as the application's role"
DECISIONS = (UP, APPLY_CONFIG, APPLY_SQL, APPLY_SCHEMA)
IMAGE = "Image stand-in"  # the image task's operation that changes the image behind the alias

HEALTHY = {"State": {"Running": True, "Health": {"Status": "healthy"}}}
STARTING = {"State": {"Running": True, "Health": {"Status": "starting"}}}
STOPPED = {"State": {"Running": False}}


def settings(**data: Any) -> Settings:
    return build_settings(data, HostFacts(ram_mb=4096, cpus=2, has_systemd=True), host="db1")


def stack_plan(
    container: dict | None,
    s: Settings | None = None,
    exporters: dict | None = HEALTHY,
    volumes: dict[str, int] | None = None,
    incomplete: bool = False,
    pending: tuple[str, ...] = (),
) -> Plan:
    s = s or settings()

    def task() -> None:
        image_op = files.file(name=IMAGE, path="/nonexistent/image-marker")
        postgres.ensure(s, "docker compose", [image_op])

    def docker_inspect(kind: str, object_id: str) -> dict | None:
        others = (f"{s.compose_project}-postgres-exporter", f"{s.compose_project}-node-exporter")
        assert kind == "container" and object_id in (s.container_name, *others)
        return container if object_id == s.container_name else exporters

    # No file on the host yet (FileState: tasks/noop_guard.py), so every write runs.
    facts = {
        "DockerInspect": docker_inspect,
        "NumericStat": None,
        "FileState": None,
        # The data volume's major (none: no upgrade asked for, nothing to upgrade).
        "VolumePgVersion": lambda volume: (volumes or {}).get(volume),
        "VolumeUpgradeIncomplete": lambda volume, state_dir: incomplete,
        "File": lambda path: {"mode": 644} if path in (pending or ()) else None,
    }
    _, p = plan(task, facts=facts)
    return p


def decisions(p: Plan, *changed: str) -> set[str]:
    """Which of the decision operations run when ``changed`` uploads changed."""
    return set(p.execute(changed)) & set(DECISIONS)


def conf(s: Settings, name: str) -> str:
    return f"Write {s.layout.config}/{name}"


def init_sql(s: Settings) -> str:
    return f"Write {s.layout.init}/10-init_db.sql"


def test_a_converged_running_stack_runs_nothing() -> None:
    assert decisions(stack_plan(HEALTHY)) == set()


@pytest.mark.parametrize(
    "container", [None, STOPPED, STARTING], ids=["absent", "stopped", "unhealthy"]
)
def test_a_stack_not_running_healthy_is_brought_up(container: dict | None) -> None:
    assert decisions(stack_plan(container)) == {UP}


@pytest.mark.parametrize("exporters", [None, STOPPED], ids=["absent", "stopped"])
def test_an_exporter_not_running_brings_the_stack_up(exporters: dict | None) -> None:
    assert decisions(stack_plan(HEALTHY, exporters=exporters)) == {UP}
    # metrics off: no exporter is looked for
    off = settings(metrics_enabled=False)
    assert decisions(stack_plan(HEALTHY, off, exporters=exporters)) == set()


@pytest.mark.parametrize("changed", ["Write docker-compose.yml", IMAGE])
def test_a_new_compose_file_or_image_recreates_the_container(changed: str) -> None:
    assert decisions(stack_plan(HEALTHY), changed) == {UP}


@pytest.mark.parametrize("name", ["postgresql.conf", "pg_hba.conf"])
def test_a_changed_server_file_is_applied_without_compose(name: str) -> None:
    s = settings()
    assert decisions(stack_plan(HEALTHY, s), conf(s, name)) == {APPLY_CONFIG}


def test_a_container_started_by_up_already_runs_the_new_configuration() -> None:
    s = settings()
    changed = (conf(s, "postgresql.conf"), "Write docker-compose.yml")
    assert decisions(stack_plan(HEALTHY, s), *changed) == {UP}
    assert decisions(stack_plan(STOPPED, s), conf(s, "pg_hba.conf")) == {UP}


def test_changed_init_sql_is_applied_alone() -> None:
    s = settings()
    assert decisions(stack_plan(HEALTHY, s), init_sql(s)) == {APPLY_SQL}


def test_schema_files_run_as_the_app_after_their_own_or_init_sql_change(tmp_path: Path) -> None:
    schema = tmp_path / "01-tables.sql"
    schema.write_text("CREATE TABLE IF NOT EXISTS t (id int);\n")
    s = settings(postgres_schema_files=[str(schema)])
    p = stack_plan(HEALTHY, s)
    assert decisions(p) == set()
    schema_write = next(n for n in p.names if n.startswith("Write ") and "/schema/" in n)
    assert decisions(stack_plan(HEALTHY, s), schema_write) == {APPLY_SCHEMA}
    assert decisions(stack_plan(HEALTHY, s), init_sql(s)) == {APPLY_SQL, APPLY_SCHEMA}
    assert decisions(stack_plan(HEALTHY, s), conf(s, "postgresql.conf")) == {APPLY_CONFIG}


def test_no_schema_files_no_schema_step() -> None:
    assert APPLY_SCHEMA not in stack_plan(HEALTHY).names


UPGRADE = {
    "postgres_version": 17,
    "postgres_image_source": "debian",
    "postgres_data_volume": "pgsteady_pgdata17",
    "postgres_upgrade_from_volume": "pgsteady_pgdata",
}


def _upgrade_ops(p: Plan) -> list[str]:
    return [n for n in p.names if "major upgrade" in n or n.startswith("Upgrade the major")]


@pytest.mark.parametrize("incomplete", [False, True], ids=["new-volume", "unfinished"])
def test_an_asked_for_upgrade_runs_before_the_stack_starts(incomplete: bool) -> None:
    s = settings(**UPGRADE)
    p = stack_plan(HEALTHY, s, volumes={"pgsteady_pgdata": 15}, incomplete=incomplete)
    upgrade = _upgrade_ops(p)
    assert upgrade[0].startswith("Upgrade the major version: pgsteady_pgdata -> pgsteady_pgdata17")
    assert "upgrade-major pgsteady_pgdata" in p.op(upgrade[0]).commands[0]
    assert "pgBackRest" in upgrade[1]  # on by default: stanza checked, first full backups
    assert p.names.index(upgrade[-1]) < p.names.index(UP)


def test_a_finished_upgrade_or_none_asked_for_adds_nothing() -> None:
    done = {"pgsteady_pgdata": 15, "pgsteady_pgdata17": 17}
    assert _upgrade_ops(stack_plan(HEALTHY, settings(**UPGRADE), volumes=done)) == []
    assert _upgrade_ops(stack_plan(HEALTHY, volumes={"pgsteady_pgdata": 17})) == []


def test_first_pgbackrest_backups_of_a_failed_upgrade_deploy_are_taken_on_its_rerun() -> None:
    s = settings(**UPGRADE)
    done = {"pgsteady_pgdata": 15, "pgsteady_pgdata17": 17}
    pending = (f"{s.layout.state}/{PGBACKREST_PENDING}",)
    ops = _upgrade_ops(stack_plan(HEALTHY, s, volumes=done, pending=pending))
    assert ops == ["Check pgBackRest after a major upgrade, back up the new major in full"]
    commands = stack_plan(HEALTHY, s, volumes=done, pending=pending).op(ops[0]).commands
    assert commands[-1] == f"rm -f {pending[0]}"


def test_the_engine_writes_the_pending_file_the_deploy_reads() -> None:
    engine = (REPO / "files" / "bin" / "pgsteady-upgrade-major").read_text()
    assert f'touch "$PGSTEADY_STATE_DIR/{PGBACKREST_PENDING}"' in engine
