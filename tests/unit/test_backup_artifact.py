"""The backup tool reaches the host as one zip with the same bytes on every build, and
runs from it with nothing but the standard library."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from pgsteady.backup import artifact
from pgsteady.settings import Settings
from pgsteady.stack.hostfiles import layout

HOST_PYTHON = shutil.which("python3", path="/usr/bin:/bin") or sys.executable


def test_two_builds_give_the_same_bytes(tmp_path: Path) -> None:
    """A second deploy uploads nothing: the artifact does not depend on time or mtimes."""
    first = artifact.build()
    copy = tmp_path / "backuptool"
    shutil.copytree(artifact.PACKAGE_DIR, copy, ignore=shutil.ignore_patterns("__py*"))
    for path in sorted(copy.iterdir(), reverse=True):  # another checkout: new mtimes, modes
        os.utime(path, (86400 * 365 * 50, 86400 * 365 * 50))
        path.chmod(0o600)
    assert artifact.build(copy) == first
    assert artifact.build() == first


def test_the_zip_holds_exactly_the_package_sources() -> None:
    with zipfile.ZipFile(io.BytesIO(artifact.build())) as zf:
        infos = zf.infolist()
        names = [i.filename for i in infos]
        assert names == sorted(names)
        assert names == [f"backuptool/{p.name}" for p in artifact.sources()]
        assert "backuptool/cli.py" in names and "backuptool/__init__.py" in names
        assert {i.date_time for i in infos} == {artifact.FIXED_TIME}
        for info in infos:
            source = artifact.PACKAGE_DIR / info.filename.split("/")[1]
            assert zf.read(info) == source.read_bytes()


def test_the_host_python_runs_the_tool_from_the_zip_alone(tmp_path: Path) -> None:
    """Isolated mode, no site-packages, no pgsteady on the path: the zip is all it has."""
    archive = tmp_path / artifact.ARTIFACT
    archive.write_bytes(artifact.build())
    code = (
        f"import sys; sys.path.insert(0, {str(archive)!r}); "
        "from backuptool.cli import main; import backuptool.cli as c; "
        "assert c.__file__.startswith(sys.path[0]), c.__file__; sys.exit(main(sys.argv[1:]))"
    )
    res = subprocess.run(
        [HOST_PYTHON, "-I", "-S", "-c", code, "verify", "--config", str(tmp_path / "none")],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert res.returncode == 2, res  # the config is missing: refused before any work
    assert "cannot read config" in res.stderr, res.stderr


@pytest.mark.parametrize("old", artifact.OLD_MODULES)
def test_the_host_layout_names_the_zip_not_the_old_modules(old: str) -> None:
    paths = {o.path for o in layout(Settings())}
    bin_dir = Settings().layout.bin
    assert f"{bin_dir}/{artifact.ARTIFACT}" in paths
    assert f"{bin_dir}/{old}" not in paths
