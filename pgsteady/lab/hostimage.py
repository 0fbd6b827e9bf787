"""The lab's host image: a minimal Debian server (systemd, sshd, python3, sudo).

Built once per recipe with debootstrap from the Debian mirror of THIS machine's apt
sources, imported with ``docker import`` and labelled with the recipe hash; a later
``make lab`` with the same recipe reuses it. The host's apt sources are a copy of this
machine's, so the deploy installs Docker on a lab host from the same mirror.
"""

from __future__ import annotations

import fcntl
import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from pgsteady.lab.engine import DOCKER, LabError, docker, run
from pgsteady.lab.recipe import (
    IMAGE_FILES,
    PACKAGES,
    RECIPE_LABEL,
    check_suite,
    host_image_tag,
    recipe_hash,
    rewrite_sources,
)
from pgsteady.stack.image import debian_mirror, debian_security_mirror

APT = Path("/etc/apt")
KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
LOCK = Path("/run/lock/pgsteady-lab-host-image.lock")
BUILD_TIMEOUT_S = 900


def local_suite() -> str:
    """This machine's Debian codename (``VERSION_CODENAME`` of /etc/os-release)."""
    for line in Path("/etc/os-release").read_text().splitlines():
        if line.startswith("VERSION_CODENAME="):
            return line.split("=", 1)[1].strip().strip('"')
    raise LabError("/etc/os-release has no VERSION_CODENAME: not a Debian machine?")


def local_sources() -> list[tuple[str, str]]:
    """(file name, text) of the apt sources this machine's apt reads, in apt's order."""
    found: list[tuple[str, str]] = []
    main = APT / "sources.list"
    if main.exists() and main.read_text().strip():
        found.append(("sources.list", main.read_text()))
    for path in sorted(glob.glob(str(APT / "sources.list.d" / "*"))):
        if path.endswith((".list", ".sources")):
            found.append((Path(path).name, Path(path).read_text()))
    return found


def local_mirror() -> str:
    """The main Debian archive URI of this machine's apt sources."""
    main = dict(local_sources()).get("sources.list", "")
    deb822 = [text for name, text in local_sources() if name.endswith(".sources")]
    return debian_mirror(main, deb822)


def local_security_mirror() -> str:
    """The archive serving ``<suite>-security`` in this machine's apt sources."""
    main = dict(local_sources()).get("sources.list", "")
    deb822 = [text for name, text in local_sources() if name.endswith(".sources")]
    return debian_security_mirror(main, deb822)


def sources_for(suite: str) -> list[tuple[str, str]]:
    """This machine's apt sources, with its suite names replaced by ``suite``."""
    here = local_suite()
    return [(name, rewrite_sources(text, here, suite)) for name, text in local_sources()]


def image_ready(tag: str, digest: str, label: str = RECIPE_LABEL) -> bool:
    """True when ``tag`` exists and carries ``digest`` in ``label`` (its recipe)."""
    proc = docker(
        "image", "inspect", "--format", f'{{{{ index .Config.Labels "{label}" }}}}', tag,
        check=False,
    )  # fmt: skip
    return proc.returncode == 0 and proc.stdout.strip() == digest


def ensure_host_image(suite: str, log=print) -> str:
    """Return the tag of the host image for ``suite``, building it when missing."""
    check_suite(suite)
    sources = sources_for(suite)
    digest = recipe_hash(suite, sources)
    tag = host_image_tag(suite, digest)
    if image_ready(tag, digest):
        return tag
    LOCK.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        if os.fstat(fd).st_uid != os.geteuid():  # /run/lock is world-writable
            raise LabError(f"{LOCK} belongs to another user; remove it")
        fcntl.flock(fd, fcntl.LOCK_EX)  # one build at a time; a waiter then finds the image
        if not image_ready(tag, digest):
            log(f"building host image {tag} (debootstrap {suite}, about a minute)")
            _build(suite, sources, digest, tag)
    finally:
        os.close(fd)
    return tag


def _build(suite: str, sources: list[tuple[str, str]], digest: str, tag: str) -> None:
    if os.geteuid() != 0:
        raise LabError("building the lab's host image needs root (debootstrap, chroot)")
    if shutil.which("debootstrap") is None:
        raise LabError("debootstrap is not installed (apt-get install debootstrap)")
    work = Path(tempfile.mkdtemp(prefix="pgsteady-lab-host-", dir="/var/tmp"))  # 0700, new
    rootfs = work / "rootfs"
    try:
        argv = ["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}"]
        if KEYRING.exists():
            argv.append(f"--keyring={KEYRING}")
        proc = run([*argv, suite, str(rootfs), local_mirror()], check=False,
                   timeout=BUILD_TIMEOUT_S)  # fmt: skip
        if proc.returncode != 0:
            raise LabError(f"debootstrap {suite} failed:\n{(proc.stdout + proc.stderr)[-3000:]}")
        _shape(rootfs, sources)
        _import(rootfs, suite, digest, tag, work)
    finally:
        _remove_tree(work)


def _shape(rootfs: Path, sources: list[tuple[str, str]]) -> None:
    """Configure the rootfs: sshd, apt sources, no identity of its own, no caches."""
    for path, content in IMAGE_FILES.items():
        target = rootfs / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
        target.chmod(0o644)
    for key in (rootfs / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    (rootfs / "etc/apt/sources.list").unlink(missing_ok=True)
    for name, text in sources:
        dest = rootfs / "etc/apt" / ("sources.list" if name == "sources.list" else
                                     f"sources.list.d/{name}")  # fmt: skip
        dest.write_text(text)
        dest.chmod(0o644)
    # Each host gets its own machine id on first boot; docker provides name and resolver.
    (rootfs / "etc/machine-id").write_text("")
    (rootfs / "var/lib/dbus/machine-id").unlink(missing_ok=True)
    (rootfs / "etc/hostname").unlink(missing_ok=True)
    (rootfs / "etc/resolv.conf").write_text("")
    for pattern in ("var/lib/apt/lists/*", "var/cache/apt/*.bin", "usr/share/doc/*",
                    "usr/share/man/*", "usr/share/locale/*", "tmp/*", "var/tmp/*"):  # fmt: skip
        for path in rootfs.glob(pattern):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.name != "lock":
                path.unlink()


def _import(rootfs: Path, suite: str, digest: str, tag: str, work: Path) -> None:
    """``tar | docker import``, then a metadata-only build adds stop signal and label."""
    tar = subprocess.Popen(
        ["tar", "--numeric-owner", "-C", str(rootfs), "--exclude=./dev/*", "--exclude=./proc/*",
         "--exclude=./sys/*", "-c", "."],
        stdout=subprocess.PIPE,
    )  # fmt: skip
    imp = subprocess.run(
        [DOCKER, "import", "--change", 'CMD ["/sbin/init"]', "--change", "ENV container=docker",
         "--message", f"pgsteady lab host {suite}", "-", f"{tag}-base"],
        stdin=tar.stdout, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, check=False,
    )  # fmt: skip
    assert tar.stdout is not None
    tar.stdout.close()
    if tar.wait() != 0 or imp.returncode != 0:
        raise LabError(f"docker import of the host rootfs failed: {imp.stderr[-2000:]}")
    context = work / "context"
    context.mkdir()
    # systemd shuts down cleanly on SIGRTMIN+3: `docker stop`/`docker restart` is a reboot.
    (context / "Dockerfile").write_text(
        f"FROM {tag}-base\nSTOPSIGNAL SIGRTMIN+3\nLABEL {RECIPE_LABEL}={digest}\n"
    )
    proc = run([DOCKER, "build", "--quiet", "--network", "none", "-t", tag, str(context)],
               check=False)  # fmt: skip
    docker("rmi", f"{tag}-base", check=False)
    if proc.returncode != 0 or not image_ready(tag, digest):
        raise LabError(f"labelling the host image failed: {proc.stderr[-2000:]}")


def _remove_tree(work: Path) -> None:
    """Unmount what debootstrap may have left mounted below ``work``, then remove it."""
    prefix = f"{work}/"
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    for mnt in sorted((m for m in mounts if m.startswith(prefix)), reverse=True):
        run(["umount", "-l", mnt], check=False)
    run(["rm", "-rf", "--one-file-system", str(work)], check=False)
