"""A running single-host pgsteady converged into a cluster (issue 15 item 3, design §7).

On a lab of three hosts, host 1 is converged as a single host (Postgres 17, the cluster's
version) and gets rows. First, the 3-host cluster inventory is deployed before
`make cluster-adopt`, once with host 1 as the seed and once with host 1 second. Each
run must fail naming host 1 and change nothing: the same container serves the same
system identifier and rows, its password files are byte-for-byte the same, and the other
hosts run no container and hold no Patroni file. Without the check, the deploy would
upload the cluster's new passwords over the single host's and let an empty member
initialise a new cluster. Then `make cluster-adopt HOST=<host 1>` and `make deploy` run
under a writer that uses the single host's password. Host 1 must lead two streaming
replicas with its system identifier and rows, and no acknowledged write may be lost.
Verify must pass and a second deploy must change nothing. The write gap is recorded.

With ``PGSTEADY_LAB_ADOPT_INTERRUPT=1`` (R10 M6) the first cluster deploy is killed once
the seed's adoption step has stopped the single host's server (patroni.yml written, no
state/adopted record, the others not started); the next deploy must finish the adoption,
with the same assertions. The figures recorded then say so.

Opt-in (its own make target, ``make lab-cluster-adopt``): a 3-host lab of its own.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pgsteady.cluster import adopt
from pgsteady.cluster import member_service as ms
from pgsteady.lab.cluster_backend import CA_FILE, from_inventory, read_inventory
from pgsteady.lab.engine import docker
from pgsteady.lab.failover import longest_gap, lost
from pgsteady.lab.recipe import render_inventory
from pgsteady.lab.writers import SCHEMA, WRITES, Writer, connect, execute
from tests.lab.conftest import REPO, LabTarget, cluster_lab, record

DATA = {"compose_project": "labad", "backup_schedule": "@daily"}
#: What a lab host cannot pass whatever pgsteady does: it runs no NTP client.
LAB_ENVIRONMENT = {"host/time_synchronised"}
ROWS = 500
INTERRUPT = os.environ.get("PGSTEADY_LAB_ADOPT_INTERRUPT") == "1"
ADOPT_STEP = "Restart the single host under Patroni"
pytestmark = [
    pytest.mark.timeout(3600),
    pytest.mark.skipif(
        os.environ.get("PGSTEADY_LAB_ADOPT") != "1",
        reason="opt-in (a 3-host lab of its own): make lab-cluster-adopt",
    ),
]


def _inventory(target: LabTarget, order: list[str], cluster: bool, name: str) -> LabTarget:
    """``target`` with an inventory of the hosts ``order`` names, in that order; without
    the cluster's name when ``cluster`` is False (a single host)."""
    lab_name, entries = read_inventory(target.inventory)
    data = dict(entries)
    hosts = []
    for host in order:
        d = dict(data[host])
        if not cluster:
            d.pop("postgres_cluster_name", None)
        hosts.append((host, d))
    path = target.inventory.with_name(name)
    path.write_text(render_inventory(lab_name, hosts))
    return dataclasses.replace(target, inventory=path)


@pytest.fixture(scope="module")
def single() -> Iterator[tuple[list[LabTarget], LabTarget]]:
    """The 3-host lab, host 1 converged as a single host holding ROWS rows."""
    with cluster_lab("pgsadp", DATA) as targets:
        one = _inventory(targets[0], [targets[0].host.name], False, "single.py")
        started = time.monotonic()
        result = one.make("deploy", timeout=3600)
        assert result.returncode == 0, result.output[-6000:]
        record("adopt lab: single-host deploy of host 1 (image built)", time.monotonic() - started)
        made = one.sql(
            "CREATE TABLE IF NOT EXISTS public.kept (n int PRIMARY KEY);"
            f"INSERT INTO public.kept SELECT generate_series(1, {ROWS}) ON CONFLICT DO NOTHING"
        )
        assert made.returncode == 0, made.stderr
        yield targets, one


def _state(one: LabTarget) -> dict[str, str]:
    """What must not change: the container, the data's identity and rows, the secrets."""
    s = one.settings
    sysid = one.sql("SELECT system_identifier FROM pg_control_system()")
    rows = one.sql("SELECT count(*) FROM public.kept")
    fmt = "'{{.Id}} {{.State.Running}}'"
    container = one.ssh(f"docker inspect -f {fmt} {s.container_name}")
    # hashes only, never values; the files (a cluster member also has an etcd directory)
    sums = one.ssh(f"cd {s.layout.secrets} && find . -maxdepth 1 -type f | sort | xargs sha256sum")
    for proc in (sysid, rows, container, sums):
        assert proc.returncode == 0, proc.stderr
    return {
        "sysid": sysid.stdout.strip(),
        "rows": rows.stdout.strip(),
        "container": container.stdout.strip(),
        "secrets": sums.stdout,
    }


@pytest.mark.parametrize("seed_first", [True, False], ids=["seed-first", "seed-second"])
def test_a_single_hosts_data_in_a_cluster_group_is_refused_before_any_change(
    single: tuple[list[LabTarget], LabTarget], seed_first: bool
) -> None:
    targets, one = single
    names = [t.host.name for t in targets]
    order = names if seed_first else [names[1], names[0], names[2]]
    before = _state(one)
    assert before["rows"] == str(ROWS) and before["container"].endswith(" true")
    cluster = _inventory(targets[0], order, True, f"cluster-{int(seed_first)}.py")
    started = time.monotonic()
    result = cluster.make("deploy", timeout=1800)
    record(f"adopt lab: refused cluster deploy ({'seed first' if seed_first else 'second'})",
           time.monotonic() - started)  # fmt: skip
    assert result.returncode != 0, result.output[-4000:]
    if seed_first:
        expected = f"{names[0]}: its data volume holds a single host's Postgres 17 data"
        assert expected in result.output and f"make cluster-adopt HOST={names[0]}" in result.output
    else:
        expected = f"{names[0]}: its data volume holds Postgres data, but the seed"
        assert expected in result.output and f"is {names[1]}" in result.output
    assert "Grand total" not in result.output  # no operation ran
    assert _state(one) == before
    for t in targets:
        patroni = t.ssh(f"test -e {t.settings.layout.config}/{ms.PATRONI_YML}")
        assert patroni.returncode == 1, f"{t.host.name}: a Patroni file was written"
    for t in targets[1:]:
        ps = t.ssh("docker ps -aq 2>/dev/null || true")
        assert ps.stdout.strip() == "", f"{t.host.name} runs containers: {ps.stdout}"


def _dsn(one: LabTarget) -> str:
    """The application's connection string to host 1's postgres_port (the single host's
    server, then the cluster's HAProxy on the same address), with the single host's
    password, the certificate verified against the inventory CA."""
    s = one.settings
    password = docker("exec", one.host.name, "cat", f"{s.layout.secrets}/app_password").stdout
    quoted = "'" + password.strip().replace("\\", "\\\\").replace("'", "\\'") + "'"
    return (
        f"host={one.host.ip} port={s.postgres_port} dbname={s.postgres_db} "
        f"user={s.postgres_user} password={quoted} sslmode=verify-full "
        f"sslrootcert={one.lab.dir / 'ca' / CA_FILE} connect_timeout=2 application_name=adopt"
    )


def _killed_in_the_adoption_step(cluster: LabTarget, one: LabTarget, container: str) -> None:
    """`make deploy`, killed (its whole process group) once the seed's adoption step has
    stopped or replaced the single host's container ``container`` (its Id)."""
    log = cluster.inventory.with_name("killed-deploy.log")
    argv = ["make", "-s", "deploy", f"INVENTORY={cluster.inventory}"]
    with log.open("w") as out:
        proc = subprocess.Popen(argv, cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip
    name = one.settings.container_name
    try:
        deadline = time.monotonic() + 3600
        while True:
            assert proc.poll() is None, log.read_text(errors="replace")[-6000:]
            assert time.monotonic() < deadline, "the adoption step never started"
            if ADOPT_STEP in log.read_text(errors="replace"):
                now = one.ssh(f"docker inspect -f '{{{{.Id}}}} {{{{.State.Running}}}}' {name}")
                if now.stdout.strip() != f"{container} true":
                    break
            time.sleep(0.5)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    print(f"adopt: deploy killed in its adoption step ({log})")


def test_cluster_adopt_then_deploy_keeps_the_data_passwords_and_identity(
    single: tuple[list[LabTarget], LabTarget],
) -> None:
    """make cluster-adopt, then make deploy under a writer with the single host's password:
    same system identifier, every row, the seed leads two streaming replicas, no acked
    write lost, verify green, a second deploy changes nothing; the write gap recorded."""
    targets, one = single
    names = [t.host.name for t in targets]
    before = _state(one)
    cluster = _inventory(targets[0], names, True, "cluster.py")
    adopted = cluster.make("cluster-adopt", f"HOST={names[0]}", timeout=600)
    assert adopted.returncode == 0, adopted.output[-4000:]
    dsn = _dsn(one)
    conn = connect(dsn, 10)
    try:
        execute(conn, f"{SCHEMA}; TRUNCATE public.{WRITES}", (), 30)
    finally:
        conn.close()
    writer = Writer(dsn)
    writer.start()
    start = time.monotonic()
    record_path = f"{one.settings.layout.state}/{adopt.ADOPTED}"
    try:
        if INTERRUPT:
            _killed_in_the_adoption_step(cluster, one, before["container"].split()[0])
            left = one.ssh(f"test -e {one.settings.layout.config}/{ms.PATRONI_YML} && "
                           f"! test -e {record_path}")  # fmt: skip
            assert left.returncode == 0, "patroni.yml missing, or the adoption recorded"
            for t in targets[1:]:  # no member started before the seed led
                ps = t.ssh("docker ps --format '{{.Names}}'")
                assert t.settings.container_name not in ps.stdout.split(), ps.stdout
        deploy = cluster.make("deploy", timeout=3600)
        end = time.monotonic()
        time.sleep(5)
    finally:
        writer.stop()
    load = Path("/proc/loadavg").read_text().split()[:3]
    gap = longest_gap([a.at for a in writer.acks], start, end)
    acks, unknown = len(writer.acks), len(writer.unknown)
    print(f"adopt: deploy {deploy.seconds:.0f} s, longest write gap {gap:.2f} s, load {load}, "
          f"{acks} acks, {unknown} unknown, {writer.errors[:3]}")  # fmt: skip
    assert deploy.returncode == 0, deploy.output[-8000:]
    how = " (killed in its adoption step, then rerun)" if INTERRUPT else ""
    record(f"adopt lab{how}: cluster deploy of the adopted host, load {load}", deploy.seconds)
    record(f"adopt lab{how}: longest write gap during adoption, load {load}", gap)
    mode = one.ssh(f"stat -c '%U %a' {record_path}")
    assert mode.stdout.strip() == "root 644", mode.stdout + mode.stderr  # adoption recorded
    lab = from_inventory(cluster.inventory)
    try:
        lab.wait_whole(600)
        assert lab.leader() == names[0]  # the seed leads
    finally:
        lab.close()
    after = _state(one)
    assert after["sysid"] == before["sysid"] and after["rows"] == before["rows"]
    for line in before["secrets"].splitlines():  # clients keep their passwords
        assert line in after["secrets"].splitlines(), f"changed: {line.split()[-1]}"
    acked = [a.n for a in writer.acks]
    present = one.sql(f"SELECT n FROM public.{WRITES}").stdout.split()
    assert acked and not lost(acked, [int(n) for n in present])
    for t in targets[1:]:  # the replicas hold the seed's data: same identifier, same rows
        ident = t.sql("SELECT system_identifier FROM pg_control_system()")
        rows = t.sql("SELECT count(*) FROM public.kept")
        assert (ident.stdout.strip(), rows.stdout.strip()) == (before["sysid"], str(ROWS))
    result = cluster.make("verify", timeout=1800)
    fails = [line for line in result.output.splitlines() if line.startswith("FAIL ")]
    checks = {line.split("] ", 1)[1].split(":", 1)[0] for line in fails}
    assert checks <= LAB_ENVIRONMENT, "\n".join(fails)
    assert "checks:" in result.output, result.output[-4000:]
    again = cluster.make("deploy", timeout=1800)
    assert again.returncode == 0, again.output[-8000:]
    assert again.changed == 0, again.output[-8000:]
