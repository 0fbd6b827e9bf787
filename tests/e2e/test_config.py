"""Configuration end to end: the server runs the tuned config; reload vs restart."""

from __future__ import annotations

import math
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from pgsteady.postgres.conf_files import expected_settings, tuning_input
from pgsteady.postgres.parameters import Param, to_number
from pgsteady.postgres.tuning import pgtune
from pgsteady.settings import HostFacts, build_settings
from pgsteady.stack.hostfacts import read_host_facts
from tests.support.stack import REPO, Stack, parse_grand_total

pytestmark = pytest.mark.timeout(900)


def _host_facts() -> HostFacts:
    """This machine's facts, read with the deploy's own commands."""
    return read_host_facts(
        lambda cmd: subprocess.run(cmd, shell=True, capture_output=True, text=True).stdout
    )


def _show_all(stack: Stack) -> dict[str, str]:
    rows = stack.psql("SELECT name, current_setting(name) FROM pg_settings")
    return dict(line.split("|", 1) for line in rows.splitlines())


def test_server_runs_the_tuned_config_for_its_container(deployed: Stack) -> None:
    s = build_settings(deployed.host_data(), _host_facts())
    expected = expected_settings(s)
    # Sized for the 1 GB container, not for the host's RAM.
    host_sized = pgtune(replace(tuning_input(s), memory_limit=None, cpu_limit=None)).as_dict()
    assert expected["shared_buffers"] != host_sized["shared_buffers"]
    shown = _show_all(deployed)
    differing = {
        n: (v, shown.get(n))
        for n, v in expected.items()
        if shown.get(n) != v
        and not _same_in_pages(deployed, n, v, shown.get(n))
        and not _same_in_server_units(deployed, n, v)
    }
    assert not differing, differing


def _same_in_server_units(stack: Stack, name: str, expected: str) -> bool:
    """60s and the server's 1min are one value: compare in pg_settings' own unit."""
    row = stack.psql(
        f"SELECT setting, coalesce(unit, ''), vartype FROM pg_settings WHERE name = '{name}'"
    )
    setting, unit, vartype = row.split("|")
    if vartype not in ("integer", "real"):
        return False
    number = to_number(expected, Param(name, "", vartype, unit))
    return not isinstance(number, str) and math.isclose(number, float(setting), rel_tol=1e-9)


def _same_in_pages(stack: Stack, name: str, expected: str, shown: str | None) -> bool:
    """PGTune writes e.g. wal_buffers = 3932kB; the server keeps whole 8kB pages (3936kB)."""
    unit = stack.psql(f"SELECT unit FROM pg_settings WHERE name = '{name}'")
    if unit != "8kB" or not (expected.endswith("kB") and shown and shown.endswith("kB")):
        return False
    return abs(int(expected[:-2]) - int(shown[:-2])) < 8


def test_reloadable_change_reloads_restart_only_change_restarts(deployed: Stack) -> None:
    start = deployed.postmaster_start()

    result = deployed.deploy(postgres_settings={"log_min_duration_statement": "1234ms"})
    assert result.returncode == 0, result.output[-3000:]
    assert deployed.psql("SHOW log_min_duration_statement") == "1234ms"
    assert deployed.postmaster_start() == start, "a reloadable change restarted the server"
    changed = result.changed_operations()
    assert any("Apply changed server configuration" in op for op in changed), changed
    assert not any("Start or update the stack" in op for op in changed), changed

    result = deployed.deploy(
        postgres_settings={"log_min_duration_statement": "1234ms", "shared_buffers": "192MB"}
    )
    assert result.returncode == 0, result.output[-3000:]
    assert deployed.psql("SHOW shared_buffers") == "192MB"
    restarted = deployed.postmaster_start()
    assert restarted != start
    assert deployed.inspect()["State"]["Running"] is True

    again = deployed.deploy(
        postgres_settings={"log_min_duration_statement": "1234ms", "shared_buffers": "192MB"}
    )
    assert again.changed == 0, again.changed_operations()
    assert deployed.postmaster_start() == restarted


def test_dry_run_shows_the_change_and_changes_nothing(deployed: Stack) -> None:
    conf = deployed.app_dir / "config" / "postgresql.conf"
    before = conf.read_text()
    start = deployed.postmaster_start()
    deployed.write_inventory(postgres_settings={"log_min_duration_statement": "4321ms"})
    proc = subprocess.run(
        ["make", "-s", "dry-run", f"INVENTORY={deployed.inventory}"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    output = proc.stdout + proc.stderr
    changed = [
        line for line in output.splitlines() if "postgresql.conf" in line and "Write" in line
    ]
    assert changed and "(@local)" in changed[0].split("postgresql.conf", 1)[1]
    assert conf.read_text() == before
    assert deployed.psql("SHOW log_min_duration_statement") != "4321ms"
    assert deployed.postmaster_start() == start


def test_another_project_calls_the_converge_and_it_changes_nothing(
    deployed: Stack, tmp_path: Path
) -> None:
    """A pyinfra project of its own (its own deploy file and directory, no pgsteady
    group_data) calls pgsteady's converge; on the deployed host it changes nothing:
    the settings' defaults are the validator's, not group_data/all.py's."""
    project = tmp_path / "ops"
    project.mkdir()
    (project / "deploy.py").write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(REPO)!r})  # a checkout of pgsteady\n"
        "from pyinfra.operations import server\n"
        "from tasks.converge import converge\n"
        "server.shell(name='Something of our own first', commands=['true'], _if=lambda: False)\n"
        "converge()\n"
    )
    # Converged first with pgsteady's own deploy.py and group_data (earlier tests left
    # their settings behind), then the other project's run must find nothing to do.
    first = deployed.deploy()
    assert first.returncode == 0, first.output[-3000:]
    inventory = deployed.inventory
    proc = subprocess.run(
        [str(REPO / ".venv" / "bin" / "pyinfra"), "-y", str(inventory), "deploy.py"],
        cwd=project, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    assert "Loading: deploy.py" in output
    success, errors, _no_change = parse_grand_total(output)
    assert (success, errors) == (0, 0), output[-4000:]
