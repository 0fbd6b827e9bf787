"""tasks/haproxy_reload.py: a running member's HAProxy reloads (SIGUSR2 to its master,
after ``haproxy -c`` of the new file) when a file it reads changed in this run, or when
the marker of what it loaded does not hold the file's hash (a failed reload is retried:
review R10 M5) (the real HAProxy's side: tests/integration/test_cluster_haproxy_reload.py)."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

from pgsteady.cluster.member_service import haproxy_marker
from pgsteady.settings import Settings
from tasks import haproxy_reload
from tasks.noop_guard import State, sha1
from tasks.ownership import put_text
from tests.support.pyinfra_plan import Plan, plan

CFG = "/srv/pg/config/haproxy.cfg"
MARKER = "/srv/pg/config/haproxy.cfg.loaded"
TEXT = "global\n"
WRITE = f"Write {CFG}"
RELOAD = "Reload HAProxy for its changed haproxy.cfg (a running one; open sessions are kept)"
RETRY = (
    "Reload HAProxy for haproxy.cfg (not recorded as loaded: a first deploy, or a failed"
    " reload) (a running one; open sessions are kept)"
)
LOADED = State("file", 0, 0, "644", sha1(haproxy_marker(TEXT)))


def _plan(marker: State | None) -> Plan:
    def task() -> None:
        s = Settings(compose_project="labm", app_dir="/srv/pg")
        op = put_text(TEXT, CFG, 0, 4242, "640")
        haproxy_reload.on_cfg(s, op, TEXT)

    def file_state(path: str) -> State | None:
        return marker if path == MARKER else None

    facts = {"FileState": file_state, "File": None, "Sha256File": None, "NumericStat": None}
    return plan(task, facts=facts)[1]


def test_a_loaded_file_reloads_only_when_this_deploy_changed_it() -> None:
    p = _plan(LOADED)
    assert p.names[0] == WRITE and p.names[-1] == RELOAD, p.names
    assert RELOAD in p.execute(changed=[WRITE])
    assert RELOAD not in _plan(LOADED).execute(changed=[])  # no-op deploy: no reload


def test_a_file_not_recorded_as_loaded_reloads_although_unchanged() -> None:
    """The file is in place but its reload failed (or the deploy died before it): the
    marker is absent, holds another file's hash, or is not root 0644."""
    other = State("file", 0, 0, "644", sha1(haproxy_marker("old\n")))
    for marker in (None, other, LOADED._replace(mode="666"), LOADED._replace(uid=4242)):
        p = _plan(marker)
        assert p.names[-1] == RETRY, p.names
        assert RETRY in p.execute(changed=[]), marker


def test_on_change_reloads_when_one_of_the_ops_changed() -> None:
    def task() -> None:
        op = put_text("cert\n", "/srv/pg/tls/haproxy-client.crt", 0, 4242, "440")
        haproxy_reload.on_change(Settings(compose_project="labm"), [op], "its new client cert")

    facts = {"FileState": None, "File": None, "Sha256File": None, "NumericStat": None}
    p = plan(task, facts=facts)[1]
    name = p.names[-1]
    assert name.startswith("Reload HAProxy for its new client cert")
    assert name in p.execute(changed=[p.names[0]])
    assert name not in plan(task, facts=facts)[1].execute(changed=[])


def test_the_command_checks_signals_then_records_the_loaded_hash(tmp_path: Path) -> None:
    """The shell runs with a stand-in docker that records its calls, on a real file and
    marker: a running container is checked, signalled, and the file's SHA-256 recorded
    (0644); a rejected file or a failed signal stops before the record; a stopped
    container is left alone, and the file recorded as what its start reads."""
    cfg, marker = tmp_path / "haproxy.cfg", tmp_path / "haproxy.cfg.loaded"
    cfg.write_text("global\n  maxconn 10\n")
    digest = hashlib.sha256(cfg.read_bytes()).hexdigest()
    cmd = haproxy_reload.reload_command(
        "labm-haproxy", "/etc/pgsteady/haproxy.cfg", str(cfg), str(marker)
    )
    log = tmp_path / "calls"
    docker = tmp_path / "docker"

    def run(running: str, check_rc: int, kill_rc: int = 0) -> tuple[int, list[str], str]:
        docker.write_text(
            "#!/bin/sh\n"
            f'echo "$*" >> {log}\n'
            f'case "$1" in inspect) echo {running};; exec) exit {check_rc};;'
            f" kill) exit {kill_rc};; esac\n"
        )
        docker.chmod(0o755)
        log.write_text("")
        marker.unlink(missing_ok=True)
        env = {"PATH": f"{tmp_path}:/usr/bin:/bin"}
        proc = subprocess.run(["sh", "-c", cmd], env=env, capture_output=True, text=True)
        return proc.returncode, log.read_text().splitlines(), proc.stderr

    rc, calls, _ = run("true", 0)
    assert rc == 0 and calls == [
        "inspect -f {{.State.Running}} labm-haproxy",
        "exec labm-haproxy haproxy -c -q -f /etc/pgsteady/haproxy.cfg",
        "kill -s USR2 labm-haproxy",
    ]
    assert marker.read_text() == haproxy_marker(cfg.read_text())
    assert marker.read_text() == f"{digest}\n" and oct(marker.stat().st_mode)[-3:] == "644"
    assert not (tmp_path / "haproxy.cfg.loaded.tmp").exists()
    rc, calls, err = run("true", 1)
    assert rc == 1 and "kill" not in " ".join(calls) and not marker.exists()
    assert "a restart of its container would fail" in err
    rc, calls, _ = run("true", 0, kill_rc=1)
    assert rc == 1 and not marker.exists()
    rc, calls, _ = run("false", 0)
    assert rc == 0 and len(calls) == 1 and marker.read_text() == f"{digest}\n"
