"""The Python dependencies are locked with hashes and installed only through the lock."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
LOCKS = ("requirements/bootstrap.txt", "requirements/lock.txt")
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)$")
_HASH = re.compile(r"^--hash=sha256:[0-9a-f]{64}$")


def requirements(path: str) -> dict[str, tuple[str, list[str]]]:
    """``{canonical name: (version, [--hash=... options])}`` of a pip-compile file."""
    text = (REPO / path).read_text()
    logical = re.sub(r"\\\n", " ", text)  # join continuation lines
    out: dict[str, tuple[str, list[str]]] = {}
    for line in logical.splitlines():
        line = line.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        spec, *options = line.split()
        pin = _PIN.match(spec)
        assert pin, f"{path}: {line!r} is not an exact 'name==version' pin"
        for option in options:
            assert _HASH.match(option), f"{path}: {spec}: {option!r} is not a sha256 hash"
        assert options, f"{path}: {spec} has no --hash=sha256:"
        name = canonicalize_name(pin[1])
        assert name not in out, f"{path}: {name} twice"
        out[name] = (pin[2], options)
    return out


@pytest.mark.parametrize("path", LOCKS)
def test_every_locked_requirement_is_pinned_with_a_hash(path: str) -> None:
    locked = requirements(path)
    assert locked, f"{path} pins nothing"
    for name, (_, hashes) in locked.items():
        assert len(set(hashes)) == len(hashes), f"{path}: {name} repeats a hash"


def test_pip_and_setuptools_are_locked() -> None:
    boot = requirements("requirements/bootstrap.txt")
    assert set(boot) == {"pip", "setuptools"}
    build = tomllib.loads((REPO / "pyproject.toml").read_text())["build-system"]["requires"]
    for spec in map(Requirement, build):  # the backend pip builds pgsteady with
        name = canonicalize_name(spec.name)
        assert name in boot and spec.specifier.contains(boot[name][0]), (spec, boot)


def test_every_runtime_and_test_dependency_is_in_the_lock_at_its_version() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = [*project["dependencies"], *project["optional-dependencies"]["test"]]
    locked = requirements("requirements/lock.txt")
    for spec in map(Requirement, declared):
        name = canonicalize_name(spec.name)
        assert name in locked, f"{spec} (pyproject.toml) is missing from requirements/lock.txt"
        version = locked[name][0]
        assert spec.specifier.contains(version), (
            f"{spec} (pyproject.toml) but requirements/lock.txt pins {version}: run make lock"
        )


def test_the_virtualenv_installs_only_through_the_hashed_lock() -> None:
    makefile = (REPO / "Makefile").read_text()
    rule = re.search(r"^\$\(STAMP\):.*?(?=^\S|\Z)", makefile, re.S | re.M)
    assert rule, "no $(STAMP) rule in the Makefile"
    installs = [line.strip() for line in rule[0].splitlines() if "pip install" in line]
    assert installs, rule[0]
    for line in installs:
        assert "--require-hashes" in line or "--no-deps" in line, line
        assert "--upgrade" not in line and " -c " not in line, line
    assert any("--no-deps" in line and "--no-build-isolation" in line for line in installs)
    for path in LOCKS:
        assert f"-r {path}" in rule[0] and path in rule[0].splitlines()[0]
