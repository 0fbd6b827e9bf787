"""Unit tests for pgsteady.stack.image: mirror parsing, recipe hash, tags."""

from __future__ import annotations

import re
import subprocess

import pytest

from pgsteady.settings import HostFacts, SettingsError, build_settings
from pgsteady.stack import image
from pgsteady.stack.image import (
    RECIPE_LABEL,
    SUITES,
    debian_mirror,
    debian_recipe,
    debian_security_mirror,
    image_tag,
    minor_releases_behind,
    recipe_hash,
    registry_image,
    shipped_files,
    suite_for,
    upstream_version,
)

MAIN = "http://mirror.example/debian"
SECURITY = "http://mirror.example/debian-security"

DEB822_DEBIAN = f"""\
Types: deb
# a comment inside a stanza
URIs: {MAIN}
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: {SECURITY}
Suites: bookworm-security
Components: main
"""


# --- suites and versions ----------------------------------------------------------


def test_suites() -> None:
    assert SUITES == {15: "bookworm", 17: "trixie"}
    assert suite_for(15) == "bookworm"
    assert suite_for(17) == "trixie"


@pytest.mark.parametrize("bad", [16, 14, 0, "17", True, None, 17.0])
def test_suite_for_rejects_unknown_version(bad: object) -> None:
    with pytest.raises(ValueError) as err:
        suite_for(bad)  # type: ignore[arg-type]
    msg = str(err.value)
    assert "postgres_version" in msg
    assert repr(bad) in msg
    assert "'debian'" in msg
    assert "15, 17" in msg


def test_registry_image() -> None:
    assert registry_image(17) == "postgres:17"
    assert registry_image(16) == "postgres:16"
    with pytest.raises(ValueError, match="postgres_version"):
        registry_image(0)


# --- mirror -----------------------------------------------------------------------


def test_mirror_from_deb822() -> None:
    assert debian_mirror("", [DEB822_DEBIAN]) == MAIN


def test_mirror_deb822_security_first_is_skipped() -> None:
    text = f"""\
Types: deb
URIs: {SECURITY}
Suites: trixie-security
Components: main

Types: deb
URIs: {MAIN}/
Suites: trixie trixie-updates
Components: main contrib
"""
    assert debian_mirror("", [text]) == MAIN


def test_mirror_deb822_skips_deb_src_disabled_updates_and_comments() -> None:
    text = """\
Types: deb-src
URIs: http://src.example/debian
Suites: bookworm

Types: deb
URIs: http://disabled.example/debian
Suites: bookworm
Enabled: no

Types: deb
URIs: http://updates.example/debian
Suites: bookworm-updates bookworm-backports

# Types: deb
# URIs: http://commented.example/debian
# Suites: bookworm

types: deb deb-src
uris:
 http://folded.example/debian
suites: bookworm
"""
    assert debian_mirror("", [text]) == "http://folded.example/debian"


def test_mirror_from_one_line_sources_list() -> None:
    text = f"""\
# deb http://commented.example/debian bookworm main
deb-src {MAIN} bookworm main
deb http://security.example.org/debian-security bookworm-security main
deb [arch=amd64 signed-by=/usr/share/keyrings/x.gpg] {MAIN} bookworm main  # trailing
deb {MAIN} bookworm-updates main
"""
    assert debian_mirror(text, []) == MAIN


def test_mirror_one_line_old_security_style_and_cdrom_skipped() -> None:
    text = """\
deb cdrom:[Debian GNU/Linux 12]/ bookworm main
deb http://security.example.org/ bookworm/updates main
deb https://mirror.example/debian/ bookworm main
"""
    assert debian_mirror(text, []) == "https://mirror.example/debian"


def test_mirror_sources_list_comes_before_deb822() -> None:
    assert (
        debian_mirror(
            f"deb {MAIN} bookworm main\n", [DEB822_DEBIAN.replace(MAIN, "http://b.example/d")]
        )
        == MAIN
    )


def test_mirror_second_deb822_file_used_when_first_has_none() -> None:
    only_security = f"Types: deb\nURIs: {SECURITY}\nSuites: bookworm-security\n"
    assert debian_mirror("", [only_security, DEB822_DEBIAN]) == MAIN


@pytest.mark.parametrize(
    ("sources_list", "deb822"),
    [
        ("", []),
        ("# deb http://mirror.example/debian bookworm main\n", []),
        (f"deb {SECURITY} bookworm-security main\ndeb-src {MAIN} bookworm main\n", []),
        ("", [f"Types: deb\nURIs: {SECURITY}\nSuites: bookworm-security\n"]),
    ],
)
def test_mirror_none_found(sources_list: str, deb822: list[str]) -> None:
    with pytest.raises(ValueError, match="no main archive"):
        debian_mirror(sources_list, deb822)


# --- recipe hash and tags ---------------------------------------------------------


def test_recipe_hash_is_stable_sha256() -> None:
    h = recipe_hash(17, "trixie", b"script", b"entrypoint")
    assert re.fullmatch(r"[0-9a-f]{64}", h)
    assert h == recipe_hash(17, "trixie", b"script", b"entrypoint")


@pytest.mark.parametrize(
    "changed",
    [
        (15, "trixie", b"script", b"entrypoint"),
        (17, "bookworm", b"script", b"entrypoint"),
        (17, "trixie", b"scripT", b"entrypoint"),
        (17, "trixie", b"script", b"entrypoinT"),
        (17, "trixie", b"script\n", b"entrypoint"),
        # Moving a byte from one file to the other changes the hash too.
        (17, "trixie", b"scripte", b"ntrypoint"),
    ],
)
def test_recipe_hash_changes_with_any_byte(changed: tuple[int, str, bytes, bytes]) -> None:
    assert recipe_hash(*changed) != recipe_hash(17, "trixie", b"script", b"entrypoint")


def test_image_tag() -> None:
    h = recipe_hash(17, "trixie", b"s", b"e")
    assert image_tag(17, h) == f"pgsteady/postgres:17-debian-{h[:12]}"
    assert re.fullmatch(r"pgsteady/postgres:15-debian-[0-9a-f]{12}", image_tag(15, h))


@pytest.mark.parametrize("bad", ["", "abc", "XYZ0123456789", "0123456789AB"])
def test_image_tag_rejects_non_hex(bad: str) -> None:
    with pytest.raises(ValueError, match="recipe_hash"):
        image_tag(17, bad)


def test_label_name() -> None:
    assert RECIPE_LABEL == "io.pgsteady.recipe"


# --- shipped files ----------------------------------------------------------------


def test_shipped_files_exist() -> None:
    files = shipped_files()
    assert files.build_script.name == "build-debian-image.sh"
    assert files.entrypoint.name == "docker-entrypoint.sh"
    assert files.build_script.is_file()
    assert files.entrypoint.is_file()
    assert files.build_script.read_bytes().startswith(b"#!/bin/sh\n")
    assert files.entrypoint.read_bytes().startswith(b"#!/bin/bash\n")


def test_debian_recipe_follows_shipped_files() -> None:
    files = shipped_files()
    recipe = debian_recipe(17)
    expected = recipe_hash(
        17, "trixie", files.build_script.read_bytes(), files.entrypoint.read_bytes()
    )
    assert recipe == (17, "trixie", expected, image_tag(17, expected))
    assert debian_recipe(15).tag != recipe.tag
    with pytest.raises(ValueError, match="postgres_version"):
        debian_recipe(16)


def test_uid_matches_official_image() -> None:
    assert (image.POSTGRES_UID, image.POSTGRES_GID) == (999, 999)


# --- build script argument checking (exits before touching docker or debootstrap) ---

GOOD_ARGS = ["17", "trixie", MAIN, SECURITY, "pgsteady/postgres:17-debian-0123456789ab", "a" * 64]


@pytest.mark.parametrize(
    ("index", "value", "message"),
    [
        (0, "17x", "VERSION"),
        (1, "Trixie", "SUITE"),
        (2, "ftp://mirror.example/debian", "MIRROR"),
        (2, "http://mirror.example/deb ian", "MIRROR"),
        (3, "ftp://mirror.example/debian-security", "SECURITY_MIRROR"),
        (3, "", "SECURITY_MIRROR"),
        (4, "Bad Tag", "TAG"),
        (5, "A" * 64, "RECIPE_HASH"),
        (5, "a" * 12, "RECIPE_HASH"),
    ],
)
def test_build_script_rejects_bad_arguments(index: int, value: str, message: str) -> None:
    args = list(GOOD_ARGS)
    args[index] = value
    proc = subprocess.run(
        ["sh", str(shipped_files().build_script), *args], capture_output=True, text=True
    )
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr


@pytest.mark.parametrize(
    "args",
    [
        [],
        GOOD_ARGS[:5],
        [*GOOD_ARGS, "relative/dir"],
        [*GOOD_ARGS, "/var/lib/../tmp/x"],
        [*GOOD_ARGS, "/var/lib/./x"],
    ],
)
def test_build_script_usage(args: list[str]) -> None:
    proc = subprocess.run(
        ["sh", str(shipped_files().build_script), *args], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert "usage" in proc.stderr or "WORKDIR" in proc.stderr


@pytest.mark.parametrize(
    ("shell", "name"), [("sh", "build-debian-image.sh"), ("bash", "docker-entrypoint.sh")]
)
def test_shipped_scripts_parse(shell: str, name: str) -> None:
    path = shipped_files().build_script.parent / name
    assert subprocess.run([shell, "-n", str(path)], check=False).returncode == 0


# --- security suite, package versions -----------------------------------------------


def test_security_mirror_from_deb822() -> None:
    assert debian_security_mirror("", [DEB822_DEBIAN]) == SECURITY


def test_security_mirror_from_one_line_list_skips_src_and_disabled() -> None:
    text = f"""\
deb {MAIN} bookworm main
deb-src http://src.example/debian-security bookworm-security main
# deb http://commented.example/debian-security bookworm-security main
deb [signed-by=/usr/share/keyrings/x.gpg] {SECURITY}/ bookworm-security main
"""
    assert debian_security_mirror(text, []) == SECURITY


def test_security_mirror_is_never_derived_from_the_main_mirror() -> None:
    with pytest.raises(ValueError, match="security"):
        debian_security_mirror(f"deb {MAIN} bookworm main\n", [])
    disabled = DEB822_DEBIAN.replace(
        "Suites: bookworm-security", "Suites: bookworm-security\nEnabled: no"
    )
    with pytest.raises(ValueError, match="security"):
        debian_security_mirror("", [disabled])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("17.6-0+deb13u1", (17, 6)),
        ("15.20-0+deb12u1", (15, 20)),
        ("17.2-1.pgdg120+1", (17, 2)),
        ("17.6 (Debian 17.6-0+deb13u1)", (17, 6)),
        ("1:16.4-1", (16, 4)),
        ("18beta1-1", None),
        ("18.0~rc1-1", (18, 0)),
        ("", None),
        ("garbage", None),
    ],
)
def test_upstream_version(text: str, expected: tuple[int, int] | None) -> None:
    assert upstream_version(text) == expected


@pytest.mark.parametrize(
    ("running", "available", "behind"),
    [
        ("15.18-0+deb12u1", "15.20-0+deb12u1", 2),
        ("17.6 (Debian 17.6-0+deb13u1)", "17.6-0+deb13u1", 0),
        ("17.7-0+deb13u1", "17.6-0+deb13u1", 0),
        ("16.4-1", "17.6-0+deb13u1", None),
        ("unknown", "17.6-0+deb13u1", None),
    ],
)
def test_minor_releases_behind(running: str, available: str, behind: int | None) -> None:
    assert minor_releases_behind(running, available) == behind


# --- settings: restore-on-empty only where the image honours it ---------------------

FACTS = HostFacts(ram_mb=4096, cpus=2)


@pytest.mark.parametrize("source", ["registry", "auto", "archive"])
def test_restore_on_empty_refused_for_images_that_ignore_it(source: str) -> None:
    data: dict[str, object] = {
        "postgres_image_source": source,
        "postgres_restore_on_empty": True,
    }
    if source == "archive":
        data.update(postgres_image_archive="/srv/pg.tar", postgres_image="postgres:17")
    with pytest.raises(SettingsError) as err:
        build_settings(data, FACTS)
    text = str(err.value)
    assert "postgres_restore_on_empty = True" in text
    assert repr(source) in text
    assert "'debian'" in text
    assert "cannot read" in text


def test_restore_on_empty_accepted_with_the_debian_image() -> None:
    s = build_settings(
        {"postgres_image_source": "debian", "postgres_restore_on_empty": True}, FACTS
    )
    assert s.postgres_restore_on_empty


def test_security_mirror_setting_is_validated() -> None:
    with pytest.raises(SettingsError, match="postgres_debian_security_mirror"):
        build_settings({"postgres_debian_security_mirror": "ftp://x/debian-security"}, FACTS)
    s = build_settings({"postgres_debian_security_mirror": "file:/srv/debian-security"}, FACTS)
    assert s.postgres_debian_security_mirror == "file:/srv/debian-security"
