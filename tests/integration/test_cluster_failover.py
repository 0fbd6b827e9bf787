"""Failover without a person, on the REAL process cluster (Patroni 4.0.7 members m1 and
m2 on 3 etcd members with TLS and RBAC, HAProxy in front; tests/support/failover_lab.py),
synchronous mode, the tight timing profile: one trial of each fault kind.

Each trial runs the reconnecting writer through HAProxy's primary port and the
split-brain probe on every member's own port (pgsteady.lab.writers), injects the fault
into the current leader, repairs what a host would (resume, start again) and waits until
the cluster is whole: one leader, the other member streaming as its synchronous standby,
etcd 3/3. Asserted: writes resume through the proxy, the cluster is whole again, no
acknowledged write is lost (synchronous mode), and no two members acknowledge commits in
interleaved turns. Times are measured (the bench part ``failover`` reports them) but not
asserted: this 2-core machine is shared.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pgsteady.lab import failover
from pgsteady.lab.failover_trial import run_trial
from tests.support.failover_lab import process_cluster

pytestmark = pytest.mark.timeout(1200)


def _trials(tmp_path: Path, kinds: list[str]) -> dict[str, dict]:
    with process_cluster(tmp_path, profile="tight", synchronous=True) as cluster:
        return {kind: run_trial(cluster, kind, timeout=150) for kind in kinds}


def test_every_fault_recovers_without_a_person_and_loses_no_acknowledged_write(
    tmp_path: Path,
) -> None:
    # primary_pause included: the pinned Patroni 4.0.7 puts the leader key with a revision
    # compare (fixed in 3.0.3, patroni/patroni pull request 2689); on Debian bookworm's
    # 3.0.2 a resumed old primary took the key back and rewound acknowledged writes in 2
    # of 12 trials (docs/reliability.md)
    _check(_trials(tmp_path, list(failover.KINDS)))


def _check(results: dict[str, dict]) -> None:
    for kind, r in results.items():
        assert r["whole_again"], (kind, r.get("whole_error"))
        assert r["seconds"] is not None, (kind, "writes never resumed through the proxy", r)
        assert r["acked"] > 0, (kind, r)
        assert r["lost"] == [], (kind, "acknowledged writes lost in synchronous mode", r)
        assert r["split_brain"] == [], (kind, "two members acknowledged at once", r)
        assert r["probe_lost"] == [], (kind, "a direct commit acknowledged then lost", r)
        if kind in failover.NEW_LEADER:
            assert r["leader_after"] != r["leader_before"], (kind, r)
        elif kind in ("postmaster_kill", "etcd_member_lost"):  # no election at all
            assert r["leader_after"] == r["leader_before"], (kind, r)
        # after quorum loss both members are read-only and either may take the key
