"""make verify's DCS comparison (review R8 L4) against a REAL Patroni 4.0.7 member.

A freshly bootstrapped member's ``GET /config`` holds exactly the DCS document it was
seeded with (no key Patroni adds by itself, so the check raises no false alarm); a key
planted through ``PATCH /config`` (a postgresql.conf parameter, a permanent slot) is named
by pgsteady.cluster.dcs_drift, and its removal patch, applied the way the fix line's
``patronictl edit-config --apply`` merges, leaves nothing unmanaged.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from pgsteady.cluster import dcs_drift
from tests.support.patroni_lab import PatroniLab, running_patroni

pytestmark = pytest.mark.timeout(600)


def _config(lab: PatroniLab) -> dict[str, Any]:
    status, body = lab.request("m1", "/config")
    assert status == 200, body
    return json.loads(body)


def wait_planted(lab: PatroniLab) -> dict[str, Any]:
    """Until the member's view shows the planted slot (GET /config answers from Patroni's
    cached view of etcd, which its watch refreshes a moment after a PATCH)."""
    deadline = time.monotonic() + 30
    while "slots" not in (current := _config(lab)):
        assert time.monotonic() < deadline, current
        time.sleep(0.5)
    return current


def wait_converged(lab: PatroniLab, desired: dict[str, Any]) -> None:
    """Until GET /config holds no key ``desired`` lacks (same cache as above)."""
    deadline = time.monotonic() + 30
    while left := dcs_drift.unmanaged(_config(lab), desired):
        assert time.monotonic() < deadline, left
        time.sleep(0.5)


def test_planted_dcs_keys_are_named_and_removed(tmp_path: Path) -> None:
    with running_patroni(tmp_path, members=("m1",)) as lab:
        rendered = yaml.safe_load((lab.root / "m1" / "conf" / "10-pgsteady.yml").read_text())
        desired = rendered["bootstrap"]["dcs"]  # what pgsteady seeded and converges
        current = _config(lab)
        assert dcs_drift.unmanaged(current, desired) == [], current
        assert dcs_drift.removal_patch(current, desired) == {}

        planted = {
            "postgresql": {"parameters": {"archive_library": "planted"}},
            "slots": {"planted": {"type": "physical"}},
        }
        status, body = lab.request("m1", "/config", "PATCH", json.dumps(planted), gated=True)
        assert status == 200, body
        current = wait_planted(lab)
        names = [dcs_drift.name(p) for p in dcs_drift.unmanaged(current, desired)]
        assert names == ["postgresql.parameters.archive_library", "slots"], current

        fix = dcs_drift.removal_patch(current, desired)
        assert fix == {"postgresql": {"parameters": {"archive_library": None}}, "slots": None}
        assert "patronictl" in dcs_drift.fix_command("pg", fix)
        status, body = lab.request("m1", "/config", "PATCH", json.dumps(fix), gated=True)
        assert status == 200, body
        wait_converged(lab, desired)
