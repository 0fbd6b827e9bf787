"""monitor.view: the rendered text carries the values and the verdicts."""

from __future__ import annotations

import json

from rich.console import Console
from test_monitor_model import SETTINGS, sample_raw, sql_out

from pgsteady.monitor.model import derive
from pgsteady.monitor.view import duration, render_status


def text_of(renderable, width: int = 120) -> str:
    console = Console(record=True, width=width, force_terminal=False, color_system=None)
    console.print(renderable)
    return console.export_text()


def test_duration():
    assert duration(None) == "-"
    assert duration(5) == "5s"
    assert duration(125) == "2m 5s"
    assert duration(7200) == "2h"
    assert duration(93784) == "1d 2h"


def test_status_shows_every_value():
    text = text_of(render_status([derive(sample_raw(), SETTINGS)]))
    for value in (
        "db1: 2 CPUs, 4GB RAM, load 0.50 0.40 0.30",
        "OK", "healthy", "2h", "17.12", "12/100", "40%", "25%", "3h ago",
        "shop-postgres", "app 7.6MB", "postgres 7.2MB", "99.0%", "pid 4242",
        "UPDATE t SET x = 1", "waiting locks  1", "585.9MB free of 976.6MB",
        "/var/lib/docker", "drill ok", "recent log errors (1)", 'relation "nope"',
    ):  # fmt: skip
        assert value in text, value


def test_problems_and_unreachable_hosts_render():
    bad = derive(sample_raw(sql=json.dumps(sql_out(connections={"used": 99}))), SETTINGS)
    gone = derive({"host": "db2", "error": "ssh failed: Connection refused"}, SETTINGS)
    text = text_of(render_status([bad, gone]))
    assert "CRITICAL" in text and "critical: connections 99/100" in text
    assert "UNREACHABLE" in text and "ssh failed: Connection refused" in text


def test_selected_host_only_shows_its_panel():
    hosts = [derive(sample_raw(), SETTINGS), derive({"host": "db2", "error": "boom"}, SETTINGS)]
    text = text_of(render_status(hosts, selected=1))
    assert "error  boom" in text and "pid 4242" not in text


def test_narrow_terminal_keeps_the_summary_readable():
    text = text_of(render_status([derive(sample_raw(), SETTINGS)]), width=80)
    row = next(line for line in text.splitlines() if line.startswith("1 "))
    assert "healthy" in row and "17.12" in row and "12/100" in row
