"""The sidecars of every published backup (``.sha256``, ``.manifest.json``): written
before the rename that publishes a dump, and re-checked by verify, restore and drill."""

from __future__ import annotations

import json
import os
import time
from datetime import datetime

from .config import Config
from .errors import BackupError
from .layout import SIDECARS, fsync_dir, remove_quietly, sha256_file, write_atomic


def make_manifest(
    config: Config,
    kind: str,
    name: str,
    when: datetime,
    size: int,
    sha: str,
    started: float,
    **fields: object,
) -> dict:
    """The JSON written next to every published dump (``fields`` are kind-specific)."""
    return {
        "format": 1,
        "kind": kind,
        "file": name,
        "created": when.isoformat(),
        **fields,
        "size": size,
        "sha256": sha,
        "duration_seconds": round(time.monotonic() - started, 3),
        "container": config.container,
        "compose_project": config.compose_project,
    }


def publish(tmp: str, final: str, sha: str, manifest: dict) -> None:
    """Write the sidecars, then rename the verified temp file to its final name."""
    name = os.path.basename(final)
    write_atomic(final + ".sha256", f"{sha}  {name}\n".encode())
    write_atomic(final + ".manifest.json", json.dumps(manifest, indent=2).encode() + b"\n")
    os.replace(tmp, final)
    fsync_dir(os.path.dirname(final))


def discard_unpublished(tmp: str, final: str) -> None:
    """Remove a temp dump, and the sidecars of a dump that was never renamed into place."""
    remove_quietly(tmp)
    if not os.path.exists(final):
        for ext in SIDECARS:
            remove_quietly(final + ext)


def read_sidecars(path: str) -> tuple[str, dict]:
    """The recorded sha256 and manifest of a backup file."""
    try:
        with open(path + ".sha256", encoding="utf-8") as fh:
            recorded = fh.read().split()[0]
        with open(path + ".manifest.json", encoding="utf-8") as fh:
            manifest = json.load(fh)
    except (OSError, ValueError, IndexError) as exc:
        raise BackupError(f"{path}: missing or unreadable checksum/manifest: {exc}") from None
    return recorded, manifest


def check_file(path: str) -> dict:
    """Re-hash a backup; raise BackupError unless it matches its .sha256 and manifest."""
    recorded, manifest = read_sidecars(path)
    try:
        size = os.path.getsize(path)
        actual = sha256_file(path)
    except OSError as exc:
        raise BackupError(f"{path}: cannot read: {exc.strerror}") from None
    if actual != recorded:
        raise BackupError(
            f"{path}: sha256 mismatch (recorded {recorded}, actual {actual}): "
            "the backup is corrupted"
        )
    if size != manifest.get("size"):
        raise BackupError(f"{path}: size {size} differs from the manifest's {manifest.get('size')}")
    return manifest
