"""noop_guard's FileState fact against real files (the command runs in a local shell)."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

from pyinfra.api import StringCommand

from tasks.noop_guard import FileState, FileStates, State, octal


def _fact(path: Path) -> State | None:
    command = FileState().command(str(path))
    assert isinstance(command, StringCommand)
    out = subprocess.run(["sh", "-c", command.get_raw_value()], capture_output=True, text=True)
    return FileState().process(out.stdout.splitlines())


def test_file_directory_symlink_and_absent(tmp_path: Path) -> None:
    f = tmp_path / "a file"
    f.write_text("hello\n")
    f.chmod(0o640)
    uid, gid = os.getuid(), os.getgid()
    assert _fact(f) == State("file", uid, gid, "640", hashlib.sha1(b"hello\n").hexdigest())
    d = tmp_path / "dir"
    d.mkdir(mode=0o750)
    d.chmod(0o750)
    assert _fact(d) == State("directory", uid, gid, "750", None)
    link = tmp_path / "link"
    link.symlink_to(f)
    assert _fact(link).kind == "other"  # a symlink is never taken for the file it names
    assert _fact(tmp_path / "missing") is None
    empty = tmp_path / "empty"
    empty.touch()
    assert _fact(empty).sha1 == hashlib.sha1(b"").hexdigest()


def test_octal_matches_stat() -> None:
    assert octal("0640") == "640" and octal("600") == "600" and octal("0700") == "700"


def test_file_states_of_globs_and_of_nothing(tmp_path: Path) -> None:
    (tmp_path / "a b").write_text("x")
    (tmp_path / "sub").mkdir()
    command = FileStates().command([f"'{tmp_path}'/*", f"'{tmp_path}/none'/*"])
    out = subprocess.run(["sh", "-c", command.get_raw_value()], capture_output=True, text=True)
    states = FileStates().process(out.stdout.splitlines())
    assert set(states) == {f"{tmp_path}/a b", f"{tmp_path}/sub"}
    assert states[f"{tmp_path}/a b"].sha1 == hashlib.sha1(b"x").hexdigest()
    assert states[f"{tmp_path}/sub"].kind == "directory"
    assert FileStates.default() == {}


def _task(first_shell: bool) -> None:
    from pyinfra.operations import server

    from tasks import ownership

    if first_shell:
        server.shell(name="An earlier change", commands=["true"])
    ownership.put_text("a\n", "/x/a", 0, 0, "644")
    ownership.put_text("b\n", "/x/b", 0, 0, "644")


def _on_host(path: str) -> State:
    """/x/a as it should be; /x/b with other content."""
    text = b"a\n" if path == "/x/a" else b"old\n"
    return State("file", 0, 0, "644", hashlib.sha1(text).hexdigest())


def test_matching_files_are_skipped_only_until_something_changed() -> None:
    from tests.support.pyinfra_plan import plan

    _, quiet = plan(_task, False, facts={"FileState": _on_host})
    # /x/a matches: skipped (no facts at execution); /x/b differs: written.
    set_b = "Set /x/b to owner 0:0, mode 644"  # follows the write that changed
    assert quiet.execute(["Write /x/a", "Write /x/b"]) == ["Write /x/b", set_b]
    _, after_change = plan(_task, True, facts={"FileState": _on_host})
    # After a change nothing is assumed: /x/a runs with pyinfra's own facts again.
    ran = after_change.execute(["Write /x/a", "Write /x/b"])
    set_a = "Set /x/a to owner 0:0, mode 644"
    assert ran == ["An earlier change", "Write /x/a", set_a, "Write /x/b", set_b]


def test_unhashed_directories_give_owner_and_mode_but_no_hash(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "app_password").write_text("s3cret")
    (secrets / "app_password").chmod(0o640)
    command = FileStates().command([f"'{tmp_path}'/*"], unhashed=[f"'{secrets}'/*"])
    out = subprocess.run(["sh", "-c", command.get_raw_value()], capture_output=True, text=True)
    assert hashlib.sha1(b"s3cret").hexdigest() not in out.stdout  # never leaves the host
    states = FileStates().process(out.stdout.splitlines())
    uid, gid = os.getuid(), os.getgid()
    assert states[f"{secrets}/app_password"] == State("file", uid, gid, "640", None)
    assert states[str(secrets)].kind == "directory"
