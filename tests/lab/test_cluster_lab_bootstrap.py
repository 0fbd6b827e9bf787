"""A 3-host cluster lab bootstraps (issue 15, M3): `make deploy` of the inventory `make lab
N=3 CLUSTER=1` writes gives one leader and two streaming replicas on timeline 1 (Patroni's
GET /cluster, pg_stat_replication), writes through postgres_port on every host reach the
leader, reads through postgres_replica_port land on a replica, a second deploy changes
nothing and `make verify` passes. The lab's host containers are removed afterwards."""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Iterator

import pytest

from tests.lab.conftest import LabTarget, cluster_lab, record

DATA = {"compose_project": "labm", "backup_schedule": "@daily"}
CA = "/etc/pgsteady-tls/ca.crt"
#: builds the cluster image on 3 hosts (8-10 min under load), then deploys twice
pytestmark = pytest.mark.timeout(3600)


@pytest.fixture(scope="module")
def lab() -> Iterator[list[LabTarget]]:
    with cluster_lab("pgsm3", DATA) as targets:
        yield targets


def _in_postgres(target: LabTarget, script: str, timeout: float = 60):
    """``sh -c script`` as the postgres user in the member's Postgres container."""
    argv = ["docker", "exec", "-u", "postgres", target.settings.container_name, "sh", "-c", script]
    return target.ssh(shlex.join(argv), timeout=timeout)


def _cluster_api(target: LabTarget) -> dict:
    """Patroni's GET /cluster on the member's REST API, verified with the inventory CA."""
    address = target.host.ip
    code = (
        "import json, ssl, urllib.request; "
        f"ctx = ssl.create_default_context(cafile={CA!r}); "
        f"print(urllib.request.urlopen('https://{address}:8008/cluster', context=ctx, "
        "timeout=5).read().decode())"
    )
    out = _in_postgres(target, shlex.join(["python3", "-c", code]))
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def _through(target: LabTarget, port: int, sql: str):
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
    return _in_postgres(target, script)


def test_deploy_bootstraps_one_leader_and_two_streaming_replicas(lab: list[LabTarget]) -> None:
    started = time.monotonic()
    result = lab[0].make("deploy", timeout=3600)
    assert result.returncode == 0, result.output[-8000:]
    record(
        "cluster lab M3: first deploy of 3 hosts (Patroni, images built)",
        time.monotonic() - started,
    )
    members = _cluster_api(lab[1])["members"]
    roles = sorted(m["role"] for m in members)
    assert roles == ["leader", "replica", "replica"], members
    assert {m["timeline"] for m in members} == {1}, members
    leader = next(m for m in members if m["role"] == "leader")
    assert leader["state"] == "running", members
    # Patroni 4 (the PG 17 image) names a replica's state by its WAL receiver
    assert {m["state"] for m in members if m["role"] == "replica"} == {"streaming"}, members
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


def test_verify_passes_on_every_member(lab: list[LabTarget]) -> None:
    result = lab[0].make("verify", timeout=1800)
    fails = [line for line in result.output.splitlines() if line.startswith("FAIL ")]
    checks = {line.split("] ", 1)[1].split(":", 1)[0] for line in fails}
    assert checks <= LAB_ENVIRONMENT, "\n".join(fails)
    assert "checks:" in result.output, result.output[-4000:]
