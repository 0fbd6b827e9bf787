"""Cluster operations against a REAL 2-member Patroni 4.0.7 cluster on 3 real etcd members
(tests/support/patroni_lab.py): `make status`'s cluster view, verify's cluster checks
(each shown failing on a real fault), switchover and reinit through the gated REST API.

One cluster serves the module; the tests run in file order and each leaves the cluster
as the next one expects (the destructive faults come last).
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pgsteady.client import Pool, dsn
from pgsteady.client.health import HealthChecks
from pgsteady.cluster import health, operations, status
from pgsteady.cluster.cli import access_from_dir
from pgsteady.cluster.operations import Endpoint, OperationError, RestAccess, RestApi
from pgsteady.cluster.tunnels import cluster_members, forwarded
from pgsteady.inventory import load_inventory
from tests.support.etcd_lab import ADDRESSES
from tests.support.patroni_lab import SUPERUSER_PW, PatroniLab, postgres_root, running_patroni
from tests.support.sshd import SSHD, Sshd

pytestmark = pytest.mark.timeout(900)
EXPECTED = ("m1", "m2")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PatroniLab]:
    pw = pwd.getpwnam("postgres")
    with postgres_root() as outer:
        archive = outer / "archive"
        archive.mkdir()
        os.chown(archive, pw.pw_uid, pw.pw_gid)
        params = {
            "archive_mode": "on",
            "archive_command": f"test ! -f {archive}/%f && cp %p {archive}/%f",
        }
        with running_patroni(tmp_path_factory.mktemp("etcd"), parameters=params) as live:
            yield live


@pytest.fixture(scope="module")
def api(lab: PatroniLab) -> RestApi:
    secret = lab.root / "rest-password"
    secret.touch(mode=0o600)
    secret.write_text(lab.rest_pw + "\n")
    cert, key = lab.client
    access = RestAccess(str(lab.ca), str(cert), str(key), str(secret), source_address=ADDRESSES[1])
    return RestApi({n: lab.api(n) for n in EXPECTED}, access)


def access_dir(lab: PatroniLab) -> Path:
    """A 0700 directory with the REST API's gate files, as an operator keeps them."""
    access = lab.root / "access"
    if access.exists():
        return access
    access.mkdir(mode=0o700)
    for name, src in (("ca.crt", lab.ca), ("client.crt", lab.client[0])):
        shutil.copy(src, access / name)
    for name, data in (("client.key", lab.client[1].read_bytes()), ("rest-password", b"")):
        (access / name).touch(mode=0o600)
        (access / name).write_bytes(data)
    (access / "rest-password").write_text(lab.rest_pw)
    return access


def leader_view(lab: PatroniLab, name: str) -> health.LeaderView:
    sql = "SET search_path = pg_catalog, pg_temp; " + health.LEADER_SQL
    return health.parse_leader(lab.members[name].sql(lab.cluster.member_port, sql))


def patch_config(lab: PatroniLab, doc: dict[str, object]) -> None:
    res = lab.request("m1", "/config", "PATCH", json.dumps(doc), gated=True)
    assert res[0] == 200, res


def until(what: str, probe: object, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not probe():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        time.sleep(1)


def test_status_reads_each_member_and_the_leader(lab: PatroniLab) -> None:
    urls = [lab.api("m2"), lab.api("m1")]
    # R8 L1: no client certificate, no answer, on GET /cluster too
    anonymous = status.fetch_cluster(urls, str(lab.ca))
    assert anonymous.error and not anonymous.members  # the handshake fails (alert or EOF)
    client = (str(lab.client[0]), str(lab.client[1]))
    # m2's WAL receiver streams (the fixture waited for it) but Patroni writes the state
    # it shows on /cluster on its next loop: "creating replica" until then on a loaded host
    deadline = time.monotonic() + 60
    while True:
        cs = status.fetch_cluster(urls, str(lab.ca), client)
        m2 = cs.member("m2")
        if (m2 and m2.state in health.REPLICATING_STATES) or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert cs.error is None and cs.leader == "m1"
    m1, m2 = cs.member("m1"), cs.member("m2")
    assert m1 and m1.role == "primary" and m1.state == "running" and m1.timeline == 1
    # Patroni 4 says "streaming" once the WAL receiver is up ("running" a moment before)
    assert m2 and m2.role == "replica" and m2.state in health.REPLICATING_STATES
    assert m2.timeline == 1
    assert m2.lag_bytes is not None and m2.lag_bytes <= lab.cluster.replica_max_lag
    assert (m1.host, m2.host) == (ADDRESSES[0], ADDRESSES[1])
    doc = cs.to_dict()
    assert [m["role"] for m in doc["members"]] == ["primary", "replica"]
    assert doc["leader"] == "m1" and doc["paused"] is False and doc["pending_restart"] == []
    text = "\n".join(status.render_lines(cs))
    assert "leader: m1" in text and "m2           replica" in text
    # the monitor's stand-alone fetch program reads the same document (with the client
    # certificate given; in a member's container it defaults to the member's own)
    script = [sys.executable, "-c", status.FETCH_SCRIPT, f"{lab.api('m1')}/cluster"]
    out = subprocess.run(
        [*script, str(lab.ca), *client],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert status.parse_cluster(json.loads(out.stdout)).leader == "m1"
    # an unreachable member is skipped; none reachable is an error, not an empty cluster
    dead = f"https://{ADDRESSES[2]}:{lab.cluster.rest_port}"
    assert status.fetch_cluster([dead, lab.api("m1")], str(lab.ca), client).leader == "m1"
    assert "no member answered" in (status.fetch_cluster([dead], str(lab.ca)).error or "")


def test_cluster_checks_pass_on_a_healthy_cluster(lab: PatroniLab, api: RestApi) -> None:
    lab.members["m1"].sql(lab.cluster.member_port, "SELECT pg_switch_wal()")
    until(
        "a WAL segment is archived",
        lambda: leader_view(lab, "m1").archiver.get("archived_count", 0) > 0,
    )
    cs, view = api.cluster(), leader_view(lab, "m1")
    assert health.leader_problems(cs, EXPECTED) == []
    assert health.replica_problems(cs, EXPECTED, view.streaming, lab.cluster.replica_max_lag) == []
    assert [s["name"] for s in view.slots] == ["m2"]  # Patroni's slot for m2, in use
    assert health.slot_problems(view.slots) == []
    assert health.archiver_problems(view, expected=True) == []


def test_inactive_slot_is_reported(lab: PatroniLab) -> None:
    """A permanent slot nobody consumes (a real misconfiguration) retains WAL forever."""
    patch_config(lab, {"slots": {"orphan": {"type": "physical"}}})
    try:
        until("Patroni creates the slot", lambda: len(leader_view(lab, "m1").slots) == 2)
        problems = health.slot_problems(leader_view(lab, "m1").slots)
        assert len(problems) == 1 and "orphan (physical) is inactive" in problems[0]
    finally:
        patch_config(lab, {"slots": None})
    until("Patroni drops the slot", lambda: len(leader_view(lab, "m1").slots) == 1)


def test_failing_archive_command_is_reported(lab: PatroniLab) -> None:
    good = leader_view(lab, "m1")
    assert health.archiver_problems(good, expected=True) == []
    patch_config(lab, {"postgresql": {"parameters": {"archive_command": "false"}}})
    m1 = lab.members["m1"]

    def failing() -> bool:
        m1.sql(lab.cluster.member_port, "SELECT pg_switch_wal()")
        return bool(health.archiver_problems(leader_view(lab, "m1"), expected=True))

    try:
        until("the archiver fails", failing)
        problem = health.archiver_problems(leader_view(lab, "m1"), expected=True)[0]
        assert "archiving fails on the primary" in problem and "failures" in problem
    finally:
        command = (lab.parameters or {})["archive_command"]
        patch_config(lab, {"postgresql": {"parameters": {"archive_command": command}}})
    # the archive command works again after the reload; the waiting WAL is archived
    until(
        "archiving recovers",
        lambda: not health.archiver_problems(leader_view(lab, "m1"), expected=True),
        timeout=120,
    )


def test_status_shows_a_pending_restart(lab: PatroniLab, api: RestApi) -> None:
    """A parameter that needs a restart, changed through the DCS, shows on every member."""
    patch_config(lab, {"postgresql": {"parameters": {"max_connections": 25}}})
    try:
        until("both members show a pending restart", lambda: api.cluster().to_dict()[
            "pending_restart"] == ["m1", "m2"])  # fmt: skip
        assert "pending-restart" in "\n".join(status.render_lines(api.cluster()))
    finally:
        patch_config(lab, {"postgresql": {"parameters": {"max_connections": 20}}})
    until("the pending restart clears", lambda: api.cluster().to_dict()["pending_restart"] == [])


def test_switchover_refuses_an_unfit_target_naming_it(lab: PatroniLab, api: RestApi) -> None:
    max_lag = lab.cluster.replica_max_lag
    with pytest.raises(OperationError, match="switchover to m3 refused: m3 is not a member"):
        operations.switchover(api, max_lag, target="m3")
    with pytest.raises(OperationError, match="switchover to m1 refused: m1 is already the"):
        operations.switchover(api, max_lag, target="m1")
    with pytest.raises(OperationError, match="switchover to m2 refused: m2 is .* behind"):
        operations.switchover(api, -1, target="m2")  # every replica is beyond a negative limit
    assert lab.leader() == "m1"


def test_switchover_to_a_target_and_back(lab: PatroniLab, api: RestApi) -> None:
    max_lag = lab.cluster.replica_max_lag
    result = operations.switchover(api, max_lag, target="m2", timeout=90)
    assert result.startswith("switchover done: m2 leads") and "m1 replicates" in result
    assert lab.leader() == "m2"
    cs = api.cluster()
    assert cs.member("m1").role == "replica" and cs.member("m2").timeline == 2  # type: ignore[union-attr]
    # without a target Patroni picks the one fit replica
    result = operations.switchover(api, max_lag, timeout=90)
    assert result.startswith("switchover done: m1 leads"), result
    lab.wait_streaming("m1", "m2")


def test_client_kit_multi_host_follows_roles_and_a_switchover(
    lab: PatroniLab, api: RestApi
) -> None:
    """Without a proxy: the kit's multi-host dsn keeps the primary for writers and the
    replica for readers (the replica listed first, the primary first), and readiness tells
    "primary reachable" from "replica within lag"; after a switchover a writer's new
    session lands on the new primary."""
    hosts = [lab.cluster.member(n).address for n in ("m2", "m1")]

    def pool(attrs: str, order: list[str]) -> Pool:
        conninfo = dsn(
            order, port=lab.cluster.member_port, user="postgres", dbname="postgres",
            ca_file=str(lab.ca), target_session_attrs=attrs,
        )  # fmt: skip
        return Pool(conninfo, minconn=0, maxconn=2, connect_kwargs={"password": SUPERUSER_PW})

    where = "SELECT inet_server_addr()::text, pg_is_in_recovery()"

    def served(p: Pool) -> tuple[str, bool]:
        with p.connection() as conn, conn.cursor() as cur:
            cur.execute(where)
            addr, rec = cur.fetchone()
        return addr.split("/")[0], rec

    writer, reader = pool("read-write", hosts), pool("standby", hosts[::-1])
    try:
        assert served(writer) == (ADDRESSES[0], False)
        assert served(reader) == (ADDRESSES[1], True)
        w, r = HealthChecks(writer), HealthChecks(reader, details=True)  # r: with reasons
        assert w.ready({"role": "primary"})[0] == 200
        assert r.ready({"role": "replica", "max_lag_s": "30"})[0] == 200
        status_code, body = r.ready({"role": "primary"})
        assert status_code == 503 and "not a primary" in json.dumps(body)
        assert w.ready({"role": "replica"})[0] == 503

        operations.switchover(api, lab.cluster.replica_max_lag, target="m2", timeout=90)
        fresh = pool("read-write", hosts[::-1])  # m1 (now a replica) listed first
        try:
            assert served(fresh) == (ADDRESSES[1], False)
            assert HealthChecks(fresh).ready({"role": "primary"})[0] == 200
        finally:
            fresh.close()
        operations.switchover(api, lab.cluster.replica_max_lag, target="m1", timeout=90)
        lab.wait_streaming("m1", "m2")
    finally:
        writer.close()
        reader.close()
    with pytest.raises(ValueError, match="target_session_attrs='primary-ish'"):
        dsn(hosts, target_session_attrs="primary-ish")
    with pytest.raises(ValueError, match="one port per host"):
        dsn(hosts, port=[1, 2, 3])


def test_wrong_rest_password_is_refused(lab: PatroniLab, api: RestApi) -> None:
    bad = lab.root / "bad-password"
    bad.write_text("not-it")
    wrong = RestApi(api.urls, RestAccess(**{**api.access.__dict__, "password_file": str(bad)}))
    with pytest.raises(OperationError, match=r"refused the switchover \(401\)"):
        operations.switchover(wrong, lab.cluster.replica_max_lag, target="m2")
    assert lab.leader() == "m1"


def test_cli_switches_over_and_refuses_loose_secrets(lab: PatroniLab, api: RestApi) -> None:
    """``python -m pgsteady switchover`` (what make switchover runs) with an access dir."""
    access = access_dir(lab)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        members = [f"--member={n}={lab.api(n)}" for n in EXPECTED]
        return subprocess.run(
            [sys.executable, "-m", "pgsteady", *args, *members, "--access", str(access)]
            + ["--source", ADDRESSES[1], "--timeout", "90"],
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )

    out = cli("switchover", "--to", "m2")
    assert out.returncode == 0 and out.stdout.startswith("switchover done: m2 leads"), out
    assert lab.rest_pw not in out.stdout + out.stderr
    out = cli("switchover", "--to", "m2")
    assert out.returncode == 1 and "m2 is already the leader" in out.stderr, out
    out = cli("switchover")
    assert out.returncode == 0 and "m1 leads" in out.stdout, out
    os.chmod(access / "rest-password", 0o644)
    out = cli("reinit", "m2")
    assert out.returncode == 1 and "rest-password is mode 0644" in out.stderr, out
    assert lab.rest_pw not in out.stdout + out.stderr
    os.chmod(access / "rest-password", 0o600)
    lab.wait_streaming("m1", "m2")


@pytest.mark.skipif(not Path(SSHD).exists(), reason="needs OpenSSH's sshd")
def test_inventory_mode_reaches_the_members_through_ssh_forwards(lab: PatroniLab) -> None:
    """``--inventory``: the members come from the inventory and each REST API is reached
    through an ssh port forward (sshd here on 127.0.0.1). GET /cluster passes through it
    (an unfit target is refused by name); the POST is refused by Patroni's allowlist,
    because this lab's sshd dials the loopback members from 127.0.0.1, which the lab
    cluster does not allow (on real hosts sshd dials from the member's own private
    address, which it does). No forward outlives the command.

    Each forward's local end is a Unix socket in a 0700 directory of this user (no TCP
    port any local user could use), and the client checks the member's certificate
    against the member's address: the same socket under a name the certificate does not
    carry is refused (L4).

    Before any REST call the command reads the rolling-change lock over the same ssh, in
    the member's Postgres container (``docker exec -u postgres <project>-postgres``). These
    members are processes, not containers: a stand-in ``docker`` first on the sessions'
    PATH answers that read with an empty value (no roll), and records that it was asked
    (the real read is proven against etcd in the lab and in test_cluster_roll_lock_etcd)."""
    stand_in = lab.root / "stand-in-bin"
    stand_in.mkdir(exist_ok=True)
    asked = lab.root / "lock-reads.log"
    docker = stand_in / "docker"
    docker.write_text(
        "#!/bin/sh\n"
        f'echo "$1 $2 $3 $4" >> {asked}\n'
        '[ "$1" = exec ] && exit 0  # the lock read: an empty value, no roll holds it\n'
        'exec /usr/bin/docker "$@"\n'
    )
    docker.chmod(0o755)
    sshd = Sshd(
        env={"PATH": f"{stand_in}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
    )
    sshd.start()
    try:
        rest = lab.cluster.rest_port
        hosts = [
            (n, {**sshd.host_data(), "ssh_hostname": "127.0.0.1", "postgres_cluster_name":
                 "itest", "postgres_cluster_address": lab.cluster.member(n).address,
                 "patroni_rest_port": rest})
            for n in EXPECTED
        ]  # fmt: skip
        inventory = lab.root / "cluster_inventory.py"
        inventory.write_text(f"hosts = {hosts!r}\n")

        def cli(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "pgsteady", *args, "--inventory", str(inventory)]
                + ["--access", str(access_dir(lab)), "--timeout", "60"],
                capture_output=True,
                text=True,
                timeout=240,
                check=False,
            )

        _forwards_are_private_sockets_checked_by_name(lab, inventory, sshd.port)
        out = cli("switchover", "--to", "m3")
        assert out.returncode == 1 and "m3 is not a member of the cluster" in out.stderr, out
        reads = asked.read_text().splitlines()
        assert reads and set(reads) == {"exec -u postgres pgsteady-postgres"}, reads
        out = cli("switchover", "--to", "m2")
        assert out.returncode == 1, out
        assert "Patroni refused the switchover (403): Access is denied" in out.stderr
        assert lab.leader() == "m1"
        assert _forward_pids(sshd.port) == []
    finally:
        sshd.stop()


def _forward_pids(ssh_port: int) -> list[str]:
    """PIDs of ssh port forwards to this sshd (full argv from /proc: ps truncates it)."""
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if argv[0].endswith(b"ssh") and b"-L" in argv and str(ssh_port).encode() in argv:
            pids.append(cmdline.parent.name)
    return pids


def _forwards_are_private_sockets_checked_by_name(
    lab: PatroniLab, inventory: Path, ssh_port: int
) -> None:
    members = cluster_members(load_inventory(str(inventory)), None)
    access = access_from_dir(access_dir(lab))
    with forwarded(members) as ends:
        assert sorted(ends) == sorted(EXPECTED)
        for name, end in ends.items():
            assert end.url == lab.api(name) and end.unix_socket, end
            sock = Path(end.unix_socket)
            assert stat.S_ISSOCK(os.stat(sock).st_mode), end
            st = os.stat(sock.parent)
            assert (stat.S_IMODE(st.st_mode), st.st_uid) == (0o700, os.getuid()), end
        assert RestApi(ends, access).cluster().error is None
        pids = _forward_pids(ssh_port)
        assert len(pids) == len(EXPECTED), pids
        ss = subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True, check=True)
        assert not [x for x in ss.stdout.splitlines() for p in pids if f"pid={p}," in x]
        impostor = Endpoint(f"https://impostor.invalid:{lab.cluster.rest_port}", end.unix_socket)
        code, text = RestApi({"m1": impostor}, access).call("m1", "/cluster")
        assert code == 0 and "hostname mismatch" in text.lower(), (code, text)
    assert not sock.parent.exists()


def test_reinit_rebuilds_a_replica_and_refuses_the_leader(lab: PatroniLab, api: RestApi) -> None:
    max_lag = lab.cluster.replica_max_lag
    with pytest.raises(OperationError, match="reinit of m1 refused: it is the leader"):
        operations.reinit(api, "m1", max_lag)
    m1, m2 = lab.members["m1"], lab.members["m2"]
    m1.sql(lab.cluster.member_port, "CREATE TABLE reinit_probe AS SELECT 7 AS x")
    marker = Path(m2.dir / "data" / "reinit-marker")
    marker.touch()  # a file only the old data directory has
    result = operations.reinit(api, "m2", max_lag, timeout=180)
    assert result.startswith("reinit done: m2"), result
    assert not marker.exists()
    lab.wait_streaming("m1", "m2")
    assert m2.sql(lab.cluster.member_port, "SELECT x FROM reinit_probe") == "7"


def test_stopped_replica_fails_the_streaming_check(lab: PatroniLab, api: RestApi) -> None:
    max_lag = lab.cluster.replica_max_lag
    lab.stop("m2")
    until("m2 leaves the cluster", lambda: api.cluster().member("m2") is None)
    cs, view = api.cluster(), leader_view(lab, "m1")
    problems = health.replica_problems(cs, EXPECTED, view.streaming, max_lag)
    assert problems == ["m2 is not in the cluster (Patroni is not running there)"]
    assert health.leader_problems(cs, EXPECTED) == []  # the control: m1 still leads
    with pytest.raises(OperationError, match="no replica is running within"):
        operations.switchover(api, max_lag)
    with pytest.raises(OperationError, match="reinit of m2 refused: not a member"):
        operations.reinit(api, "m2", max_lag)


def test_no_running_leader_fails_the_leader_check(lab: PatroniLab, api: RestApi) -> None:
    """Paused (no failover), the leader's Postgres stopped: nobody accepts writes."""
    patch_config(lab, {"pause": True})
    until("the cluster pauses", lambda: api.cluster().paused)
    m1 = lab.members["m1"]
    pw = pwd.getpwnam("postgres")
    subprocess.run(
        [str(Path("/usr/lib/postgresql/15/bin/pg_ctl")), "stop", "-m", "fast", "-D"]
        + [str(m1.dir / "data")],
        user=pw.pw_uid,
        group=pw.pw_gid,
        extra_groups=[],
        cwd=m1.dir,
        capture_output=True,
        timeout=60,
        check=True,
    )
    until("m1's state shows stopped", lambda: api.cluster().member("m1").state != "running")  # type: ignore[union-attr]
    cs = api.cluster()
    problems = health.leader_problems(cs, EXPECTED)
    assert len(problems) == 1 and problems[0].startswith("no running leader"), problems
    assert "paused" in problems[0]
    with pytest.raises(OperationError, match="no running leader"):
        operations.switchover(api, lab.cluster.replica_max_lag)
