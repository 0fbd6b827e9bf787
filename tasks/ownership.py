"""Numeric ownership: the container's uid 999 often has no name (or another one) here.

The rule for each path (root-only vs readable by the server) is pgsteady.stack.hostfiles'.
"""

from __future__ import annotations

import shlex
from io import StringIO

from pyinfra import host
from pyinfra.api.operation import OperationMeta
from pyinfra.operations import files, server

from pgsteady.stack.hostfiles import Owned
from tasks.facts import NumericStat


def owner_and_mode(
    path: str, uid: int, gid: int, mode: str, created_by: OperationMeta | None = None
) -> None:
    """chown/chmod ``path`` when its numeric owner or mode differ, or when ``created_by``
    (an earlier operation of this run that writes the path) changed it."""
    current = host.get_fact(NumericStat, path=path)
    q = shlex.quote(path)
    command = f"chown {uid}:{gid} {q} && chmod {mode} {q}"
    name = f"Set {path} to owner {uid}:{gid}, mode {mode}"
    if current is not None and current != (uid, gid, mode.zfill(3)):
        server.shell(name=name, commands=[command])
    elif created_by is not None:
        server.shell(name=name, commands=[command], _if=created_by.did_change)


def put_text(text: str, dest: str, uid: int, gid: int, mode: str) -> OperationMeta:
    """Upload rendered text; owner and mode by number. Returns the upload operation."""
    op = files.put(name=f"Write {dest}", src=StringIO(text), dest=dest, mode=mode)
    owner_and_mode(dest, uid, gid, mode, created_by=op)
    return op


def ensure_owned(o: Owned, created_by: OperationMeta | None = None) -> None:
    """Give ``o.path`` the owner and mode of the rule in pgsteady.stack.hostfiles."""
    owner_and_mode(o.path, o.uid, o.gid, o.mode, created_by=created_by)


def directory_owned(o: Owned, name: str) -> OperationMeta:
    """Create the directory ``o.path`` and give it the rule's owner and mode."""
    op = files.directory(name=name, path=o.path, mode=o.mode)
    ensure_owned(o, created_by=op)
    return op


def put_owned(text: str, o: Owned) -> OperationMeta:
    """Upload rendered text to ``o.path`` with the rule's owner and mode."""
    return put_text(text, o.path, o.uid, o.gid, o.mode)
