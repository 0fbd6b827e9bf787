"""pgsteady.stack.apt_candidate: the host command, its answer, and collecting it."""

from __future__ import annotations

import json
import shlex
import threading
from pathlib import Path

from pgsteady.stack.apt_candidate import Lookup, answer, collect, command


def test_the_command_quotes_the_container_and_skips_translations() -> None:
    cmd = command("proj-postgres", 17)
    words = shlex.split(cmd)
    assert "proj-postgres" in " ".join(words) and "--rm" in words and "--user" in words
    assert "Acquire::Languages=none" in cmd and "postgresql-17" in cmd
    assert cmd.count("timeout 180 ") == 1


def test_an_answer_is_a_candidate_or_an_error_never_both() -> None:
    assert answer(0, "17.6-0+deb13u1\n", "", 17) == {"candidate": "17.6-0+deb13u1", "error": ""}
    assert answer(3, "", "apt-get update failed\n", 17) == {
        "candidate": "",
        "error": "apt-get update failed",
    }
    assert answer(0, "(none)\n", "", 17)["error"] == "no candidate for postgresql-17"
    assert answer(0, "", "", 15)["error"] == "no candidate for postgresql-15"
    assert len(answer(1, "", "x" * 500, 17)["error"]) == 160


def test_a_lookup_writes_its_answer_whole_and_collect_reads_it(tmp_path: Path) -> None:
    path = tmp_path / "apt.json"
    Lookup(["sh", "-c", "echo 17.6-1; exit 0"], 17, path).start().join()
    assert collect(str(path), timeout=1) == {"candidate": "17.6-1", "error": ""}
    assert not list(tmp_path.glob("*.tmp"))
    failed = tmp_path / "failed.json"
    Lookup(["sh", "-c", "echo no container x >&2; exit 4"], 17, failed).start().join()
    assert collect(str(failed), timeout=1) == {"candidate": "", "error": "no container x"}


def test_collect_waits_for_a_late_answer_and_gives_up_in_time(tmp_path: Path) -> None:
    path = tmp_path / "late.json"
    timer = threading.Timer(0.5, lambda: path.write_text(json.dumps({"candidate": "1"})))
    timer.start()
    assert collect(str(path), timeout=10)["candidate"] == "1"
    assert collect(str(tmp_path / "never.json"), timeout=0.3)["error"] == "no answer within 0 s"
