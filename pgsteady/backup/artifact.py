"""The backup tool's host artifact: pgsteady/backuptool as one zip, the same bytes every time.

The host runs the tool with Debian's python3 and no virtualenv: the wrapper
files/backup/pgsteady-backup checks that root owns the zip, then imports the package
from it (zipimport, standard library). The zip holds the package's ``*.py`` files only,
sorted, stored uncompressed, with a fixed timestamp and mode, so building it twice gives
identical bytes and a second deploy uploads nothing.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

#: The package shipped to the host, and its name there (``import backuptool``).
PACKAGE_DIR = Path(__file__).resolve().parents[1] / "backuptool"
PACKAGE = PACKAGE_DIR.name
#: The artifact's file name in APP_DIR/bin.
ARTIFACT = "backuptool.zip"
#: Files of the old host layout (one module per file) that the artifact replaces.
OLD_MODULES = ("backup_tool.py", "restore_tool.py", "retention.py")
#: The earliest time a zip entry can carry (1980-01-01): no build time in the bytes.
FIXED_TIME = (1980, 1, 1, 0, 0, 0)


def sources(package_dir: Path = PACKAGE_DIR) -> list[Path]:
    """The package's modules, in the order they are stored."""
    return sorted(package_dir.glob("*.py"))


def build(package_dir: Path = PACKAGE_DIR) -> bytes:
    """The zip of the package: deterministic (sorted names, fixed time and mode, stored)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        for path in sources(package_dir):
            info = zipfile.ZipInfo(f"{PACKAGE}/{path.name}", date_time=FIXED_TIME)
            info.external_attr = 0o100644 << 16
            info.create_system = 3  # unix, whatever the build machine
            zf.writestr(info, path.read_bytes())
    return buf.getvalue()
