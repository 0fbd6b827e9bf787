"""tasks/image.py with the Debian source and a seed archive (``postgres_image_archive``).

The plan (tests.support.pyinfra_plan, no host) shows where the load goes: before the
build script, never on ``make update-image``. The load's guard then runs in a real
``sh`` against real files under a root-owned temporary directory, with a ``docker`` on
PATH that records what it was asked (the engine is not what is tested here).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from pgsteady.settings import HostFacts, Settings, build_settings
from pgsteady.stack.image import debian_recipe
from tasks import image
from tests.support.pyinfra_plan import plan

SOURCES = {
    "list": [
        "deb http://mirror.invalid/debian trixie main\n"
        "deb http://mirror.invalid/debian-security trixie-security main\n"
    ],
    "deb822": [],
}


def settings(archive: Path | None) -> Settings:
    data = {"postgres_image_source": "debian", "postgres_image_archive": archive and str(archive)}
    return build_settings(data, HostFacts(ram_mb=4096, cpus=2, has_systemd=True), host="db1")


def build_command(s: Settings, data: dict | None = None) -> str:
    """The command of the planned build operation (no image present on the host)."""
    returned, p = plan(
        image.ensure, s, facts={"DockerInspect": None, "AptSources": SOURCES}, data=data
    )
    recipe = debian_recipe(s.postgres_version)
    name = f"Build {recipe.tag} from Debian {recipe.suite} packages"
    assert [op.name for op in p.ops for meta in returned if op.meta is meta] == [name]
    return " ".join(p.op(name).commands)


def test_the_seed_is_loaded_before_the_build() -> None:
    command = build_command(settings(Path("/root/pgsteady-postgres-17.tar")))
    load = command.index("exec 3< /root/pgsteady-postgres-17.tar")
    assert command.index("docker load -q <&3") > load
    assert load < command.index("build-debian-image.sh")


def test_no_seed_without_an_archive_and_none_on_a_refresh() -> None:
    assert "docker load" not in build_command(settings(None))
    refresh = build_command(
        settings(Path("/root/pgsteady-postgres-17.tar")), data={"pgsteady_refresh_image": "1"}
    )
    assert "docker load" not in refresh
    assert "PGSTEADY_REFRESH=1" in refresh


@pytest.fixture
def seed_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A root-owned 0700 directory with a 0600 archive and a recording ``docker``."""
    if os.geteuid() != 0:
        pytest.skip("needs root: the guard wants root-owned files")
    monkeypatch.setattr(image, "refresh_requested", lambda: False)  # no pyinfra host here
    d = tmp_path / "seed"
    d.mkdir(mode=0o700)
    (d / "postgres.tar").write_bytes(b"tar")
    (d / "postgres.tar").chmod(0o600)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    docker = bin_dir / "docker"
    docker.write_text(
        '#!/bin/sh\necho "$*" >> "$DOCKER_LOG"\n'
        '[ "$1" = load ] && { printf "read: "; cat; echo; } >> "$DOCKER_LOG"\n'
        '[ "$1 $2" = "image inspect" ] && [ -n "$LABEL" ] && echo "$LABEL"\nexit 0\n'
    )
    docker.chmod(0o755)
    return d


def run_seed(d: Path, label: str = "") -> tuple[subprocess.CompletedProcess[str], str]:
    """The seed command, then ``echo built`` (the build's place), in a real sh."""
    s = settings(d / "postgres.tar")
    log = d.parent / "docker.log"
    log.unlink(missing_ok=True)
    env = dict(os.environ, PATH=f"{d.parent / 'bin'}:{os.environ['PATH']}", DOCKER_LOG=str(log),
               LABEL=label)  # fmt: skip
    proc = subprocess.run(
        ["sh", "-c", image._seed_command(s) + "echo built"], capture_output=True, text=True,
        env=env,
    )  # fmt: skip
    return proc, log.read_text() if log.exists() else ""


def test_a_private_seed_is_loaded_then_the_build_runs(seed_dir: Path) -> None:
    proc, calls = run_seed(seed_dir)
    assert proc.returncode == 0, proc.stderr
    assert "load -q\nread: tar\n" in calls  # from the descriptor that was checked
    assert proc.stdout.strip().endswith("built")


def test_no_load_when_the_recipe_is_present(seed_dir: Path) -> None:
    recipe = debian_recipe(settings(None).postgres_version)
    proc, calls = run_seed(seed_dir, label=recipe.recipe_hash)
    assert proc.returncode == 0, proc.stderr
    assert "load" not in calls
    assert proc.stdout.strip() == "built"


@pytest.mark.parametrize("target, mode", [("postgres.tar", 0o666), ("postgres.tar", 0o620),
                                          (".", 0o777), (".", 0o770)])  # fmt: skip
def test_a_seed_another_uid_could_write_is_refused(seed_dir: Path, target: str, mode: int) -> None:
    (seed_dir / target).chmod(mode)
    proc, calls = run_seed(seed_dir)
    assert proc.returncode == 1
    assert "load" not in calls
    assert "built" not in proc.stdout
    assert "postgres_image_archive" in proc.stderr and "refusing to load it" in proc.stderr


def test_a_seed_owned_by_another_uid_is_refused(seed_dir: Path) -> None:
    os.chown(seed_dir / "postgres.tar", 999, 999)
    proc, calls = run_seed(seed_dir)
    assert proc.returncode == 1 and "load" not in calls, (proc.stderr, calls)


def test_a_seed_under_a_directory_another_uid_could_write_is_refused(seed_dir: Path) -> None:
    """Every directory above the archive counts: a group-writable grandparent could swap
    the whole seed directory (review R7 L2)."""
    seed_dir.parent.chmod(0o775)
    try:
        proc, calls = run_seed(seed_dir)
    finally:
        seed_dir.parent.chmod(0o700)
    assert proc.returncode == 1 and "load" not in calls, (proc.stderr, calls)
    assert "refusing to load it" in proc.stderr


def test_a_seed_under_an_ancestor_owned_by_another_uid_is_refused(seed_dir: Path) -> None:
    os.chown(seed_dir.parent, 999, 999)
    try:
        proc, calls = run_seed(seed_dir)
    finally:
        os.chown(seed_dir.parent, 0, 0)
    assert proc.returncode == 1 and "load" not in calls, (proc.stderr, calls)


def test_a_root_owned_sticky_ancestor_is_allowed(seed_dir: Path) -> None:
    """Like /tmp: others may create entries there but not rename or remove root's."""
    seed_dir.parent.chmod(0o1777)
    try:
        proc, calls = run_seed(seed_dir)
    finally:
        seed_dir.parent.chmod(0o700)
    assert proc.returncode == 0, proc.stderr
    assert "read: tar" in calls


def test_a_symlinked_seed_is_refused(seed_dir: Path) -> None:
    (seed_dir / "real.tar").write_bytes(b"tar")
    (seed_dir / "postgres.tar").unlink()
    (seed_dir / "postgres.tar").symlink_to(seed_dir / "real.tar")
    proc, calls = run_seed(seed_dir)
    assert proc.returncode == 1 and "load" not in calls, (proc.stderr, calls)


def test_the_archive_source_loads_through_the_same_guard() -> None:
    s = build_settings(
        {"postgres_image_source": "archive", "postgres_image_archive": "/srv/img/pg.tar",
         "postgres_image": "example/pg:17", "pgbackrest_enabled": False,
         "metrics_enabled": False, "pgbouncer_enabled": False},
        HostFacts(ram_mb=4096, cpus=2, has_systemd=True), host="db1",
    )  # fmt: skip
    returned, p = plan(
        image.ensure, s, facts={"Sha256File": "ab" * 32, "FileContents": None,
                                "DockerInspect": None},
    )  # fmt: skip
    (op,) = [op for op in p.ops if op.name == "Load /srv/img/pg.tar"]
    assert op.commands[0] == image.trusted_load("/srv/img/pg.tar", "postgres_image_archive")
