"""walarchive.LISTING_SCRIPT run for real by sh against a stand-in for pgbackrest (a
directory tree for the repository): which archive id, which backups, which directories."""

from __future__ import annotations

import json
import stat
import subprocess
from pathlib import Path

import pytest

from pgsteady.backup.walarchive import LISTING_SCRIPT, find_gaps, parse_listing

FAKE = r"""#!/bin/sh
# pgbackrest stand-in: --repo=N <command> [--output=...] [path]
for last; do :; done
echo "$*" >> "$FAKE_DIR/calls"
case "$2" in
info) cat "$FAKE_DIR/info.json" ;;
repo-ls) ls "$FAKE_DIR/repo/$last" || { echo "ERROR: [041]: unable to list $last"; exit 41; } ;;
repo-get) cat "$FAKE_DIR/repo/$last" ;;
*) echo "unexpected: $*"; exit 1 ;;
esac
"""


def backup(start: str, db: int) -> dict:
    return {
        "archive": {"start": start, "stop": start},
        "backrest": {"format": 5, "version": "2.45"},
        "database": {"id": db, "repo-key": 1},
        "label": "x", "timestamp": {"start": 1, "stop": 2}, "type": "full",
    }  # fmt: skip


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    exe = tmp_path / "pgbackrest"
    exe.write_text(FAKE)
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("FAKE_DIR", str(tmp_path))
    return tmp_path


def put(root: Path, *names: str) -> None:
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("1\t0/5000000\tpromoted\n" if name.endswith(".history") else "")


def run(fake: Path, which: str, backups: list[dict]) -> subprocess.CompletedProcess[str]:
    (fake / "info.json").write_text(
        json.dumps([{"name": "main", "backup": backups}], separators=(",", ":"))  # as pgBackRest
    )
    (fake / "calls").write_text("")
    return subprocess.run(
        ["sh", "-c", LISTING_SCRIPT, "walarchive", which, "1", "main", str(fake / "pgbackrest")],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip


def test_current_database_only_from_the_oldest_backup_with_the_history(fake: Path) -> None:
    repo = fake / "repo" / "archive" / "main"
    put(repo, "15-1/0000000100000000/000000010000000000000001-aa.gz")  # before an upgrade
    seg = "0000000{}000000000000000{}".format
    names = [f"17-2/0000000100000000/{seg(1, n)}-{'b' * 40}.zst" for n in range(3, 6)]
    names += [f"17-2/0000000200000000/{seg(2, n)}-{'c' * 40}.zst" for n in range(5, 8)]
    put(repo, *names, "17-2/00000002.history",
        f"17-2/0000000100000000/{seg(1, 4)}.00000028.backup",
        f"17-2/0000000100000000/{seg(1, 5)}.partial-{'d' * 40}.zst")  # fmt: skip
    backups = [backup("000000010000000000000001", 1), backup(seg(1, 3), 2),
               backup(seg(2, 6), 2)]  # fmt: skip
    proc = run(fake, "oldest", backups)
    assert proc.returncode == 0, proc.stderr
    got = parse_listing(proc.stdout)
    assert got.complete and got.archive_id == "17-2"
    assert (got.oldest_start, got.newest_start, got.listed_from) == (seg(1, 3), seg(2, 6),
                                                                     seg(1, 3))  # fmt: skip
    assert got.history_file == "00000002.history" and got.history == ["1\t0/5000000\tpromoted"]
    assert got.segments == [seg(1, 3), seg(1, 4), seg(1, 5), seg(2, 5), seg(2, 6), seg(2, 7)]
    assert find_gaps(got, seg(2, 7)) == []
    # From the newest backup on: the log directories before its start are not listed.
    proc = run(fake, "newest", backups)
    got = parse_listing(proc.stdout)
    assert got.segments == [seg(2, 6), seg(2, 7)] and got.listed_from == seg(2, 6)
    assert "0000000100000000" not in (fake / "calls").read_text()


def test_no_backup_lists_nothing_an_unreadable_archive_fails(fake: Path) -> None:
    put(fake / "repo" / "archive" / "main", "17-1/0000000100000000/x")
    proc = run(fake, "oldest", [])
    assert proc.returncode == 0 and proc.stdout == "end\n", proc.stderr
    (fake / "repo" / "archive" / "main" / "17-1" / "0000000100000000" / "x").unlink()
    (fake / "repo" / "archive").rename(fake / "gone")
    proc = run(fake, "oldest", [backup("000000010000000000000003", 1)])
    assert proc.returncode == 1
    assert "walarchive: repo-ls archive/main failed: ERROR: [041]" in proc.stderr


def test_a_backup_start_it_cannot_read_fails_rather_than_passing(fake: Path) -> None:
    put(fake / "repo" / "archive" / "main", "17-1/0000000100000000/x")
    changed = {"start": "000000010000000000000003", "database": {"id": 1}}  # new key order
    proc = run(fake, "oldest", [{"archive": changed}])
    assert proc.returncode == 1
    assert "no backup start segment read from pgbackrest info" in proc.stderr
