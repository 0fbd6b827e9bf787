"""Numeric ownership: the container's uid 999 often has no name (or another one) here.

The rule for each path (root-only vs readable by the server) is pgsteady.stack.hostfiles'.
"""

from __future__ import annotations

import shlex
from io import StringIO

from pyinfra.api.operation import OperationMeta
from pyinfra.operations import files, server

from pgsteady.stack.hostfiles import Owned
from tasks.noop_guard import State, file_state, numeric_stat, octal, sha1, skip_if_unchanged


def owner_and_mode(
    path: str,
    uid: int,
    gid: int,
    mode: str,
    created_by: OperationMeta | None = None,
    state: State | None = None,
) -> None:
    """chown/chmod ``path`` when its numeric owner or mode differ, or when ``created_by``
    (an earlier operation of this run that writes the path) changed it. ``state`` is the
    path's FileState when the caller has read it already."""
    if state is not None:  # read with the file's hash by put_text/directory_owned
        current: tuple[int, int, str] | None = (state.uid, state.gid, state.mode)
    else:  # no hash: the path may be a secret generated on the host
        current = numeric_stat(path)
    q = shlex.quote(path)
    command = f"chown {uid}:{gid} {q} && chmod {mode} {q}"
    name = f"Set {path} to owner {uid}:{gid}, mode {mode}"
    if current is not None and current != (uid, gid, mode.zfill(3)):
        server.shell(name=name, commands=[command])
    elif created_by is not None:
        server.shell(name=name, commands=[command], _if=created_by.did_change)


def put_text(text: str, dest: str, uid: int, gid: int, mode: str) -> OperationMeta:
    """Upload rendered text; owner and mode by number. Returns the upload operation.

    A no-op converge asks the host one fact for it (noop_guard), not four."""
    current = file_state(dest)
    want = State("file", uid, gid, octal(mode), sha1(text))
    op = files.put(
        name=f"Write {dest}",
        src=StringIO(text),
        dest=dest,
        mode=mode,
        _if=skip_if_unchanged(current, want),
    )
    owner_and_mode(dest, uid, gid, mode, created_by=op, state=current)
    return op


def ensure_owned(o: Owned, created_by: OperationMeta | None = None) -> None:
    """Give ``o.path`` the owner and mode of the rule in pgsteady.stack.hostfiles."""
    owner_and_mode(o.path, o.uid, o.gid, o.mode, created_by=created_by)


def directory_owned(o: Owned, name: str) -> OperationMeta:
    """Create the directory ``o.path`` and give it the rule's owner and mode (one fact
    on a no-op converge, see noop_guard)."""
    current = file_state(o.path)
    want = State("directory", o.uid, o.gid, octal(o.mode), None)
    op = files.directory(name=name, path=o.path, mode=o.mode, _if=skip_if_unchanged(current, want))
    owner_and_mode(o.path, o.uid, o.gid, o.mode, created_by=op, state=current)
    return op


def put_owned(text: str, o: Owned) -> OperationMeta:
    """Upload rendered text to ``o.path`` with the rule's owner and mode."""
    return put_text(text, o.path, o.uid, o.gid, o.mode)
