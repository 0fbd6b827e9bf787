"""How Patroni's dynamic configuration differs from what pgsteady converges (review R8, L4).

A converge PATCHes only the keys pgsteady manages (pgsteady.cluster.dcs), so a key planted
with ``patronictl edit-config`` or ``PATCH /config`` (``postgresql.parameters.
archive_library``, ``slots``, ``standby_cluster`` ...) survives every redeploy. ``make
verify`` compares ``GET /config`` with :func:`pgsteady.cluster.dcs.desired` here:
:func:`unmanaged` names each planted key by its shortest path, and :func:`removal_patch`
is the patch that deletes them (``null`` deletes in Patroni's merge).
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from typing import Any

from pgsteady.cluster import dcs
from pgsteady.cluster.member_service import PATRONI_DIR
from pgsteady.postgres.session import postgres_exec

Path = tuple[str, ...]


def unmanaged(current: Mapping[str, Any], desired: Mapping[str, Any]) -> list[Path]:
    """The keys of ``current`` that ``desired`` lacks, each by its shortest path (a planted
    mapping once, not leaf by leaf)."""
    out: list[Path] = []

    def walk(have: Mapping[str, Any], want: Mapping[str, Any], prefix: Path) -> None:
        for key in sorted(have, key=str):
            path = (*prefix, str(key))
            if key not in want:
                out.append(path)
            elif isinstance(have[key], Mapping) and isinstance(want[key], Mapping):
                walk(have[key], want[key], path)

    walk(current, desired, ())
    return out


def removal_patch(current: Mapping[str, Any], desired: Mapping[str, Any]) -> dict[str, Any]:
    """The nested patch that deletes every unmanaged key (``null``). Managed values are a
    deploy's to set: the seed member sends them, tuned for its host."""
    out: dict[str, Any] = {}
    for path in unmanaged(current, desired):
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = None
    return out


def name(path: Path) -> str:
    """``postgresql.parameters.archive_library``: a path as people write it."""
    return ".".join(path)


def fix_command(container: str, patch: Mapping[str, Any]) -> str:
    """The command (on any member's host, as root) that applies ``patch`` to the DCS."""
    body = json.dumps(patch, sort_keys=True, separators=(",", ":"))
    apply = shlex.join(postgres_exec(container, *dcs.apply_argv(PATRONI_DIR), stdin=True))
    return f"printf '%s\\n' {shlex.quote(body)} | {apply}"
