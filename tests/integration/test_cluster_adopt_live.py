"""An adoption's steps against real Patroni and etcd (R10 M6; the pyinfra steps around
them: tests/unit/test_cluster_adopt_steps.py, the whole path: make lab-cluster-adopt).

A single host's data directory (initdb, rows, no replication role) is started under
Patroni with an empty DCS: Patroni takes it as leader, and ``patronictl list`` is what
tasks/patroni_exec.has_leader reads before any other member may start. Before the roles
exist no member can clone; pgsteady.cluster.adopt.roles_sql creates them, and runs again
unchanged (the idempotent finish of an interrupted adoption), after which a member
clones the seed's data and streams."""

from __future__ import annotations

import os
import pwd
import secrets
from pathlib import Path

import pytest

from pgsteady.cluster import adopt, patroni
from tasks.patroni_exec import has_leader
from tests.support.cluster_binaries import PATRONI_VENV
from tests.support.etcd_lab import running_etcd
from tests.support.patroni_lab import (
    BIN_DIR,
    REPLICATION_PW,
    REWIND_PW,
    PatroniLab,
    as_postgres,
    launch,
    postgres_root,
    render_member,
)

pytestmark = pytest.mark.timeout(600)


def _patronictl_list(conf: Path) -> str:
    argv = [str(PATRONI_VENV / "bin" / "patronictl"), "-c", str(conf), "list", "-f", "json"]
    proc = as_postgres(argv, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _roles(d: Path, port: int) -> None:
    """roles_sql as the deploy runs it: psql reads each password from a 0600 file."""
    pw = pwd.getpwnam("postgres")
    for name, value in (("repl", REPLICATION_PW), ("rewind", REWIND_PW)):
        (d / name).write_text(value + "\n")
        os.chown(d / name, pw.pw_uid, pw.pw_gid)
        os.chmod(d / name, 0o600)
    sql = adopt.roles_sql(
        (patroni.REPLICATION_USER, str(d / "repl")), (patroni.REWIND_USER, str(d / "rewind"))
    )
    argv = [str(BIN_DIR / "psql"), "-h", str(d), "-p", str(port), "-U", "postgres"]
    argv += ["-d", "postgres", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", "-"]
    proc = as_postgres(argv, stdin=sql, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_patroni_adopts_a_single_hosts_data_and_the_roles_let_a_member_clone(
    tmp_path: Path,
) -> None:
    with running_etcd(tmp_path) as etcd, postgres_root() as root:
        lab = PatroniLab(etcd, root, secrets.token_urlsafe(16))
        d = render_member(etcd, root, "m1", lab.rest_pw)
        assert not has_leader(_patronictl_list(d / "conf"))  # an empty DCS: nobody leads
        init = as_postgres(
            [str(BIN_DIR / "initdb"), "-D", str(d / "data"), "-U", "postgres", "-A", "peer"],
            timeout=120,
        )
        assert init.returncode == 0, init.stderr
        lab.members["m1"] = launch(d, "m1")
        try:
            lab.wait_role("m1", "primary")
            port = lab.cluster.member_port
            m1 = lab.members["m1"]
            m1.sql(port, "CREATE TABLE kept AS SELECT generate_series(1, 100) AS n")
            sysid = m1.sql(port, "SELECT system_identifier FROM pg_control_system()")
            assert has_leader(_patronictl_list(d / "conf"))
            # the single host had no replication role: the adoption creates it, twice
            assert m1.sql(port, f"SELECT count(*) FROM pg_roles WHERE rolname = "
                                f"'{patroni.REPLICATION_USER}'") == "0"  # fmt: skip
            _roles(d, port)
            _roles(d, port)
            lab.start("m2")
            lab.wait_role("m2", "replica")
            lab.wait_streaming("m1", "m2")
            m2 = lab.members["m2"]
            assert m2.sql(port, "SELECT system_identifier FROM pg_control_system()") == sysid
            assert m2.sql(port, "SELECT count(*) FROM kept") == "100"
        finally:
            for name in reversed(list(lab.members)):
                lab.stop(name)
