"""Read-only pyinfra facts pgsteady needs beyond pyinfra's own."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from pyinfra.api import FactBase
from pyinfra.api.command import QuoteString, StringCommand
from pyinfra.api.exceptions import FactProcessError

from pgsteady.stack.hostfacts import SYSTEMD_COMMAND, parse_has_systemd
from pgsteady.stack.upgrade import incomplete_marker
from pgsteady.stack.volume_version import ABSENT, FOUND, READ_PG_VERSION_PY


class FreeDiskBytes(FactBase[int]):
    """Free bytes on the filesystem that holds ``path`` (or its nearest existing parent)."""

    def command(self, path: str) -> StringCommand:
        return StringCommand(
            "p=",
            QuoteString(path),
            '; while [ ! -e "$p" ]; do p=$(dirname "$p"); done; df -Pk "$p" | tail -n 1',
        )

    def process(self, output: Iterable[str]) -> int:
        fields = list(output)[-1].split()
        return int(fields[3]) * 1024


class HasSystemd(FactBase[bool]):
    """True when systemd is the running init (not merely installed)."""

    def command(self) -> str:
        return SYSTEMD_COMMAND

    def process(self, output: Iterable[str]) -> bool:
        return parse_has_systemd("\n".join(output))


class ComposeCommand(FactBase[str]):
    """``docker compose`` (v2 plugin), ``docker-compose`` (v1) or ``""`` when neither."""

    def command(self) -> str:
        return (
            "if docker compose version >/dev/null 2>&1; then echo 'docker compose'; "
            "elif command -v docker-compose >/dev/null 2>&1; then echo docker-compose; "
            "else echo none; fi"
        )

    def process(self, output: Iterable[str]) -> str:
        value = list(output)[0].strip()
        return "" if value == "none" else value


class DockerServerVersion(FactBase[str]):
    """The engine's version when dockerd answers, else ``""``."""

    def command(self) -> str:
        return "docker info --format '{{.ServerVersion}}' 2>/dev/null || true"

    def process(self, output: Iterable[str]) -> str:
        lines = [line.strip() for line in output if line.strip()]
        return lines[0] if lines else ""


class DockerInspect(FactBase[dict[str, Any] | None]):
    """``docker inspect`` of one object (container, image, volume), or None when absent."""

    def command(self, kind: str, object_id: str) -> StringCommand:
        return StringCommand(
            "docker", kind, "inspect", QuoteString(object_id), "2>/dev/null || echo '[]'"
        )

    def process(self, output: Iterable[str]) -> dict[str, Any] | None:
        text = "\n".join(output).strip() or "[]"
        try:
            items = json.loads(text)
        except json.JSONDecodeError:
            return None
        return items[0] if items else None


class AptSources(FactBase[dict[str, list[str]]]):
    """The host's apt sources: one-line ``sources.list`` text and deb822 ``*.sources`` texts."""

    _SEP = "=====pgsteady-apt-source====="

    def command(self) -> str:
        return (
            "cat /etc/apt/sources.list 2>/dev/null; "
            'for f in /etc/apt/sources.list.d/*.list; do [ -f "$f" ] && cat "$f"; done; '
            f'for f in /etc/apt/sources.list.d/*.sources; do [ -f "$f" ] && '
            f'echo {self._SEP} && cat "$f"; done; true'
        )

    def process(self, output: Iterable[str]) -> dict[str, list[str]]:
        parts = "\n".join(output).split(self._SEP)
        return {"list": [parts[0]], "deb822": parts[1:]}


class NumericStat(FactBase[tuple[int, int, str] | None]):
    """``(uid, gid, octal mode)`` of a path by number (uids need not have names here)."""

    def command(self, path: str) -> StringCommand:
        return StringCommand("stat -c '%u %g %a'", QuoteString(path), "2>/dev/null || true")

    def process(self, output: Iterable[str]) -> tuple[int, int, str] | None:
        lines = [line for line in output if line.strip()]
        if not lines:
            return None
        uid, gid, mode = lines[0].split()
        return int(uid), int(gid), mode.zfill(3)


class VolumePgVersion(FactBase[int | None]):
    """Major version of the cluster in a docker volume's ``pgdata`` dir, None if none.

    The volume is writable by the server's uid: root reads it only through
    :data:`~pgsteady.stack.volume_version.READ_PG_VERSION_PY` (no link followed, no FIFO
    opened, nothing of the file printed) and refuses a volume it cannot read that way.
    """

    def command(self, volume: str) -> StringCommand:
        return StringCommand(
            "if m=$(docker volume inspect -f '{{.Mountpoint}}'",
            QuoteString(volume),
            "2>/dev/null); then python3 -c",
            QuoteString(READ_PG_VERSION_PY),
            '"$m" 2>/dev/null; echo "rc=$?"; fi',
        )

    def process(self, output: Iterable[str]) -> int | None:
        lines = [line.strip() for line in output if line.strip()]
        if not lines or lines[-1] == f"rc={ABSENT}":
            return None
        if lines[-1] == f"rc={FOUND}" and len(lines) == 2 and lines[0].isdigit():
            return int(lines[0])
        raise FactProcessError(
            "the volume's pgdata/PG_VERSION is not a regular file holding a major version "
            "(a symbolic link, a FIFO, or other content: the server's uid can write the "
            "volume, so root refuses it and reads nothing of it); inspect the volume"
        )


class VolumeUpgradeIncomplete(FactBase[bool]):
    """True when a docker volume exists and a major upgrade into it is not yet verified.

    The marker is a file of root's ``state_dir`` named for the volume
    (:func:`~pgsteady.stack.upgrade.incomplete_marker`), not a file in the volume, which
    the server's uid could delete.
    """

    def command(self, volume: str, state_dir: str) -> StringCommand:
        return StringCommand(
            "docker volume inspect",
            QuoteString(volume),
            ">/dev/null 2>&1 && test -e",
            QuoteString(f"{state_dir}/{incomplete_marker(volume)}"),
            "&& echo yes || true",
        )

    def process(self, output: Iterable[str]) -> bool:
        return any(line.strip() == "yes" for line in output)
