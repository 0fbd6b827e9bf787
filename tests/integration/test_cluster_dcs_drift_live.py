"""make verify's DCS comparison (review R8 L4) against a REAL Patroni 4.0.7 member.

A freshly bootstrapped member's ``GET /config`` holds exactly the DCS document it was
seeded with (no key Patroni adds by itself, so the check raises no false alarm); a key
planted through ``PATCH /config`` (a postgresql.conf parameter, a permanent slot) is named
by pgsteady.cluster.dcs_drift, and its removal patch, applied the way the fix line's
``patronictl edit-config --apply`` merges, leaves nothing unmanaged. A
``member_slots_ttl`` a killed ``make remove-member`` left at 0 is set back by the
deploy's patch (review R10 L1).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from pgsteady.cluster import dcs, dcs_drift
from pgsteady.cluster.patroni import MEMBER_SLOTS_TTL_S
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


def _wait_ttl(lab: PatroniLab, value: int) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while (current := _config(lab)).get("member_slots_ttl") != value:
        assert time.monotonic() < deadline, current
        time.sleep(0.5)
    return current


def test_a_member_slots_ttl_left_at_0_is_converged_back(tmp_path: Path) -> None:
    """make remove-member holds member_slots_ttl at 0 while it drops a slot; killed
    midway, it left 0 for good (review R10 L1). pgsteady manages the key: Patroni takes
    it from the seeded document, and the deploy's DCS patch sets a 0 back."""
    with running_patroni(tmp_path, members=("m1",)) as lab:
        rendered = yaml.safe_load((lab.root / "m1" / "conf" / "10-pgsteady.yml").read_text())
        desired = rendered["bootstrap"]["dcs"]
        managed = dcs.managed_paths(desired)
        assert desired["member_slots_ttl"] == MEMBER_SLOTS_TTL_S == 1800
        assert _config(lab)["member_slots_ttl"] == 1800
        killed = json.dumps({"member_slots_ttl": 0})  # what the removal had sent
        status, body = lab.request("m1", "/config", "PATCH", killed, gated=True)
        assert status == 200, body
        change = dcs.patch(_wait_ttl(lab, 0), desired, managed)
        assert change == {"member_slots_ttl": 1800}  # the next deploy's patch
        status, body = lab.request("m1", "/config", "PATCH", json.dumps(change), gated=True)
        assert status == 200, body
        assert dcs.patch(_wait_ttl(lab, 1800), desired, managed) == {}  # converged
