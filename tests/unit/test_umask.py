"""The secrets and keys pgsteady makes get their modes whatever the caller's umask: under
umask 000 (tests/conftest.py's ``loose_umask``) the CA key, the CA directories and the
host's generated passwords are still 0600/0700, never group- or world-readable."""

from __future__ import annotations

import subprocess
from pathlib import Path

from pgsteady.ca_store import load_or_create_ca
from pgsteady.settings import HostFacts, build_settings
from pgsteady.stack.compose import secret_names
from tasks import secrets
from tests.conftest import current_umask
from tests.support.pyinfra_plan import plan


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_the_suite_runs_with_umask_022_or_stricter() -> None:
    assert current_umask() & 0o022 == 0o022


def test_deploy_machine_ca_under_umask_000(tmp_path: Path, loose_umask: int) -> None:
    assert current_umask() == loose_umask == 0
    state = tmp_path / ".pgsteady" / "inv"
    load_or_create_ca(state, "inv")
    load_or_create_ca(state / "metrics-ca", "inv metrics")
    assert [mode(p) for p in (state.parent, state, state / "metrics-ca")] == [0o700] * 3
    assert mode(state / "ca.key") == mode(state / "metrics-ca" / "ca.key") == 0o600


def test_host_passwords_generated_under_umask_000(tmp_path: Path, loose_umask: int) -> None:
    """The converge's own generate commands, run by a shell whose umask is 000: each
    password file is 0600 from the moment it exists (the owner/mode operation after it
    only narrows the group), 40 characters, and its value is never in the command."""
    s = build_settings({"app_dir": str(tmp_path / "app")}, HostFacts(ram_mb=4096, cpus=2))
    (tmp_path / "app" / "secrets").mkdir(parents=True)
    _, p = plan(secrets.ensure, s, facts={"FileState": None, "NumericStat": None, "File": None})
    generate = [op for op in p.ops if op.name.startswith("Generate ")]
    assert [op.name for op in generate] == [f"Generate {n}" for n in secret_names(s)]
    for op in generate:
        subprocess.run(["sh", "-c", *op.commands], check=True)
        path = tmp_path / "app" / "secrets" / op.name.removeprefix("Generate ")
        assert mode(path) == 0o600, f"{path}: {mode(path):04o}"
        assert len(path.read_text()) == 40 and path.read_text() not in op.commands[0]
