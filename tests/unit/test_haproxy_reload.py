"""tasks/haproxy_reload.py: a running member's HAProxy reloads (SIGUSR2 to its master,
after ``haproxy -c`` of the new file) only when a file it reads changed in this run
(the real HAProxy's side: tests/integration/test_cluster_haproxy_reload.py)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from pgsteady.settings import Settings
from tasks import haproxy_reload
from tasks.ownership import put_text
from tests.support.pyinfra_plan import Plan, plan

CFG = "/srv/pg/config/haproxy.cfg"
WRITE = f"Write {CFG}"
RELOAD = "Reload HAProxy for its changed haproxy.cfg (a running one; open sessions are kept)"


def _task() -> None:
    s = Settings(compose_project="labm")
    op = put_text("global\n", CFG, 0, 4242, "640")
    haproxy_reload.on_change(s, [op], "its changed haproxy.cfg")


def _plan() -> Plan:
    facts = {"FileState": None, "File": None, "Sha256File": None, "NumericStat": None}
    return plan(_task, facts=facts)[1]


def test_reloads_only_when_the_file_changed() -> None:
    p = _plan()
    assert p.names[0] == WRITE and p.names[-1] == RELOAD, p.names
    assert RELOAD in p.execute(changed=[WRITE])
    assert RELOAD not in _plan().execute(changed=[])  # zero change: no reload


def test_the_command_checks_the_file_then_signals_a_running_master(tmp_path: Path) -> None:
    """The shell runs with a stand-in docker that records its calls: a running container
    is checked then signalled; a rejected file stops before the signal; a stopped
    container is left alone."""
    cmd = haproxy_reload.reload_command("labm-haproxy", "/etc/pgsteady/haproxy.cfg")
    log = tmp_path / "calls"
    docker = tmp_path / "docker"

    def run(running: str, check_rc: int) -> tuple[int, list[str], str]:
        docker.write_text(
            "#!/bin/sh\n"
            f'echo "$*" >> {log}\n'
            f'case "$1" in inspect) echo {running};; exec) exit {check_rc};; esac\n'
        )
        docker.chmod(0o755)
        log.write_text("")
        env = {"PATH": f"{tmp_path}:/usr/bin:/bin"}
        proc = subprocess.run(["sh", "-c", cmd], env=env, capture_output=True, text=True)
        return proc.returncode, log.read_text().splitlines(), proc.stderr

    rc, calls, _ = run("true", 0)
    assert rc == 0 and calls == [
        "inspect -f {{.State.Running}} labm-haproxy",
        "exec labm-haproxy haproxy -c -q -f /etc/pgsteady/haproxy.cfg",
        "kill -s USR2 labm-haproxy",
    ]
    rc, calls, err = run("true", 1)
    assert rc == 1 and "kill" not in " ".join(calls)
    assert "a restart of its container would fail" in err
    rc, calls, _ = run("false", 0)
    assert rc == 0 and len(calls) == 1
