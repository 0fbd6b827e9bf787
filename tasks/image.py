"""The Postgres image: pulled, built from Debian packages, or loaded from an archive.

Whatever the source, the result is tagged ``Settings.image_alias``, the tag the compose
file runs; compose recreates the container when the image behind that tag changes.

A normal converge never rebuilds or pulls an image that is present. Security and minor
updates arrive on purpose: ``make update-image`` runs the deploy with the data flag
``pgsteady_refresh_image=1``, which rebuilds the Debian image from the current (signed)
packages or pulls the registry tag again; the stack is then rolled by ``pgsteady-ctl up``
only when the image behind the alias changed.

With the Debian source, ``postgres_image_archive`` may name a seed: a ``docker save`` of
pgsteady's Debian image made elsewhere (``make lab`` ships one). It is loaded before the
build when the recipe's tag is missing, so the build finds its recipe and stops at once;
a tarball of another recipe only costs the load (the build then runs as usual).
"""

from __future__ import annotations

import posixpath
import shlex
from collections.abc import Callable

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.api.exceptions import DeployError
from pyinfra.api.operation import OperationMeta
from pyinfra.facts.files import FileContents, Sha256File
from pyinfra.operations import apt, files, server

from pgsteady.settings import Settings
from pgsteady.stack.image import (
    BUILD_DIR,
    CLUSTER_PACKAGES,
    RECIPE_LABEL,
    debian_mirror,
    debian_recipe,
    debian_security_mirror,
    shipped_files,
)
from pgsteady.stack.image import SUITES as DEBIAN_SUITES
from tasks.facts import AptSources, DockerInspect


def _image(name: str) -> dict | None:
    return host.get_fact(DockerInspect, kind="image", object_id=name)


def _labels(image: dict | None) -> dict:
    return ((image or {}).get("Config") or {}).get("Labels") or {}


def _upload_recipe(s: Settings) -> None:
    shipped = shipped_files()
    for path in (shipped.build_script, shipped.entrypoint):
        files.put(
            name=f"Upload {path.name}",
            src=str(path),
            dest=f"{s.layout.image}/{path.name}",
            mode="755",
        )


def _apt_mirror(
    configured: str | None, find: Callable[[str, list[str]], str], why: str, hint: str
) -> str:
    """The configured mirror, else the one ``find`` reads from the host's apt sources.

    ``why`` and ``hint`` complete the error when the sources name none.
    """
    if configured:
        return configured
    sources = host.get_fact(AptSources)
    try:
        return find(sources["list"][0], sources["deb822"])
    except ValueError as exc:
        raise DeployError(f"postgres_image_source=debian {why}: {exc}; {hint}") from None


def _mirror(s: Settings) -> str:
    return _apt_mirror(
        s.postgres_debian_mirror,
        debian_mirror,
        "needs a Debian mirror",
        "set postgres_debian_mirror (e.g. on Ubuntu hosts)",
    )


def _security_mirror(s: Settings) -> str:
    return _apt_mirror(
        s.postgres_debian_security_mirror,
        debian_security_mirror,
        "builds with security updates",
        "set postgres_debian_security_mirror",
    )


def _has_mirror(s: Settings) -> bool:
    try:
        _mirror(s)
        _security_mirror(s)
    except DeployError:
        return False
    return True


def extra_packages(s: Settings) -> tuple[str, ...]:
    """The packages a cluster member's image adds (none on a single host)."""
    return CLUSTER_PACKAGES if s.postgres_cluster_name is not None else ()


def refresh_requested() -> bool:
    """True when this run was asked to refresh the image (``make update-image``)."""
    return str(host.data.get("pgsteady_refresh_image") or "").lower() in ("1", "true", "yes")


def trusted_load(archive: str, what: str) -> str:
    """Shell that ``docker load``s ``archive`` only if root may trust it, else exits 1.

    The file is opened first (fd 3); then the opened file must be the regular file the
    resolved path names (same device and inode), owned by root and not writable by group
    or others, its directory likewise, and every directory above it too (a root-owned
    sticky one such as /tmp allowed, as pgsteady-ctl's ``trusted``). Docker reads the
    descriptor that was checked: a file swapped in after the checks is never loaded.
    """
    a = shlex.quote(archive)
    d = shlex.quote(posixpath.dirname(archive) or "/")
    b = shlex.quote(posixpath.basename(archive))
    dir_ok = (
        '_pgs_dir_ok() { _pgs_i=$(stat -c "%u %a" -- "$1") && [ "${_pgs_i% *}" = 0 ] && '
        '{ [ $((0${_pgs_i#* } & 022)) = 0 ] || { [ "$2" = above ] && '
        "[ $((0${_pgs_i#* } & 01000)) != 0 ]; }; }; }; "
    )
    checks = " && ".join(
        [
            f"[ -f {a} ] && [ ! -L {a} ] && exec 3< {a}",
            f'_pgs_d=$(cd -P -- {d} && pwd) && _pgs_f="${{_pgs_d%/}}/"{b}',
            '[ "$(stat -c %d:%i -- "$_pgs_f")" = "$(stat -L -c %d:%i /dev/fd/3)" ]',
            '[ -f /dev/fd/3 ] && [ "$(stat -L -c %u /dev/fd/3)" = 0 ]',
            "[ $((0$(stat -L -c %a /dev/fd/3) & 022)) = 0 ]",
            '_pgs_dir_ok "$_pgs_d" parent && _pgs_ok=1',
            'while [ "$_pgs_d" != / ]; do _pgs_d=$(dirname -- "$_pgs_d"); '
            '_pgs_dir_ok "$_pgs_d" above || { _pgs_ok=; break; }; done',
            '[ -n "$_pgs_ok" ]',
        ]
    )
    refuse = (
        f"echo '{what}: {archive} is not a root-owned file (in root-owned directories up to /) "
        "that no other uid can write; refusing to load it' >&2; exit 1"
    )
    return f"{dir_ok}_pgs_ok=; if {checks}; then docker load -q <&3; else {refuse}; fi"


def _seed_command(s: Settings) -> str:
    """Load the seed archive when the recipe's tag is missing (never on a refresh, which
    must build from the current packages), only as :func:`trusted_load` allows; otherwise
    the deploy stops."""
    archive = s.postgres_image_archive
    if not archive or refresh_requested():
        return ""
    recipe = debian_recipe(s.postgres_version)
    label = f'{{{{ index .Config.Labels "{RECIPE_LABEL}" }}}}'
    return (
        f"if [ \"$(docker image inspect -f '{label}' {recipe.tag} 2>/dev/null)\" != "
        f"{recipe.recipe_hash} ]; then {trusted_load(archive, 'postgres_image_archive')}; "
        "fi && "
    )


def _build_command(s: Settings) -> str:
    """Build the recipe's image (the script exits at once if it exists) and tag the alias."""
    recipe = debian_recipe(s.postgres_version, extra_packages(s))
    refresh = "PGSTEADY_REFRESH=1 " if refresh_requested() else ""
    if extra_packages(s):
        refresh += f"PGSTEADY_EXTRA_PACKAGES='{' '.join(extra_packages(s))}' "
    return (
        f"{_seed_command(s)}{refresh}{s.layout.image}/build-debian-image.sh {s.postgres_version} "
        f"{recipe.suite} '{_mirror(s)}' '{_security_mirror(s)}' {recipe.tag} "
        f"{recipe.recipe_hash} {BUILD_DIR} && "
        f"docker tag {recipe.tag} {s.image_alias} && {_prune_command(s, recipe.tag)}"
    )


def _prune_command(s: Settings, keep: str) -> str:
    """Untag older recipes of this version; images still in use keep their other tags."""
    repo = keep.split(":")[0]
    return (
        f"docker images --format '{{{{.Repository}}}}:{{{{.Tag}}}}' {repo} | "
        f"grep -e ':{s.postgres_version}-debian-' | grep -vx '{keep}' | "
        "xargs -r docker rmi >/dev/null 2>&1 || true"
    )


def _pull_command(s: Settings) -> str:
    if refresh_requested():
        return f"docker pull {s.registry_image} && docker tag {s.registry_image} {s.image_alias}"
    return (
        f"{{ docker image inspect {s.registry_image} >/dev/null 2>&1 || "
        f"docker pull {s.registry_image}; }} && docker tag {s.registry_image} {s.image_alias}"
    )


def _alias_is_current(s: Settings, allow_registry: bool, allow_debian: bool) -> bool:
    if refresh_requested():
        return False
    alias = _image(s.image_alias)
    if not alias:
        return False
    if allow_debian:
        recipe = debian_recipe(s.postgres_version, extra_packages(s)).recipe_hash
        if _labels(alias).get(RECIPE_LABEL) == recipe:
            return True
    if allow_registry:
        registry = _image(s.registry_image)
        return bool(registry) and registry.get("Id") == alias.get("Id")
    return False


def _build_prerequisites(s: Settings) -> None:
    # The keyring debootstrap checks every Release file against (--force-check-gpg).
    apt.packages(
        name="Install debootstrap and the Debian archive keyring",
        packages=["debootstrap", "debian-archive-keyring"],
    )
    _upload_recipe(s)


def _from_debian(s: Settings) -> list[OperationMeta]:
    if _alias_is_current(s, allow_registry=False, allow_debian=True):
        return []
    _build_prerequisites(s)
    recipe = debian_recipe(s.postgres_version, extra_packages(s))
    return [
        server.shell(
            name=f"Build {recipe.tag} from Debian {recipe.suite} packages",
            commands=[_build_command(s)],
        )
    ]


def _from_registry(s: Settings) -> list[OperationMeta]:
    if _alias_is_current(s, allow_registry=True, allow_debian=False):
        return []
    return [server.shell(name=f"Pull {s.registry_image}", commands=[_pull_command(s)])]


def _auto(s: Settings) -> list[OperationMeta]:
    """Registry first (a failed pull costs ~0.1 s offline), Debian packages otherwise.

    Sticky: once either image is in place it stays while it is current, so a registry
    that comes and goes does not flip the image under a running database.
    """
    if s.pgbackrest_enabled or s.metrics_enabled or extra_packages(s):
        return _from_debian(s)  # pgBackRest, the exporters and Patroni: Debian image only
    if s.postgres_version not in DEBIAN_SUITES or not _has_mirror(s):
        return _from_registry(s)
    if _alias_is_current(s, allow_registry=True, allow_debian=True):
        return []
    _build_prerequisites(s)
    return [
        server.shell(
            name=f"Pull {s.registry_image}, else build it from Debian packages",
            commands=[
                f"if {_pull_command(s)}; then :; else "
                "echo 'registry unreachable: building from Debian packages' >&2 && "
                f"{_build_command(s)}; fi"
            ],
        )
    ]


def _load_archive(s: Settings) -> list[OperationMeta]:
    archive = s.postgres_image_archive
    marker = f"{s.layout.image}/archive.sha256"
    digest = host.get_fact(Sha256File, path=archive)
    if digest is None:
        raise DeployError(f"postgres_image_archive = {archive!r}: no such file on {host.name}")
    recorded = host.get_fact(FileContents, path=marker)
    if recorded and recorded[0].strip() == digest and _image(s.image_alias):
        return []
    return [
        server.shell(
            name=f"Load {archive}",
            commands=[
                trusted_load(archive, "postgres_image_archive"),
                f"docker tag {s.postgres_image} {s.image_alias}",
                f"echo {digest} > {marker}",
            ],
        )
    ]


@deploy("Postgres image")
def ensure(s: Settings) -> list[OperationMeta]:
    """Make ``s.image_alias`` the right image; return the operations that may change it."""
    files.directory(name="Create the image recipe directory", path=s.layout.image, mode="755")
    source = s.postgres_image_source
    if source == "debian":
        return _from_debian(s)
    if source == "registry":
        return _from_registry(s)
    if source == "auto":
        return _auto(s)
    return _load_archive(s)
