"""A 3-host cluster lab bootstraps (issue 15, M3): `make deploy` of the inventory `make lab
N=3 CLUSTER=1` writes gives one leader and two streaming replicas on timeline 1 (Patroni's
GET /cluster, pg_stat_replication), writes through postgres_port on every host reach the
leader, reads through postgres_replica_port land on a replica, a second deploy changes
nothing and `make verify` passes; the image runs Patroni 4 (postgres_version 17), which
validates each member's configuration; a leader that diverged (rows its replicas never
received) and lost the leader key while frozen rejoins by pg_rewind, without a reinit,
and the new leader's acknowledged rows survive. The lab's host containers are removed
afterwards."""

from __future__ import annotations

import json
import shlex
import subprocess
import time

import pytest

from pgsteady.cluster.member_service import HAPROXY_CFG, haproxy_container
from pgsteady.cluster.patroni import REWIND_USER
from pgsteady.cluster.status import FETCH_SCRIPT
from pgsteady.stack.layout import CONFIG_MOUNT
from tests.lab.conftest import ClusterLab, LabTarget, record

CA = "/etc/pgsteady-tls/ca.crt"
#: the shared lab's first use builds the cluster image on 3 hosts (8-10 min under load)
pytestmark = pytest.mark.timeout(3600)


@pytest.fixture(scope="module")
def lab(deployed_cluster_lab: ClusterLab) -> list[LabTarget]:
    """The session's shared cluster lab (tests/lab/conftest.py), deployed once."""
    return deployed_cluster_lab.targets


def _in_postgres(target: LabTarget, script: str, timeout: float = 60):
    """``sh -c script`` as the postgres user in the member's Postgres container."""
    argv = ["docker", "exec", "-u", "postgres", target.settings.container_name, "sh", "-c", script]
    return target.ssh(shlex.join(argv), timeout=timeout)


def _cluster_api(target: LabTarget) -> dict:
    """Patroni's GET /cluster on the member's REST API, verified with the inventory CA,
    presenting the member's certificate (the API requires a client certificate)."""
    url = f"https://{target.host.ip}:8008/cluster"
    out = _in_postgres(target, shlex.join(["python3", "-c", FETCH_SCRIPT, url, CA]))
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def _through(target: LabTarget, port: int, sql: str, timeout: float = 60):
    """``sql`` as the app's role through the host's HAProxy on 127.0.0.1:``port`` (TLS,
    the member certificate verified: every member's lists 127.0.0.1)."""
    s = target.settings
    dsn = (
        f"host=127.0.0.1 port={port} dbname={s.postgres_db} user={s.postgres_user} "
        f"sslmode=verify-full sslrootcert={CA}"
    )
    script = (
        'PGPASSWORD="$(cat /run/secrets/app_password)" '
        f"psql -XAtq -v ON_ERROR_STOP=1 {shlex.quote(dsn)} -c {shlex.quote(sql)}"
    )
    return _in_postgres(target, script, timeout=timeout)


def test_deploy_bootstraps_one_leader_and_two_streaming_replicas(
    lab: list[LabTarget], deployed_cluster_lab: ClusterLab
) -> None:
    result = deployed_cluster_lab.first_deploy
    assert result.returncode == 0, result.output[-8000:]
    members = _cluster_api(lab[1])["members"]
    roles = sorted(m["role"] for m in members)
    # synchronous mode, a cluster's default: one of the replicas is the synchronous standby
    assert roles == ["leader", "replica", "sync_standby"], members
    assert {m["timeline"] for m in members} == {1}, members
    leader = next(m for m in members if m["role"] == "leader")
    assert leader["state"] == "running", members
    # Patroni 4 (the PG 17 image) names a replica's state by its WAL receiver
    assert {m["state"] for m in members if m["role"] != "leader"} == {"streaming"}, members
    assert leader["name"] == lab[0].host.name  # the seed, which started alone
    query = (
        "SELECT application_name || ':' || state || ':' || coalesce(ssl::text, '?') "
        "FROM pg_stat_replication LEFT JOIN pg_stat_ssl USING (pid) ORDER BY 1"
    )
    streaming = _in_postgres(lab[0], shlex.join(["psql", "-XAtq", "-c", query]))
    assert streaming.returncode == 0, streaming.stderr
    assert streaming.stdout.split() == [f"{t.host.name}:streaming:true" for t in lab[1:]]


def test_writes_reach_the_leader_and_reads_a_replica_through_haproxy(lab: list[LabTarget]) -> None:
    leader = lab[0].host.ip
    out = _through(lab[0], 5432, "CREATE TABLE IF NOT EXISTS m3_probe (via text)")
    assert out.returncode == 0, out.stderr
    for target in lab:
        query = (
            f"INSERT INTO m3_probe VALUES ('{target.host.name}') "
            "RETURNING host(inet_server_addr()) || ':' || pg_is_in_recovery()"
        )
        out = _through(target, 5432, query)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == f"{leader}:false"
    replicas = {t.host.ip for t in lab[1:]}
    for target in lab:
        deadline = time.monotonic() + 60
        while True:
            out = _through(
                target,
                5433,
                "SELECT host(inet_server_addr()), pg_is_in_recovery(), count(*) FROM m3_probe",
            )
            fields = out.stdout.strip().split("|")
            if out.returncode == 0 and fields[2] == "3":
                break
            assert time.monotonic() < deadline, (out.stdout, out.stderr)
            time.sleep(1)
        assert fields[0] in replicas and fields[1] == "t", fields


def test_second_deploy_changes_nothing(lab: list[LabTarget]) -> None:
    result = lab[0].make("deploy", timeout=1800)
    assert result.returncode == 0, result.output[-8000:]
    assert result.changed == 0, result.output[-8000:]


#: What a lab host cannot pass whatever pgsteady does: it runs no NTP client.
LAB_ENVIRONMENT = {"host/time_synchronised"}


def test_verify_passes_on_every_member(deployed_cluster_lab: ClusterLab) -> None:
    result = deployed_cluster_lab.verify()
    fails = [line for line in result.output.splitlines() if line.startswith("FAIL ")]
    checks = {line.split("] ", 1)[1].split(":", 1)[0] for line in fails}
    assert checks <= LAB_ENVIRONMENT, "\n".join(fails)
    assert "checks:" in result.output, result.output[-4000:]


def test_patroni_4_validates_the_members_configuration(lab: list[LabTarget]) -> None:
    """The image a cluster runs (postgres_version 17, built from trixie) carries Patroni 4,
    with the etcd3 leader-key fix of 3.0.3, and it validates the configuration the member
    runs (the ports are the member's own, hence --ignore-listen-port)."""
    version = _in_postgres(lab[0], "patroni --version")
    assert version.returncode == 0 and version.stdout.split()[-1].startswith("4."), version
    for target in lab:
        out = _in_postgres(target, "patroni --validate-config --ignore-listen-port /run/patroni")
        assert out.returncode == 0, out.stdout + out.stderr


def _wait_members(target: LabTarget, ready, timeout: float = 240) -> list[dict]:
    """GET /cluster's members once ``ready(members)`` holds (``timeout`` seconds)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            members = _cluster_api(target)["members"]
        except AssertionError:
            members = []
        if ready(members):
            return members
        assert time.monotonic() < deadline, members
        time.sleep(2)


def _logs(target: LabTarget, tail: int | None = None) -> str:
    """The member's Postgres container log (Patroni's and the server's)."""
    option = f" --tail {tail}" if tail else ""
    return target.ssh(f"docker logs{option} {target.settings.container_name} 2>&1").stdout


def test_a_diverged_old_leader_rejoins_by_pg_rewind(lab: list[LabTarget]) -> None:
    """The leader commits rows its replicas never receive (its WAL senders are stopped),
    then freezes (docker pause) until a replica takes over; writes acknowledged by the new
    leader go on. Unfrozen, the old leader gives up the leader key and rejoins as a
    streaming replica on the new timeline by pg_rewind (as pgsteady_rewind, no reinit):
    its own unreplicated rows are gone, the new leader's acknowledged rows are all there."""
    members = _wait_members(lab[1], lambda m: sum(x.get("state") == "streaming" for x in m) == 2)
    old = next(
        t for t in lab if t.host.name == next(m["name"] for m in members if m["role"] == "leader")
    )
    others = [t for t in lab if t is not old]
    out = _through(old, 5432, "CREATE TABLE IF NOT EXISTS m3_rewind (via text, n int)")
    assert out.returncode == 0, out.stderr
    for target in others:  # the table itself is on both replicas
        deadline = time.monotonic() + 60
        while _through(target, 5433, "SELECT count(*) FROM m3_rewind").returncode != 0:
            assert time.monotonic() < deadline
            time.sleep(1)
    # the rows only the old leader will have: its WAL senders stop first
    pids = _in_postgres(old, "psql -XAtq -c 'SELECT pid FROM pg_stat_replication'")
    senders = pids.stdout.split()
    assert len(senders) == 2, pids.stdout + pids.stderr
    out = _in_postgres(old, f"kill -STOP {' '.join(senders)}")
    assert out.returncode == 0, out.stderr
    # synchronous_commit = local: committed on the old leader without waiting for a
    # replica (the cluster runs synchronous mode by default, which would wait forever)
    lost = _through(
        old,
        5432,
        "SET synchronous_commit = local; "
        "INSERT INTO m3_rewind SELECT 'lost', g FROM generate_series(1, 100) g",
    )
    assert lost.returncode == 0, lost.stderr
    unseen = _through(others[0], 5433, "SELECT count(*) FROM m3_rewind WHERE via = 'lost'")
    assert unseen.stdout.strip() == "0", (unseen.stdout, unseen.stderr)  # diverged
    paused = old.ssh(f"docker pause {old.settings.container_name}")
    assert paused.returncode == 0, paused.stderr
    started = time.monotonic()
    acked = 0
    try:
        # the writer: through the surviving hosts' HAProxy until a new leader answers
        deadline = started + 180
        while acked < 20:
            sql = (
                f"INSERT INTO m3_rewind VALUES ('acked', {acked}) "
                "RETURNING host(inet_server_addr())"
            )
            try:
                out = _through(others[acked % 2], 5432, sql, timeout=20)
            except subprocess.TimeoutExpired:  # a session to the frozen leader, cut later
                out = None
            if out is not None and out.returncode == 0:
                assert out.stdout.strip() != old.host.ip
                if acked == 0:
                    seconds = time.monotonic() - started
                    record("cluster lab M3: leader paused to first write on the new one", seconds)
                acked += 1
            else:
                assert time.monotonic() < deadline, out and out.stderr
                time.sleep(0.5)
    finally:
        unpaused = old.ssh(f"docker unpause {old.settings.container_name}")
    assert unpaused.returncode == 0, unpaused.stderr
    _in_postgres(old, f"kill -CONT {' '.join(senders)}")  # so they see Patroni's stop

    def rejoined(ms: list[dict]) -> bool:
        leader = [m for m in ms if m.get("role") == "leader"]
        return (
            len(ms) == 3
            and len(leader) == 1
            and leader[0]["name"] != old.host.name
            and all(m.get("state") == "streaming" for m in ms if m["role"] != "leader")
            and {m.get("timeline") for m in ms} == {leader[0]["timeline"]}
            and leader[0]["timeline"] > 1
        )

    try:
        members = _wait_members(others[0], rejoined)
    except AssertionError as exc:
        logs = {t.host.name: _logs(t, 120) for t in lab}
        raise AssertionError(
            f"{exc}\n" + "\n".join(f"--- {k}:\n{v}" for k, v in logs.items())
        ) from None
    record(
        "cluster lab M3: leader paused to it streaming again after pg_rewind",
        time.monotonic() - started,
    )
    new = next(
        t for t in lab if t.host.name == next(m["name"] for m in members if m["role"] == "leader")
    )
    log = _logs(old)
    assert "running pg_rewind from" in log, log[-6000:]
    assert f"user={REWIND_USER}" in log, log[-6000:]
    assert "pg_rewind exit code=0" in log, log[-6000:]
    assert "removing data directory" not in log.lower()  # no reinit
    query = "SELECT application_name || ':' || state FROM pg_stat_replication ORDER BY 1"
    streaming = _in_postgres(new, shlex.join(["psql", "-XAtq", "-c", query]))
    assert f"{old.host.name}:streaming" in streaming.stdout.split(), streaming.stdout
    # the new leader's acknowledged rows survived; the old leader's unreplicated ones are
    # gone, on the new leader and on the rewound old leader alike
    count = "SELECT via, count(*) FROM m3_rewind GROUP BY via ORDER BY via"
    for target in (new, old):
        deadline = time.monotonic() + 60
        while True:
            out = _in_postgres(
                target,
                shlex.join(["psql", "-XAtq", "-d", target.settings.postgres_db, "-c", count]),
            )
            if out.returncode == 0 and out.stdout.split() == ["acked|20"]:
                break
            assert time.monotonic() < deadline, (target.host.name, out.stdout, out.stderr)
            time.sleep(1)


def test_verify_fails_a_haproxy_file_that_a_restart_would_not_start(
    deployed_cluster_lab: ClusterLab,
) -> None:
    """A haproxy.cfg that HAProxy rejects (left in place by a failed reload) fails the
    cluster group's HAProxy check on that host only; the running HAProxy still routes."""
    target = next(t for t in deployed_cluster_lab.targets if t is not deployed_cluster_lab.leader())
    cfg = f"{target.settings.layout.config}/{HAPROXY_CFG}"
    original = target.ssh(f"cat {shlex.quote(cfg)}")
    assert original.returncode == 0 and "server " in original.stdout, original.stderr
    broken = target.ssh(f"printf 'bogus_keyword here\\n' >> {shlex.quote(cfg)}")
    assert broken.returncode == 0, broken.stderr
    try:
        result = target.make("verify", timeout=1800)
    finally:  # in place, as the deploy writes it (the container's bind mount follows)
        restore = subprocess.run(
            target.lab.ssh_argv(target.host, f"cat > {shlex.quote(cfg)}"),
            input=original.stdout, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert restore.returncode == 0, restore.stderr
    fails = [line for line in result.output.splitlines() if line.startswith("FAIL ")]
    ours = [line for line in fails if "cluster/haproxy_runs_with_a_valid_file" in line]
    # only this check's verdicts: earlier tests of the shared lab (a paused, rewound old
    # leader) may leave a container's health check catching up meanwhile
    assert [line.split("]", 1)[0] for line in ours] == [f"FAIL [{target.host.name}"], fails
    assert "a restart would not start" in ours[0] and "bogus_keyword" in ours[0], ours
    # The file no longer matches the deploy's record of the last reload, on that host only.
    recorded = [x for x in fails if "cluster/haproxy_reload_recorded_for_the_file_on_disk" in x]
    assert [line.split("]", 1)[0] for line in recorded] == [f"FAIL [{target.host.name}"], fails
    assert "checks:" in result.output, result.output[-4000:]
    check = ["docker", "exec", haproxy_container(target.settings), "haproxy", "-c", "-q", "-f",
             f"{CONFIG_MOUNT}/{HAPROXY_CFG}"]  # fmt: skip
    ok = target.ssh(shlex.join(check))
    assert ok.returncode == 0, ok.stdout + ok.stderr
