"""A changed haproxy.cfg reaches a RUNNING HAProxy by its master-worker reload, with open
sessions kept (tasks/haproxy_reload.py), checked with the real HAProxy (Debian's 2.6).

HAProxy runs as the product runs it (``haproxy -W -db -f FILE``: master-worker, in the
foreground) in front of the stand-in members of tests/integration/test_cluster_haproxy.py.
The deploy rewrites the bind-mounted file in place (pyinfra uploads into the existing
file: same inode), so the container sees the new text; here it is rewritten in place the
same way, with ``postgres_port`` moved, and the master gets SIGUSR2 (what ``docker kill -s
USR2`` sends to the container's PID 1). Proven: the new port serves and the old one stops
listening, while a session opened before the reload stays open and usable; a file HAProxy
rejects fails its check (``haproxy -c``, which the product runs before the signal).
The product's reload command records what the running HAProxy loaded (review R10 M5).
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import signal
import socket
import subprocess
import time
from pathlib import Path

from pgsteady.cluster.haproxy import render_haproxy_cfg
from pgsteady.cluster.member_service import haproxy_marker
from pgsteady.cluster.topology import Cluster
from tasks import haproxy_reload
from tests.integration.test_cluster_haproxy import (  # noqa: F401 - pki is a fixture
    Member,
    free_port,
    make_cluster,
    pki,
    wait_for,
)
from tests.support.cluster_binaries import require


def _refused(address: str, port: int) -> bool:
    try:
        socket.create_connection((address, port), timeout=1).close()
    except OSError:
        return True
    return False


def test_sigusr2_loads_the_rewritten_file_and_keeps_open_sessions(pki: Path) -> None:  # noqa: F811
    haproxy = require("haproxy")
    cluster = make_cluster()
    me = cluster.members[0]
    members = [
        Member(m.name, m.address, cluster, pki / f"{m.name}.crt", pki / f"{m.name}.key")
        for m in cluster.members
    ]
    cfg = pki / "reload.cfg"
    cfg.write_text(render_haproxy_cfg(cluster, me, str(pki / "ca.crt"), str(pki / "r.sock")))
    inode = os.stat(cfg).st_ino
    log = (pki / "reload.log").open("ab")
    master = subprocess.Popen([haproxy, "-W", "-db", "-f", str(cfg)], stdout=log, stderr=log)
    try:
        members[0].codes["/primary"] = 200
        old = wait_for(me.address, cluster.postgres_port, "m1")
        moved = dataclasses.replace(cluster, postgres_port=free_port())
        with cfg.open("r+") as f:  # in place, as the deploy's upload writes it
            f.truncate(0)
            f.write(render_haproxy_cfg(moved, me, str(pki / "ca.crt"), str(pki / "r.sock")))
        assert os.stat(cfg).st_ino == inode
        check = subprocess.run([haproxy, "-c", "-q", "-f", str(cfg)], capture_output=True)
        assert check.returncode == 0, check.stderr
        master.send_signal(signal.SIGUSR2)
        wait_for(me.address, moved.postgres_port, "m1").close()  # the new file serves
        deadline = time.monotonic() + 20
        while not _refused(me.address, cluster.postgres_port):  # the old port is gone
            assert time.monotonic() < deadline, "the old postgres_port still listens"
            time.sleep(0.2)
        assert master.poll() is None, "the master exited on the reload"
        old.settimeout(2)
        try:
            data = old.recv(64)
        except TimeoutError:
            data = None  # nothing to read, not closed: the session is open
        assert data is None, f"the session opened before the reload ended ({data!r})"
        old.sendall(b"x")  # still carried to the member, which then closes it
        old.settimeout(10)
        assert old.recv(64) == b""
        old.close()
        # a file HAProxy rejects fails the check the product runs before the signal
        cfg.write_text(cfg.read_text().replace("defaults", "defaultz", 1))
        bad = subprocess.run([haproxy, "-c", "-q", "-f", str(cfg)], capture_output=True)
        assert bad.returncode != 0
    finally:
        master.send_signal(signal.SIGTERM)
        master.wait(timeout=20)
        for m in members:
            m.close()


def test_the_marker_records_only_a_file_the_running_haproxy_loaded(pki: Path) -> None:  # noqa: F811
    """tasks/haproxy_reload.reload_command run by sh against the real HAProxy master (a
    stand-in for ``docker`` maps its three calls onto this process: ``inspect`` says it
    runs, ``exec ... haproxy -c`` runs the real check, ``kill -s USR2`` signals the
    master). Review R10 M5: the marker holds the file's SHA-256 only after HAProxy
    accepted it and was signalled; a rejected file, or one written by a deploy that died
    before the signal, leaves the marker behind the file, which on_cfg reloads for."""
    haproxy = require("haproxy")
    cluster = make_cluster()
    me = cluster.members[0]
    members = [
        Member(m.name, m.address, cluster, pki / f"{m.name}.crt", pki / f"{m.name}.key")
        for m in cluster.members
    ]
    cfg, marker = pki / "marked.cfg", pki / "marked.cfg.loaded"

    def render(c: Cluster) -> str:
        return render_haproxy_cfg(c, me, str(pki / "ca.crt"), str(pki / "m.sock"))

    def rewrite(text: str) -> None:
        with cfg.open("r+") as f:  # in place, as the deploy's upload writes it
            f.truncate(0)
            f.write(text)

    cfg.write_text(render(cluster))
    log = (pki / "marked.log").open("ab")
    master = subprocess.Popen([haproxy, "-W", "-db", "-f", str(cfg)], stdout=log, stderr=log)
    shim = pki / "shim"
    shim.mkdir()
    (shim / "docker").write_text(
        "#!/bin/sh\n"
        'case "$1" in\n'
        "  inspect) echo true ;;\n"
        f'  exec) shift 3; exec {shlex.quote(haproxy)} "$@" ;;\n'
        f"  kill) exec kill -USR2 {master.pid} ;;\n"
        "esac\n"
    )
    (shim / "docker").chmod(0o755)
    command = haproxy_reload.reload_command("labm-haproxy", str(cfg), str(cfg), str(marker))

    def deploy_reload() -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "PATH": f"{shim}:{os.environ['PATH']}"}
        return subprocess.run(["sh", "-c", command], env=env, capture_output=True, text=True)

    def recorded(text: str) -> bool:
        return marker.exists() and marker.read_text() == haproxy_marker(text)

    try:
        members[0].codes["/primary"] = 200
        wait_for(me.address, cluster.postgres_port, "m1").close()
        moved = dataclasses.replace(cluster, postgres_port=free_port())
        rewrite(render(moved))
        done = deploy_reload()
        assert done.returncode == 0, done.stderr
        assert recorded(render(moved)) and oct(marker.stat().st_mode)[-3:] == "644"
        wait_for(me.address, moved.postgres_port, "m1").close()  # what the marker says

        rejected = render(moved).replace("defaults", "defaultz", 1)
        rewrite(rejected)
        failed = deploy_reload()
        assert failed.returncode == 1 and "HAProxy rejects the new" in failed.stderr
        assert not recorded(rejected) and recorded(render(moved))  # the next deploy reloads
        assert master.poll() is None
        wait_for(me.address, moved.postgres_port, "m1").close()  # still the loaded file

        # a deploy died between the upload and the signal: the file is new, HAProxy is not
        again = dataclasses.replace(cluster, postgres_port=free_port())
        rewrite(render(again))
        assert not recorded(render(again))  # on_cfg: stale marker, so it reloads
        assert _refused(me.address, again.postgres_port)
        done = deploy_reload()
        assert done.returncode == 0, done.stderr
        assert recorded(render(again))
        wait_for(me.address, again.postgres_port, "m1").close()
    finally:
        master.send_signal(signal.SIGTERM)
        master.wait(timeout=20)
        for m in members:
            m.close()
