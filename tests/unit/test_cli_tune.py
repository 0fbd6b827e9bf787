"""`pgsteady tune`: output formats, exit codes and one-line errors."""

import json
import subprocess
import sys

import pytest

from pgsteady.cli import SUBCOMMANDS, build_parser, main

BASE = ["tune", "--pg-version", "15", "--db-type", "web", "--ram", "16GB", "--cpus", "4"]


def test_conf_output(capsys):
    assert main(BASE) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert "# DB Version: 15" in lines
    assert "# Total Memory (RAM): 16GB" in lines
    assert "shared_buffers = 4GB" in lines
    assert "work_mem = 20560kB" in lines
    assert "max_parallel_maintenance_workers = 2" in lines
    assert "# --- pgsteady: additions to / deviations from PGTune ---" in lines
    assert "password_encryption = 'scram-sha-256'" in lines
    i = lines.index("shared_preload_libraries = pg_stat_statements")
    assert lines[i - 1].startswith("# ")
    assert lines[0] == "# WARNING"


def test_json_output(capsys):
    assert main([*BASE, "--memory-limit", "2GB", "--cpu-limit", "1.5", "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["input"]["memory_limit"] == 2 * 1024**3
    assert doc["values"]["shared_buffers"] == "396MB"
    assert doc["values"]["work_mem"] == "828kB"
    assert doc["cpu_basis"] == 2
    sb = next(s for s in doc["settings"] if s["name"] == "shared_buffers")
    assert sb["source"] == "pgsteady" and "container memory limit" in sb["comment"]
    assert isinstance(doc["warnings"], list)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--ram", "0"], "--ram"),
        (["--cpus", "-1"], "--cpus"),
        (["--cpus", "two"], "--cpus"),
        (["--db-type", "analytics"], "--db-type"),
        (["--pg-version", "12"], "--pg-version"),
        (["--pg-version", "19"], "--pg-version"),
        (["--storage", "tape"], "--storage"),
        (["--memory-limit", "lots"], "--memory-limit"),
        (["--cpu-limit", "0"], "--cpu-limit"),
        (["--connections", "0"], "--connections"),
        (["--ram", "16"], "ram: invalid value 16"),
        (["--format", "yaml"], "--format"),
    ],
)
def test_bad_input_one_line_exit_2(capsys, args, fragment):
    assert main([*BASE, *args]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert captured.err.startswith("pgsteady tune: error: ")
    assert fragment in captured.err


def test_missing_required_and_unknown_command(capsys):
    assert main(["tune", "--ram", "1GB"]) == 2
    assert main(["frobnicate"]) == 2
    assert main([]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 3


def test_help_exits_0(capsys):
    assert main(["tune", "--help"]) == 0
    assert "--memory-limit" in capsys.readouterr().out


def test_subcommands_are_pluggable():
    parser = build_parser()
    assert SUBCOMMANDS and parser.prog == "pgsteady"


def test_python_dash_m():
    proc = subprocess.run(
        [sys.executable, "-m", "pgsteady", *BASE[:-2], "--cpus", "-1"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1
    ok = subprocess.run(
        [sys.executable, "-m", "pgsteady", *BASE], capture_output=True, text=True, check=False
    )
    assert ok.returncode == 0 and "shared_buffers = 4GB" in ok.stdout
