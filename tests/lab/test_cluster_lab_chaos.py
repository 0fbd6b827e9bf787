"""Issue 15's faults that only the host-container lab can stage, one trial each on the
session's shared cluster lab (the CI-sized subset of `make lab-cluster-chaos`):
`docker kill` of the leader's Postgres container, power loss of the leader's host and
the leader's host cut off the network. In each, a writer commits through HAProxy on a
surviving host and a probe commits to every member directly
(:func:`pgsteady.lab.failover_trial.run_trial`): writes resume on a new timeline (on
another member, except after `docker kill`: the restart policy brings the container
back within the leader's lease), no two members acknowledge commits in interleaved
turns (split brain), and the cluster is whole again (the old leader rejoins as a
streaming replica) without a person. In synchronous mode (the cluster default) no
acknowledged write is lost. Kill -9 of the postmaster, a paused
primary and lost etcd members are staged by the process harness
(tests/integration/test_cluster_failover.py) in make test."""

from __future__ import annotations

import pytest

from pgsteady.lab.failover import LAB_KINDS, NEW_LEADER
from pgsteady.lab.failover_trial import run_trial
from tests.lab.conftest import ClusterLab, record

pytestmark = pytest.mark.timeout(3600)


@pytest.mark.parametrize("kind", list(LAB_KINDS))
def test_the_cluster_fails_over_and_heals_itself(
    deployed_cluster_lab: ClusterLab, kind: str
) -> None:
    cluster = deployed_cluster_lab.cluster
    settings = cluster.settings
    try:
        trial = run_trial(cluster, kind, timeout=240)
    finally:
        deployed_cluster_lab.wait_whole(300)  # the shared lab's contract, even on failure
    assert trial["whole_again"], trial.get("whole_error")
    # the bench splits lost-primary gaps by it (bench/failover_lab.py: etcd_leader_split)
    assert cluster.observed["etcd_leader_at_fault"] in cluster.members(), cluster.observed
    assert trial["split_brain"] == [], trial["probe_turns"]
    assert trial["seconds"] is not None, trial
    if kind in NEW_LEADER:  # a killed container is back (restart policy) within the lease
        assert trial["leader_after"] != trial["leader_before"], trial
    assert trial["timeline_after"] > trial["timeline_before"], trial
    # the new leader serves within the lease and a few loops, with room for a loaded VM
    bound = settings.patroni_ttl + 4 * settings.patroni_loop_wait + 30
    assert trial["seconds"] <= bound, trial
    record(f"cluster lab: {kind} to the first write on the new leader", trial["seconds"])
    if settings.postgres_synchronous_mode:  # the cluster default: no acknowledged write lost
        assert trial["lost"] == [] and trial["probe_lost"] == [], trial["lost_acks"]
    if kind == "host_isolated":  # cut off from etcd, the old leader demoted itself first
        assert cluster.observed["old_leader_writable_at_repair"] is False, cluster.observed
