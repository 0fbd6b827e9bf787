"""monitor.live: keys from a pipe and a terminal, key handling, the refresh loop."""

from __future__ import annotations

import io
import os
import pty
import stat
import termios
import time
from pathlib import Path

import pytest
from rich.console import Console

from pgsteady.inventory import InventoryHost
from pgsteady.monitor.collect import Target
from pgsteady.monitor.live import Keys, Monitor, run_live
from pgsteady.settings import HostFacts, build_settings

SETTINGS = build_settings({"compose_project": "fake"}, HostFacts(0, 0))


def broken(name: str) -> Target:
    """A target with invalid settings: the monitor never contacts it."""
    return Target(InventoryHost(name, {}), None, "1 invalid setting(s)")


def test_keys_from_a_pipe_are_lines_and_eof_stops_reading():
    r, w = os.pipe()
    os.write(w, b"b\n\n  l extra\nq\n")
    os.close(w)
    with os.fdopen(r) as stream, Keys(stream) as keys:
        assert not keys.tty
        assert keys.read(1) == ["b", "l", "q"]
        assert keys.read(0.1) == []  # end of input
        assert keys.fd is None
        started = time.monotonic()
        assert keys.read(0.2) == []  # still waits, then returns nothing
        assert time.monotonic() - started >= 0.15


def test_keys_from_a_terminal_need_no_enter_and_the_mode_is_restored():
    leader, follower = pty.openpty()
    try:
        before = termios.tcgetattr(follower)
        with os.fdopen(os.dup(follower)) as stream, Keys(stream) as keys:
            assert keys.tty
            assert not termios.tcgetattr(follower)[3] & termios.ICANON
            assert keys.read(0.05) == []
            os.write(leader, b"r")
            assert keys.read(1) == ["r"]
            os.write(leader, b"\x1b[A")  # an arrow key: ignored
            assert keys.read(1) == []
        assert termios.tcgetattr(follower) == before
    finally:
        os.close(leader)
        os.close(follower)


def test_selection_and_restart_confirmation():
    m = Monitor([broken("a"), broken("b"), broken("c")], timeout=5)
    assert m.handle("\t") and m.selected == 1
    assert m.handle("3") and m.selected == 2
    assert m.handle("9") and m.selected == 2  # no such host
    m.handle("r")
    assert "c: invalid settings, cannot restart" in m.message
    assert not m.handle("q")


def test_restart_asks_then_runs_in_the_background(tmp_path: Path, monkeypatch):
    docker = tmp_path / "docker"
    docker.write_text('#!/bin/sh\necho "$*" > "$0.args"\necho "no daemon" >&2\nexit 1\n')
    docker.chmod(docker.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    m = Monitor([Target(InventoryHost("@local", {}), SETTINGS)], timeout=5)
    m.handle("r")
    assert "Restart fake-postgres on @local? y confirms" in m.message
    m.handle("n")
    assert m.message == "restart cancelled" and not (tmp_path / "docker.args").exists()
    m.handle("r")
    m.handle("y")
    assert m.dirty.wait(10)
    assert (tmp_path / "docker.args").read_text().strip() == "restart -t 60 fake-postgres"
    assert m.message == "restart on @local FAILED: no daemon"
    assert not m.busy


def test_live_prints_every_refresh_when_not_a_terminal():
    out = io.StringIO()
    console = Console(file=out, width=100, force_terminal=False)
    r, w = os.pipe()
    with os.fdopen(r) as stdin:
        code = run_live([broken("a")], 0.05, 2, 5, console=console, stdin=stdin)
    os.close(w)
    text = out.getvalue()
    assert code == 0
    assert "refresh #1" in text and "refresh #2" in text and "refresh #3" not in text


@pytest.mark.timeout(20)
def test_q_and_enter_quits_when_stdin_is_a_pipe():
    out = io.StringIO()
    r, w = os.pipe()
    os.write(w, b"q\n")
    with os.fdopen(r) as stdin:
        code = run_live([broken("a")], 60, None, 5, console=Console(file=out), stdin=stdin)
    os.close(w)
    assert code == 0 and out.getvalue().count("refresh #") == 1
