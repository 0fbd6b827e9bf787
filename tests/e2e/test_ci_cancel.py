"""A cancelled `make ci` job leaves no deploy key on disk and no child running.

CI systems cancel a job with SIGTERM. The real ``python -m pgsteady.ci`` runs against an
inventory whose loading blocks inside the pyinfra dry run (with a grandchild of its
own), and is sent SIGTERM there: the key file written from ``PGSTEADY_SSH_PRIVATE_KEY``
is gone, the dry run's whole process group is stopped, the JUnit file names the
cancelled stage, and the exit status is 128 + 15.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.support.stack import REPO

pytestmark = pytest.mark.timeout(300)

# Loaded by the ci's own reader (settings stage) as usual; inside pyinfra (the dry run)
# it reports its process group, a grandchild and the key file, then blocks.
INVENTORY = """\
import os, subprocess, sys, time
from pathlib import Path

hosts = ["@local"]
if Path(sys.argv[0]).name == "pyinfra":
    child = subprocess.Popen(["sleep", "300"])
    key = os.environ["PGSTEADY_SSH_KEY_FILE"]
    Path(os.environ["CI_CANCEL_MARK"]).write_text(f"{os.getpgrp()} {child.pid} {key}")
    time.sleep(300)
"""


def stat_fields(pid: int | str) -> list[str]:
    """/proc/<pid>/stat after the command name: state, ppid, pgrp, ... (empty when gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except (FileNotFoundError, ProcessLookupError):
        return []


def alive(pid: int) -> bool:
    """Running, not a zombie (this machine's init may leave orphans unreaped)."""
    fields = stat_fields(pid)
    return bool(fields) and fields[0] != "Z"


def running_in_group(pgid: int) -> list[int]:
    """Live processes of process group ``pgid``."""
    pids = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]
    return [p for p in pids if alive(p) and stat_fields(p)[2:3] == [str(pgid)]]


def test_sigterm_removes_the_key_and_stops_the_dry_run(tmp_path: Path) -> None:
    inventory, mark, junit = tmp_path / "inv.py", tmp_path / "mark", tmp_path / "ci.xml"
    inventory.write_text(INVENTORY)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {
        **os.environ,
        "TMPDIR": str(tmp),
        "CI_CANCEL_MARK": str(mark),
        "PGSTEADY_SSH_PRIVATE_KEY": "-----BEGIN OPENSSH PRIVATE KEY-----\nnot-a-key\n",
    }
    ci = subprocess.Popen(
        [sys.executable, "-m", "pgsteady.ci", "--inventory", str(inventory), "--junit", str(junit)],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        while not mark.exists() or len(mark.read_text().split()) < 3:
            assert ci.poll() is None, ci.communicate()[0]
            assert time.monotonic() < deadline, "the dry run never started"
            time.sleep(0.5)
        pgid, grandchild, key = mark.read_text().split()
        assert Path(key).is_file() and Path(key).parent.parent == tmp
        assert alive(int(grandchild))
        ci.send_signal(signal.SIGTERM)
        output, _ = ci.communicate(timeout=60)
    finally:
        if ci.poll() is None:
            ci.kill()
            ci.wait()
    assert ci.returncode == 128 + signal.SIGTERM, output
    assert not Path(key).exists() and list(tmp.iterdir()) == []
    assert not alive(int(grandchild))
    assert running_in_group(int(pgid)) == []
    assert "FAILED at stage dry-run:\ncancelled by SIGTERM" in output
    cases = {c.get("name"): c for c in ET.parse(junit).getroot().iter("testcase")}
    failure = cases["dry-run"].find("failure")
    assert failure is not None and "cancelled by SIGTERM" in (failure.text or "")
    assert cases["deploy"].find("skipped") is not None
    assert "not-a-key" not in output
