"""Postgres image naming and the recipe of the host-built Debian image.

Pure functions: no host, no Docker. The deploy uploads the two shipped files
(:func:`shipped_files`) to the host and runs the build script with the values
computed here; the script skips the build when an image with the same recipe
label already exists under the tag, so a converged host is never rebuilt.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlsplit

#: Postgres major version -> the Debian suite that packages it.
SUITES: dict[int, str] = {15: "bookworm", 17: "trixie"}

IMAGE_REPOSITORY = "pgsteady/postgres"
REGISTRY_REPOSITORY = "postgres"
#: Image label holding the full recipe hash (sha256 hex).
RECIPE_LABEL = "io.pgsteady.recipe"
#: Image label holding the installed postgresql-N Debian package version.
PACKAGE_LABEL = "io.pgsteady.postgres-package"
#: Image label holding a digest of every installed package version.
PACKAGES_LABEL = "io.pgsteady.packages"
#: Root-only parent of the image builds on the host (checked by the build script).
BUILD_DIR = "/var/lib/pgsteady/image-build"
#: Keyring every Release file of the build must be signed with.
ARCHIVE_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
#: uid/gid of the postgres user in the built image, as in the official image.
POSTGRES_UID = 999
POSTGRES_GID = 999
#: Number of hex digits of the recipe hash used in the image tag.
TAG_HASH_LENGTH = 12

_FILES_DIR = Path(__file__).resolve().parents[2] / "files" / "image"
_HEX = re.compile(r"^[0-9a-f]+$")
# Suites that are not the main archive: security, updates, backports, proposed ...
_SIDE_SUITE = re.compile(r"[-/](security|updates|backports|proposed-updates|proposed)$")
_URI_SCHEMES = ("http://", "https://", "file:")


class ShippedFiles(NamedTuple):
    """Local paths of the files the deploy uploads to build the image."""

    build_script: Path
    entrypoint: Path


def shipped_files() -> ShippedFiles:
    """Return the paths of ``build-debian-image.sh`` and ``docker-entrypoint.sh``."""
    return ShippedFiles(
        build_script=_FILES_DIR / "build-debian-image.sh",
        entrypoint=_FILES_DIR / "docker-entrypoint.sh",
    )


class DebianRecipe(NamedTuple):
    """Everything the deploy passes to the build script for one Postgres version."""

    version: int
    suite: str
    recipe_hash: str
    tag: str


#: What a cluster member's image adds (issue 15): Patroni with its etcd client, etcd
#: itself and HAProxy, all from the same signed suite.
CLUSTER_PACKAGES = ("patroni", "python3-etcd", "etcd-server", "etcd-client", "haproxy")


def debian_recipe(version: int, extra_packages: tuple[str, ...] = ()) -> DebianRecipe:
    """Compute suite, recipe hash and tag for ``version`` (plus ``extra_packages``, the
    cluster flavour) from the shipped files."""
    suite = suite_for(version)
    files = shipped_files()
    digest = recipe_hash(
        version,
        suite,
        files.build_script.read_bytes(),
        files.entrypoint.read_bytes(),
        extra_packages,
    )
    return DebianRecipe(version, suite, digest, image_tag(version, digest))


def suite_for(version: int) -> str:
    """Return the Debian suite packaging Postgres ``version``, or raise ValueError."""
    if isinstance(version, bool) or not isinstance(version, int) or version not in SUITES:
        accepted = ", ".join(str(v) for v in sorted(SUITES))
        raise ValueError(
            f"postgres_version: {version!r} is not available for postgres_image_source "
            f"'debian'; accepted: {accepted}"
        )
    return SUITES[version]


def registry_image(version: int) -> str:
    """Return the official registry image reference, e.g. ``postgres:17``."""
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(f"postgres_version: {version!r} is not a Postgres major version")
    return f"{REGISTRY_REPOSITORY}:{version}"


def recipe_hash(
    version: int,
    suite: str,
    script_bytes: bytes,
    entrypoint_bytes: bytes,
    extra_packages: tuple[str, ...] = (),
) -> str:
    """Return the sha256 hex digest identifying one build recipe.

    Each part is length-prefixed, so moving bytes between parts changes the hash.
    The mirror is deliberately not part of it: a mirror change does not rebuild.
    ``extra_packages`` is a part only when there are any, so an image without them
    keeps the hash it always had.
    """
    digest = hashlib.sha256(b"pgsteady-debian-image/1\0")
    parts = [str(version).encode(), suite.encode(), script_bytes, entrypoint_bytes]
    if extra_packages:
        parts.append(" ".join(extra_packages).encode())
    for part in parts:
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


def image_tag(version: int, recipe_hash: str) -> str:
    """Return the local image tag, e.g. ``pgsteady/postgres:17-debian-0123456789ab``."""
    if len(recipe_hash) < TAG_HASH_LENGTH or not _HEX.match(recipe_hash):
        raise ValueError(f"recipe_hash: {recipe_hash!r} is not a lowercase hex digest")
    return f"{IMAGE_REPOSITORY}:{version}-debian-{recipe_hash[:TAG_HASH_LENGTH]}"


def _is_main_archive(uri: str, suite: str) -> bool:
    """True for a plain-suite entry of a usable scheme that is not a security archive."""
    if not uri.lower().startswith(_URI_SCHEMES) or _SIDE_SUITE.search(suite):
        return False
    parts = urlsplit(uri.lower())
    return not (parts.hostname or "").startswith("security.") and "security" not in parts.path


def _one_line_entries(text: str) -> list[tuple[str, str]]:
    """(uri, suite) of every ``deb`` line in a one-line-style sources.list."""
    entries: list[tuple[str, str]] = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        # Drop a "[ key=value ... ]" options block before splitting on whitespace.
        line = re.sub(r"\[[^\]]*\]", " ", line)
        fields = line.split()
        if len(fields) >= 3 and fields[0] == "deb":
            entries.append((fields[1], fields[2]))
    return entries


def _deb822_stanzas(text: str) -> list[dict[str, str]]:
    """Parse deb822 text into stanzas of lower-cased field name -> folded value."""
    stanzas: list[dict[str, str]] = []
    current: dict[str, str] = {}
    key: str | None = None
    for raw in [*text.splitlines(), ""]:
        if raw.startswith("#"):
            continue
        if not raw.strip():
            if current:
                stanzas.append(current)
            current, key = {}, None
        elif raw[0] in " \t":
            if key is not None:
                current[key] += " " + raw.strip()
        elif ":" in raw:
            name, value = raw.split(":", 1)
            key = name.strip().lower()
            current[key] = value.strip()
    return stanzas


def _deb822_entries(text: str) -> list[tuple[str, str]]:
    """(uri, suite) of every enabled ``deb`` stanza in a deb822 ``.sources`` file."""
    entries: list[tuple[str, str]] = []
    for stanza in _deb822_stanzas(text):
        if stanza.get("enabled", "yes").lower() == "no":
            continue
        if "deb" not in stanza.get("types", "").split():
            continue
        for uri in stanza.get("uris", "").split():
            entries.extend((uri, suite) for suite in stanza.get("suites", "").split())
    return entries


def _entries(sources_list_text: str, deb822_texts: list[str]) -> list[tuple[str, str]]:
    entries = _one_line_entries(sources_list_text)
    for text in deb822_texts:
        entries.extend(_deb822_entries(text))
    return entries


def debian_security_mirror(sources_list_text: str, deb822_texts: list[str]) -> str:
    """Return the archive URI serving ``<suite>-security`` in the host's apt sources.

    Same inputs as :func:`debian_mirror`. Only an entry whose suite ends in
    ``-security`` counts (``deb-src``, disabled and commented entries are skipped);
    nothing is derived from the main mirror's host name. Raises ValueError when none.
    """
    for uri, suite in _entries(sources_list_text, deb822_texts):
        if uri.lower().startswith(_URI_SCHEMES) and suite.endswith("-security"):
            return uri.rstrip("/")
    raise ValueError(
        "debian security mirror: no 'deb URI SUITE-security' entry found in "
        "/etc/apt/sources.list or /etc/apt/sources.list.d/*.sources"
    )


def upstream_version(package_version: str) -> tuple[int, int] | None:
    """(major, minor) of a Postgres package version: ``17.6-0+deb13u1`` -> (17, 6).

    Also takes ``server_version`` text (``17.6 (Debian 17.6-0+deb13u1)``); None when
    the text does not start with MAJOR.MINOR (betas and unknown formats).
    """
    text = package_version.split(":", 1)[-1].strip()
    match = re.match(r"^(\d+)\.(\d+)(?![\d.]*(beta|rc))", text)
    return (int(match[1]), int(match[2])) if match else None


def minor_releases_behind(running: str, available: str) -> int | None:
    """How many minor releases ``running`` is behind ``available`` (0 when current).

    None when either version cannot be read or the majors differ.
    """
    run, avail = upstream_version(running), upstream_version(available)
    if run is None or avail is None or run[0] != avail[0]:
        return None
    return max(0, avail[1] - run[1])


def debian_mirror(sources_list_text: str, deb822_texts: list[str]) -> str:
    """Return the main archive URI configured in the host's apt sources.

    ``sources_list_text`` is ``/etc/apt/sources.list`` (one-line format, may be
    empty); ``deb822_texts`` are the ``/etc/apt/sources.list.d/*.sources`` files,
    in apt's (sorted) order. Source (``deb-src``), disabled and commented entries,
    security archives and -updates/-backports suites are skipped; the first
    remaining entry wins. Raises ValueError when there is none.
    """
    for uri, suite in _entries(sources_list_text, deb822_texts):
        if _is_main_archive(uri, suite):
            return uri.rstrip("/")
    raise ValueError(
        "debian mirror: no main archive ('deb URI SUITE' that is not security/updates) "
        "found in /etc/apt/sources.list or /etc/apt/sources.list.d/*.sources"
    )
