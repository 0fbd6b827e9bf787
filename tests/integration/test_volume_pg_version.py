"""Root reads a data volume's PG_VERSION without trusting what the server's uid wrote.

A real docker volume; its ``pgdata`` belongs to uid 999 (the server's), which makes
``PG_VERSION`` a symbolic link to a root-only 0600 secret, or a FIFO. The deploy's
VolumePgVersion fact (its shell command run as root, as pyinfra runs it) and
pgsteady-upgrade-major (its own function, sourced as pgsteady-ctl sources it) must refuse
such a volume without printing a byte of the secret and without blocking on the FIFO; a
plain ``15`` still reads as 15, and only root's marker in the state dir (not one in the
volume) makes an existing cluster volume a leftover to remove.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from backup_env import REPO
from pyinfra.api.exceptions import FactProcessError

from pgsteady.stack.upgrade import incomplete_marker
from tasks.facts import VolumePgVersion

pytestmark = pytest.mark.docker

SERVER_UID = 999
SCRIPT = REPO / "files/bin/pgsteady-upgrade-major"


def _docker(*args: str) -> str:
    return subprocess.run(
        ["docker", *args], check=True, capture_output=True, text=True, timeout=60
    ).stdout.strip()


@pytest.fixture
def volume(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A fresh docker volume with an empty ``pgdata`` owned by the server's uid."""
    if os.geteuid() != 0:
        pytest.skip("needs root (the attack is on root's reads)")
    try:
        name = _docker("volume", "create", f"pgsteady-vv-{uuid.uuid4().hex[:10]}")
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("no Docker engine")
    try:
        top = Path(_docker("volume", "inspect", "-f", "{{.Mountpoint}}", name))
        (top / "pgdata").mkdir()
        os.chown(top / "pgdata", SERVER_UID, SERVER_UID)
        yield name, top / "pgdata"
    finally:
        _docker("volume", "rm", "-f", name)


@pytest.fixture
def secret(tmp_path: Path) -> str:
    """A root-only 0600 file; returns its content."""
    text = f"root-secret-{uuid.uuid4().hex}"
    path = tmp_path / "secret"
    path.write_text(text + "\n")
    path.chmod(0o600)
    return text


def _fact(volume: str) -> tuple[subprocess.CompletedProcess[str], int | None | Exception]:
    """Run the fact's command as pyinfra would (sh -c, as root) and process its output."""
    cmd = VolumePgVersion().command(volume=volume).get_raw_value()
    proc = subprocess.run(["sh", "-c", cmd], capture_output=True, text=True, timeout=20)
    try:
        return proc, VolumePgVersion().process(proc.stdout.splitlines())
    except FactProcessError as e:
        return proc, e


def _upgrade(from_volume: str, state: Path, data_volume: str = "") -> subprocess.CompletedProcess:
    """upgrade_major FROM_VOLUME with pgsteady-ctl's helpers (log, die; no lock needed).

    ``docker image inspect`` answers yes (the old image exists) and the stopped marker's
    directory does not exist, so a run that gets past its checks stops at `touch`."""
    prelude = f"""set -eu
log() {{ echo "pgsteady-ctl: $*" >&2; }}
die() {{ log "$*"; exit 2; }}
take_lock() {{ :; }}
docker() {{ if [ "$1" = image ]; then return 0; fi; command docker "$@"; }}
stopped_marker=/nonexistent-{uuid.uuid4().hex}/.stopped
export PGSTEADY_DATA_VOLUME={data_volume or "pgsteady-vv-absent-" + uuid.uuid4().hex[:8]}
export PGSTEADY_IMAGE=pgsteady/none:17 PGSTEADY_BACKUP_DIR=/nonexistent PGSTEADY_PROJECT=none
export PGSTEADY_DATA_MOUNT=/var/lib/postgresql/data PGSTEADY_CONFIG_FILE=/nonexistent
export PGSTEADY_STATE_DIR={state} PGSTEADY_CONTAINER=pgsteady-vv-none PGSTEADY_HEALTHY_TIMEOUT=5
. {SCRIPT}
upgrade_major "$1"
"""
    return subprocess.run(
        ["sh", "-c", prelude, "sh", from_volume], capture_output=True, text=True, timeout=30
    )


def test_a_plain_version_file_reads(volume: tuple[str, Path], tmp_path: Path) -> None:
    name, pgdata = volume
    assert _fact(name)[1] is None  # no PG_VERSION yet: an empty volume
    (pgdata / "PG_VERSION").write_text("15\n")
    assert _fact(name)[1] == 15
    run = _upgrade(name, tmp_path)
    assert "writes stop now" in run.stderr and "Postgres 15" in run.stderr, run.stderr


def test_a_link_to_a_root_only_file_is_refused_unread(
    volume: tuple[str, Path], secret: str, tmp_path: Path
) -> None:
    name, pgdata = volume
    os.symlink(tmp_path / "secret", pgdata / "PG_VERSION")
    os.lchown(pgdata / "PG_VERSION", SERVER_UID, SERVER_UID)
    proc, got = _fact(name)
    assert isinstance(got, FactProcessError), (got, proc.stdout)
    assert secret not in proc.stdout + proc.stderr + str(got)
    run = _upgrade(name, tmp_path)
    assert run.returncode == 2, run.stderr
    assert f"refusing {name}" in run.stderr
    assert secret not in run.stdout + run.stderr


def test_a_linked_pgdata_is_refused(volume: tuple[str, Path], tmp_path: Path) -> None:
    name, pgdata = volume
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "PG_VERSION").write_text("15\n")
    pgdata.rmdir()
    os.symlink(elsewhere, pgdata)
    assert isinstance(_fact(name)[1], FactProcessError)
    run = _upgrade(name, tmp_path)
    assert run.returncode == 2 and f"refusing {name}" in run.stderr, run.stderr


def test_a_fifo_is_refused_without_blocking(volume: tuple[str, Path], tmp_path: Path) -> None:
    name, pgdata = volume
    os.mkfifo(pgdata / "PG_VERSION")
    os.chown(pgdata / "PG_VERSION", SERVER_UID, SERVER_UID)
    assert isinstance(_fact(name)[1], FactProcessError)  # timeout=20 raises if it blocks
    run = _upgrade(name, tmp_path)
    assert run.returncode == 2 and f"refusing {name}" in run.stderr, run.stderr


def test_only_roots_marker_makes_a_cluster_volume_a_leftover(
    volume: tuple[str, Path], tmp_path: Path
) -> None:
    """The target volume holds a cluster: a marker inside it (which the server's uid can
    write or delete) changes nothing; root's marker in the state dir makes it removable."""
    target, target_pgdata = volume
    (target_pgdata / "PG_VERSION").write_text("17\n")
    (target_pgdata.parent / "pgsteady-upgrade-incomplete").touch()
    source = _docker("volume", "create", f"pgsteady-vv-{uuid.uuid4().hex[:10]}")
    try:
        src_dir = Path(_docker("volume", "inspect", "-f", "{{.Mountpoint}}", source))
        (src_dir / "pgdata").mkdir()
        (src_dir / "pgdata" / "PG_VERSION").write_text("15\n")
        kept = _upgrade(source, tmp_path, data_volume=target)
        assert kept.returncode == 2 and "already holds a cluster" in kept.stderr, kept.stderr
        (tmp_path / incomplete_marker(target)).touch()
        removed = _upgrade(source, tmp_path, data_volume=target)
        assert f"removing {target}" in removed.stderr, removed.stderr
        assert subprocess.run(
            ["docker", "volume", "inspect", target], capture_output=True
        ).returncode
    finally:
        _docker("volume", "rm", "-f", source)
