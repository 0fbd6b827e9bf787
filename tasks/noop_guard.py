"""Skip a file operation's own facts when one prepare-time fact shows it has nothing to do.

``files.put`` asks the host three facts when it runs (the file, its directory, its
SHA-1) and ``files.directory`` one, each a round trip; pgsteady's ownership step asks a
fourth at prepare time. :class:`FileState` answers all of them in one round trip, at
prepare time, and :func:`skip_if_unchanged` gives the operation an ``_if`` that skips it
only when that answer already matches AND no operation of this run has changed anything
on the host yet (nothing can then have moved the file since the fact was read). After
any change the operation runs as pyinfra would, with its own facts: a converge that
changes things behaves exactly as before; a no-op converge saves the round trips.
"""

from __future__ import annotations

import fnmatch
import hashlib
import shlex
from collections.abc import Callable, Iterable
from io import BytesIO, StringIO
from pathlib import Path
from typing import Any, NamedTuple

from pyinfra import host
from pyinfra.api import FactBase, QuoteString, StringCommand
from pyinfra.api.operation import OperationMeta
from pyinfra.context import ctx_host, ctx_state
from pyinfra.facts.files import File
from pyinfra.operations import files

from pgsteady.stack.layout import HostLayout
from tasks.facts import NumericStat


class State(NamedTuple):
    """A path as the host has it: ``kind`` is ``file``, ``directory`` or ``other``."""

    kind: str
    uid: int
    gid: int
    mode: str
    sha1: str | None


class FileState(FactBase[State | None]):
    """Type, numeric owner, octal mode and (regular files) SHA-1 of a path; None if absent."""

    def command(self, path: str) -> StringCommand:
        q = QuoteString(path)
        return StringCommand(
            "stat -c '%F %u %g %a'", q, "2>/dev/null && { [ -L", q, "] || [ ! -f", q, "] ||",
            "sha1sum", q, "; } || true",
        )  # fmt: skip

    def process(self, output: Iterable[str]) -> State | None:
        lines = [line.strip() for line in output if line.strip()]
        if not lines:
            return None
        *words, uid, gid, mode = lines[0].split()
        kind = {"regular": "file", "directory": "directory"}.get(words[0], "other")
        sha1 = lines[1].split()[0] if len(lines) > 1 else None
        return State(kind, int(uid), int(gid), octal(mode), sha1)


class FileStates(FactBase[dict[str, State]]):
    """FileState of every entry matching each shell glob of ``patterns`` (no hashes of
    what the globs leave out, e.g. the secrets), in one round trip; absent = not a key."""

    def command(self, patterns: list[str], unhashed: list[str] | None = None) -> StringCommand:
        emit = (
            'e() { [ -e "$1" ] || [ -L "$1" ] || return 0; h=-; if [ -L "$1" ]; then k=other;'
            ' elif [ -d "$1" ]; then k=directory; elif [ -f "$1" ]; then k=file;'
            ' [ "$2" = 1 ] && h=$(sha1sum < "$1" | cut -c1-40); else k=other; fi;'
            """ echo "$k $(stat -c '%u %g %a' "$1") $h $1"; };"""
        )
        loops = ["for p in", *patterns, '; do e "$p" 1; done']
        if unhashed:  # stat only: the secrets' hashes never leave the host
            loops += ["; for p in", *unhashed, '; do e "$p" 0; done']
        return StringCommand(emit, *loops)

    @staticmethod
    def default() -> dict[str, State]:
        return {}  # no output: none of the globs matched

    def process(self, output: Iterable[str]) -> dict[str, State]:
        states = {}
        for line in output:
            if line.strip():
                kind, uid, gid, mode, digest, path = line.rstrip("\n").split(" ", 5)
                sha = None if digest == "-" else digest
                states[path] = State(kind, int(uid), int(gid), octal(mode), sha)
        return states


#: Per host: the globs prefetch() read (``DIR/*`` per directory), and what they held.
_prefetched: dict[str, tuple[list[str], dict[str, State]]] = {}


def prefetch(
    directories: Iterable[str], globs: Iterable[str] = (), unhashed: Iterable[str] = ()
) -> None:
    """Read the FileState of every entry of ``directories`` (not recursive) and of the
    paths matching ``globs`` at once, and the type, owner and mode (no hash) of every
    entry of the ``unhashed`` directories; file_state(), numeric_stat() and
    is_file() then answer for what they cover."""
    hashed = [f"{d.rstrip('/')}/*" for d in sorted(set(directories))] + list(globs)
    bare = [f"{d.rstrip('/')}/*" for d in sorted(set(unhashed))]
    states = host.get_fact(
        FileStates,
        patterns=[_quote_glob(p) for p in hashed],
        unhashed=[_quote_glob(p) for p in bare],
    )
    _prefetched[host.name] = ([*hashed, *bare], states or {})


def _quote_glob(pattern: str) -> str:
    """A glob whose only special characters are ``*``: quote the rest."""
    return "*".join(shlex.quote(part) if part else "" for part in pattern.split("*"))


def _covered(path: str) -> dict[str, State] | None:
    """The prefetched states when prefetch() read ``path``'s directory or glob."""
    patterns, states = _prefetched.get(host.name, ([], {}))
    for p in patterns:
        if fnmatch.fnmatchcase(path, p) and "/" not in path[len(p.split("*")[0]) :]:
            return states
    return None


def file_state(path: str) -> State | None:
    """The FileState of ``path`` at prepare time (from prefetch() when it covered it)."""
    states = _covered(path)
    if states is None:
        return host.get_fact(FileState, path=path)
    return states.get(path)  # sha1 None for a file read unhashed: no write matches it


def numeric_stat(path: str) -> tuple[int, int, str] | None:
    """``(uid, gid, mode)`` as tasks.facts.NumericStat, from prefetch() when it covered it."""
    states = _covered(path)
    if states is None:
        return host.get_fact(NumericStat, path=path)
    st = states.get(path)
    return None if st is None else (st.uid, st.gid, st.mode)


def is_file(path: str) -> bool:
    """Whether ``path`` is a regular file (pyinfra's File fact), from prefetch() if it can."""
    states = _covered(path)
    st = None if states is None else states.get(path)
    if states is not None and (st is None or st.kind == "file"):
        return st is not None
    return bool(host.get_fact(File, path=path))


def nothing_changed_yet(run_state: Any = None, run_host: Any = None) -> bool:
    """True while no operation of this run has changed anything on the host (the current
    one unless given: an ``_if`` made at prepare time passes the ones it was made for)."""
    run_state = run_state if run_state is not None else ctx_state.get()
    run_host = run_host if run_host is not None else ctx_host.get()
    for op_data in run_state.ops[run_host].values():
        meta = op_data.operation_meta
        if meta.is_complete() and meta.did_change():
            return False
    return True


def _until_a_change() -> Callable[[], bool]:
    """An ``_if`` that skips its operation while nothing has changed on this host."""
    run_state, run_host = ctx_state.get(), ctx_host.get()
    return lambda: not nothing_changed_yet(run_state, run_host)


def octal(mode: str | int) -> str:
    """A mode as ``stat -c %a`` prints it: ``"0640"`` -> ``"640"``."""
    return format(int(str(mode), 8), "o").zfill(3)


def sha1(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()  # what files.put compares (Sha1File)


def skip_if_unchanged(current: State | None, want: State) -> Callable[[], bool]:
    """An ``_if`` for the operation that would bring the path to ``want``."""
    if current != want:
        return lambda: True
    return _until_a_change()


def guarded_put(
    *,
    name: str,
    src: str | StringIO | BytesIO,
    dest: str,
    mode: str,
    user: str = "root",
    group: str = "root",
) -> OperationMeta:
    """``files.put`` of a root-owned file (``src``: a local path or an in-memory file),
    skipped on a no-op converge after one FileState round trip instead of three facts."""
    if (user, group) != ("root", "root"):
        raise ValueError("guarded_put compares numeric owners: root:root files only")
    data = Path(src).read_bytes() if isinstance(src, str) else src.getvalue()
    digest = hashlib.sha1(data.encode() if isinstance(data, str) else data).hexdigest()
    current = file_state(dest)
    want = State("file", 0, 0, octal(mode), digest)
    return files.put(
        name=name,
        src=src,
        dest=dest,
        user=user,
        group=group,
        mode=mode,
        _if=skip_if_unchanged(current, want),
    )


def prefetch_host_files(layout: HostLayout, project: str) -> None:
    """prefetch() what the converge writes: app_dir and its bin, config, etc, init and tls
    directories, and this project's cron files; of secrets/ and tls/private/ only type,
    owner and mode: their files are generated on the host, and no hash of them leaves it."""
    dirs = [layout.app_dir, layout.bin, layout.config, layout.etc, layout.init, layout.tls]
    secret_dirs = [layout.secrets, f"{layout.secrets}/pgbackrest", f"{layout.tls}/private"]
    prefetch(dirs, [f"/etc/cron.d/pgsteady-*-{project}"], unhashed=secret_dirs)


def guarded_remove(*, name: str, path: str) -> OperationMeta:
    """``files.file(present=False)``, skipped without a fact when prefetch() saw no such
    path and nothing has changed yet."""
    current = file_state(path)
    return files.file(
        name=name,
        path=path,
        present=False,
        _if=(lambda: True) if current is not None else _until_a_change(),
    )
