"""pgsteady.stack.apt_candidate: the host command, its answer, and collecting it."""

from __future__ import annotations

import json
import os
import shlex
import threading
from pathlib import Path

from pgsteady.stack.apt_candidate import Lookup, answer, collect, command

IMAGE = "sha256:" + "ab" * 32


def test_the_command_quotes_the_container_and_bounds_apt_inside_and_out() -> None:
    name = "x$(touch /tmp/pwned);y"
    cmd = command(name, 17)
    assert shlex.quote(name) in cmd and "$(touch" not in cmd.replace(shlex.quote(name), "")
    assert "container inspect" in cmd and "Acquire::Languages=none" in cmd
    assert "postgresql-17" in cmd and "timeout -k 10 180 " in cmd
    assert "timeout 170 apt-get" in shlex.split(cmd)[-1]  # the script run in the container


def test_an_answer_names_its_image_and_a_candidate_or_an_error() -> None:
    assert answer(0, f"{IMAGE}\n17.6-0+deb13u1\n", "", 17) == {
        "image": IMAGE,
        "candidate": "17.6-0+deb13u1",
        "error": "",
    }
    failed = answer(3, f"{IMAGE}\n", "apt-get update failed\n", 17)
    assert failed == {"image": IMAGE, "candidate": "", "error": "apt-get update failed"}
    assert answer(0, f"{IMAGE}\n(none)\n", "", 17)["error"] == "no candidate for postgresql-17"
    assert answer(4, "", "no container c\n", 15) == {
        "image": "",
        "candidate": "",
        "error": "no container c",
    }
    assert len(answer(1, "", "x" * 500, 17)["error"]) == 160


def test_a_lookup_writes_its_answer_whole_and_collect_reads_it(tmp_path: Path) -> None:
    path = tmp_path / "apt.json"
    Lookup(["sh", "-c", f"echo {IMAGE}; echo 17.6-1"], 17, path).start().join()
    assert collect(str(path), timeout=1) == {"image": IMAGE, "candidate": "17.6-1", "error": ""}
    assert not list(tmp_path.glob("*.tmp"))
    failed = tmp_path / "failed.json"
    Lookup(["sh", "-c", "echo no container x >&2; exit 4"], 17, failed).start().join()
    assert collect(str(failed), timeout=1)["error"] == "no container x"


def test_a_lookup_that_cannot_run_still_answers(tmp_path: Path) -> None:
    path = tmp_path / "apt.json"
    Lookup([str(tmp_path / "absent")], 17, path).start().join()
    assert collect(str(path), timeout=1)["error"].startswith("FileNotFoundError")


def test_collect_waits_for_a_late_answer_and_gives_up_in_time(tmp_path: Path) -> None:
    path = tmp_path / "late.json"

    def late() -> None:  # as the lookup writes: whole, renamed into place
        tmp = tmp_path / "late.json.tmp"
        tmp.write_text(json.dumps({"candidate": "1"}))
        os.replace(tmp, path)

    timer = threading.Timer(0.5, late)
    timer.start()
    assert collect(str(path), timeout=10)["candidate"] == "1"
    assert collect(str(tmp_path / "never.json"), timeout=0.3)["error"] == "no answer within 0 s"
    assert collect("")["error"] == "the driver started no lookup"
    (tmp_path / "torn.json").write_text('{"candid')  # never whole: still no answer
    assert collect(str(tmp_path / "torn.json"), timeout=0.3)["error"] == "no answer within 0 s"
