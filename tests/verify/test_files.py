"""files: nothing root runs, sources or trusts is writable by another uid
(pgsteady.stack.hostfiles).

Root's own files (bin/, etc/ctl.env, etc/backup.json, state/, the compose file, the job
units) are root:root and not group/other writable; the files the server reads (config/,
init/, secrets) are root-owned, group postgres, not writable by the postgres uid.
"""

from __future__ import annotations

import json
import os
import shlex
from typing import TYPE_CHECKING

from pgsteady.settings import Settings
from pgsteady.stack.hostfiles import (
    OLD_ROOT_FILES_IN_CONFIG,
    Owned,
    layout,
    server_owned_dirs,
    writable_by_others,
)
from pgsteady.verify import Fixes, check

if TYPE_CHECKING:
    from conftest import Host


def _problems(on: Host, wanted: list[Owned]) -> tuple[list[str], list[str], list[str]]:
    """(descriptions, fix commands, missing paths) of the paths that break their rule."""
    bad, fixes, missing = [], [], []
    for want in wanted:
        got = on.stat(want.path)
        if got is None:
            missing.append(want.path)
            continue
        why = writable_by_others(got[0], got[2], want)
        if why:
            bad.append(f"{want.path} ({why})")
            fixes.append(want.fix())
    return bad, fixes, missing


def _check(on: Host, fixes: Fixes, wanted: list[Owned], what: str) -> None:
    bad, commands, missing = _problems(on, wanted)
    check(not missing, f"missing: {', '.join(missing)}", fixes.deploy)
    check(not bad, f"{what}: {'; '.join(bad)}", fixes.on_host(" && ".join(commands)))


def test_root_files_only_root_writes(on: Host, s: Settings, fixes: Fixes) -> None:
    """bin/, etc/ (ctl.env, backup.json), state/, the compose file and the job units."""
    wanted = [o for o in layout(s) if o.gid == 0]
    _check(on, fixes, wanted, "root runs or sources these, but another uid may change them")


def test_server_files_read_only(on: Host, s: Settings, fixes: Fixes) -> None:
    """config/, init/ and secrets: readable by the postgres group, writable only by root."""
    wanted = [o for o in layout(s) if o.gid != 0]
    _check(on, fixes, wanted, f"uid {s.postgres_uid} (or others) may change these")


def test_nothing_under_app_dir_writable_by_others(on: Host, s: Settings, fixes: Fixes) -> None:
    """Whoever added it (tls/, image/, backups, files an operator dropped in): every path
    under app_dir and the backup directory is root-owned and not group/other writable,
    except the directories the server itself writes (hostfiles.server_owned_dirs)."""
    roots = " ".join(shlex.quote(p) for p in sorted({s.app_dir, s.backup_path}))
    prune = "".join(f"-path {shlex.quote(d)} -prune -o " for d in server_owned_dirs(s))
    # A symlink's own mode bits are always 0777 and never used: only its owner counts.
    wanted = "\\( ! -uid 0 -o \\( ! -type l -perm /022 \\) \\)"
    res = on.run(f"find {roots} -xdev {prune}{wanted} -print 2>/dev/null")
    found = [line for line in res.stdout.splitlines() if line.strip()]
    shown = ", ".join(found[:10]) + (f" and {len(found) - 10} more" if len(found) > 10 else "")
    check(
        not found,
        f"another uid owns or may write: {shown}",
        fixes.on_host(
            " && ".join(
                f"chown root {shlex.quote(p)} && chmod go-w {shlex.quote(p)}" for p in found[:10]
            )
        ),
    )


def _replaceable_parents(on: Host, start: str) -> list[str]:
    """Directories above ``start`` that are not root's or that others may write."""
    bad = []
    path = os.path.dirname(start.rstrip("/"))
    while True:
        got = on.stat(path)
        if got is not None:
            uid, _gid, mode = got
            sticky = mode & 0o1000 and uid == 0
            if uid != 0 or (mode & 0o022 and not sticky):
                bad.append(path)
        if path == "/":
            break
        path = os.path.dirname(path)
    return bad


def test_app_dir_parents(on: Host, s: Settings, fixes: Fixes) -> None:
    """Every directory above app_dir and the backup directory (root restores what is in it):
    root-owned, not writable by others (sticky /tmp is fine)."""
    paths: list[str] = []
    for start in (s.app_dir, s.backup_path):
        paths += [p for p in _replaceable_parents(on, start) if p not in paths]
    check(
        not paths,
        "another uid may replace app_dir or the backup directory through their parents: "
        + ", ".join(paths),
        fixes.on_host(" && ".join(f"chown root {p} && chmod go-w {p}" for p in paths)),
    )


def test_no_root_files_in_server_config(on: Host, s: Settings, fixes: Fixes) -> None:
    """ctl.env and backup.json of the old layout are gone from the server's config dir."""
    old = [f"{s.layout.config}/{n}" for n in OLD_ROOT_FILES_IN_CONFIG]
    left = [p for p in old if on.stat(p) is not None]
    check(
        not left,
        f"root's files left in the server's config dir: {', '.join(left)}",
        fixes.on_host(f"rm -f {' '.join(left)}"),
    )


def test_watchdog_no_crash_loop(on: Host, s: Settings, fixes: Fixes) -> None:
    """The watchdog's last report (state/watchdog.json) is not a crash loop."""
    text = on.read(f"{s.layout.state}/watchdog.json")
    state = json.loads(text) if text else {}  # none yet: the watchdog has not run
    check(
        not state.get("crash_loop"),
        f"the watchdog reports a crash loop of {s.container_name}: {state.get('reason')} "
        f"({state.get('attempts')} starts)",
        fixes.on_host(
            f"docker logs --tail 50 {s.container_name}  # fix the cause, then: "
            f"{s.layout.bin}/pgsteady-ctl up"
        ),
    )
