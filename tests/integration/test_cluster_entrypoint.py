"""docker-entrypoint.sh's Patroni mode (issue 15, M3), run for real as root on this host
against 3 real etcd members with TLS and RBAC: it prepares the directories, drops to the
postgres user, writes the rendered configuration and a 0600 file of passwords (read from
the secret files) into its private directory and execs Patroni, which bootstraps the
cluster and calls ``post-bootstrap``: the database is created and the init scripts run.
No password reaches Patroni's argv or environment, or the rendered file."""

from __future__ import annotations

import copy
import json
import os
import pwd
import secrets
import signal
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from pgsteady.cluster import dcs, patroni
from tests.support.cluster_binaries import patroni as patroni_bin
from tests.support.cluster_binaries import require_file
from tests.support.etcd_lab import running_etcd
from tests.support.patroni_lab import (
    BIN_DIR,
    Live,
    as_postgres,
    https,
    postgres_root,
    render_member,
    stop,
    wait_status,
)

ENTRYPOINT = Path(__file__).resolve().parents[2] / "files" / "image" / "docker-entrypoint.sh"
pytestmark = pytest.mark.timeout(600)
#: what pg_rewind calls on the source server as a non-superuser (PostgreSQL >= 11)
REWIND_FUNCTIONS = (
    "pg_ls_dir(text, boolean, boolean)",
    "pg_stat_file(text, boolean)",
    "pg_read_binary_file(text)",
    "pg_read_binary_file(text, bigint, bigint, boolean)",
)


@pytest.fixture
def root() -> Iterator[Path]:
    with postgres_root() as path:
        yield path


def test_patroni_mode_bootstraps_with_secrets_in_a_private_file(tmp_path: Path, root: Path) -> None:
    require_file(str(BIN_DIR / "pg_ctl"), "postgresql-15")
    patroni_bin()
    pw = pwd.getpwnam("postgres")
    passwords = {
        "postgres_password": secrets.token_urlsafe(18),
        "replication_password": secrets.token_urlsafe(18),
        "rewind_password": secrets.token_urlsafe(18),
        "patroni_rest_password": secrets.token_urlsafe(18),
    }
    with running_etcd(tmp_path) as lab:
        c = lab.cluster
        passwords["etcd_patroni_password"] = lab.passwords["patroni"]
        rest_pw = passwords["patroni_rest_password"]
        d = render_member(lab, root, "m1", rest_pw, post_bootstrap=f"{ENTRYPOINT} post-bootstrap")
        # the rendered file alone (the entrypoint writes the passwords itself), with a
        # socket directory of Patroni's own
        config = yaml.safe_load((d / "conf" / "10-pgsteady.yml").read_text())
        config["postgresql"]["parameters"]["unix_socket_directories"] = str(d / "sock")
        (d / "conf.yml").write_text(yaml.safe_dump(config))
        (d / "secrets").mkdir()
        for name, value in passwords.items():
            (d / "secrets" / name).write_text(value + "\n")
        init = d / "initdb.d"
        init.mkdir()
        (init / "10-init.sql").write_text(
            "CREATE TABLE init_ran (x int); INSERT INTO init_ran VALUES (7);\n"
        )
        for path in [d, *d.rglob("*")]:
            os.chown(path, 0, pw.pw_gid)
            os.chmod(path, 0o750 if path.is_dir() else 0o640)
        os.chown(d, pw.pw_uid, pw.pw_gid)  # the member's files stay readable to postgres
        run = d / "run"  # a tmpfs in the container; created and owned by the root part
        env = {
            # the entrypoint execs `patroni` from PATH, as in the image
            "PATH": f"{BIN_DIR}:{Path(patroni_bin()).parent}:/usr/bin:/bin:/usr/sbin:/sbin",
            "LANG": "C.UTF-8",
            "PGDATA": str(d / "data"),
            "POSTGRES_USER": "postgres",
            "POSTGRES_DB": "appdb",
            "POSTGRES_PASSWORD_FILE": str(d / "secrets" / "postgres_password"),
            "PGSTEADY_PATRONI_DIR": str(run),
            "PGSTEADY_PATRONI_CONFIG": str(d / "conf.yml"),
            "PGSTEADY_SECRETS_DIR": str(d / "secrets"),
            "PGSTEADY_INIT_DIR": str(init),
        }
        (d / "sock").mkdir()
        os.chown(d / "sock", pw.pw_uid, pw.pw_gid)
        log = root / "m1.log"
        proc = subprocess.Popen(
            [str(ENTRYPOINT), "patroni"],
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=d,
            env=env,
        )
        member = Live("m1", d, proc, log)
        try:
            ca = lab.tmp / "ca.crt"
            wait_status(member, f"https://{c.member('m1').address}:{c.rest_port}/primary", ca, 200)
            # the entrypoint exec'd Patroni as postgres: same PID, Patroni's argv, uid 999
            cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes().split(b"\0")
            assert any(b"patroni" in part for part in cmdline[:2]), cmdline
            assert cmdline[-2] == str(run).encode(), cmdline
            assert os.stat(f"/proc/{proc.pid}").st_uid == pw.pw_uid
            environ = Path(f"/proc/{proc.pid}/environ").read_bytes()
            for value in passwords.values():
                assert value.encode() not in environ + b"\0".join(cmdline)
            st = os.stat(run / "90-secrets.yml")
            assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (pw.pw_uid, 0o600)
            assert stat.S_IMODE(os.stat(run).st_mode) == 0o700
            merged = yaml.safe_load((run / "90-secrets.yml").read_text())
            assert (
                merged["postgresql"]["authentication"]["superuser"]["password"]
                == (passwords["postgres_password"])
            )
            assert merged["etcd3"]["password"] == passwords["etcd_patroni_password"]
            assert (
                merged["postgresql"]["authentication"]["rewind"]["password"]
                == (passwords["rewind_password"])
            )
            rendered = (run / "10-pgsteady.yml").read_text()
            assert not any(v in rendered for v in passwords.values())
            # post-bootstrap: the database, then the init scripts in it
            port = str(c.member_port)
            deadline = time.monotonic() + 60
            while True:
                out = member_sql(d / "sock", port, "appdb", "SELECT x FROM init_ran")
                if out.returncode == 0:
                    break
                assert time.monotonic() < deadline, (out.stderr, member.tail())
                time.sleep(1)
            assert out.stdout.strip() == "7"
            # pg_rewind's role: made by Patroni, a login without superuser, with the file
            # functions pg_rewind calls
            role = member_sql(
                d / "sock",
                port,
                "postgres",
                "SELECT rolcanlogin, rolsuper, rolreplication, "
                + ", ".join(
                    f"pg_catalog.has_function_privilege(rolname, 'pg_catalog.{f}', 'EXECUTE')"
                    for f in REWIND_FUNCTIONS
                )
                + f" FROM pg_catalog.pg_roles WHERE rolname = '{patroni.REWIND_USER}'",
            )
            assert role.stdout.strip() == "t|f|f|t|t|t|t", (role.stdout, role.stderr)
            assert https(f"https://{c.member('m1').address}:{c.rest_port}/health", ca)[0] == 200
            converge_dcs(member, run, port)
        finally:
            stop(member)
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)


def member_sql(sock: Path, port: str, db: str, query: str) -> subprocess.CompletedProcess[str]:
    return as_postgres(
        [str(BIN_DIR / "psql"), "-h", str(sock), "-p", port, "-U", "postgres", "-d", db]
        + ["-XAtq", "-c", query]
    )


def patronictl(run: Path, argv: list[str], stdin: str | None = None) -> str:
    """``argv`` (the deploy's patronictl command) with the pinned Patroni's patronictl: the
    image has it on PATH, this machine only in the test virtualenv."""
    ctl = Path(patroni_bin()).parent / argv[0]
    out = as_postgres(
        [str(ctl), *argv[1:]], {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}, 60, stdin
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def converge_dcs(member: Live, run: Path, port: str) -> None:
    """The DCS patch as the deploy sends it (patronictl in the member, patch on stdin):
    it applies, a second computation is empty, and a dropped key is deleted."""
    current = yaml.safe_load(patronictl(run, dcs.show_argv(str(run))))
    want = copy.deepcopy(current)
    want["postgresql"]["parameters"]["log_min_duration_statement"] = "1234ms"
    managed = dcs.managed_paths(want)
    change = dcs.patch(current, want, [])
    assert change == {"postgresql": {"parameters": {"log_min_duration_statement": "1234ms"}}}
    patronictl(run, dcs.apply_argv(str(run)), json.dumps(change))
    after = yaml.safe_load(patronictl(run, dcs.show_argv(str(run))))
    assert dcs.patch(after, want, managed) == {}  # converged: a second deploy sends nothing
    show = "SHOW log_min_duration_statement"
    deadline = time.monotonic() + 60  # Patroni reloads within loop_wait
    while member_sql(member.dir / "sock", port, "postgres", show).stdout.strip() != "1234ms":
        assert time.monotonic() < deadline, member.tail()
        time.sleep(1)
    # pgsteady stops managing the key: it is deleted, and the server's default returns
    del want["postgresql"]["parameters"]["log_min_duration_statement"]
    change = dcs.patch(after, want, managed)
    assert change == {"postgresql": {"parameters": {"log_min_duration_statement": None}}}
    patronictl(run, dcs.apply_argv(str(run)), json.dumps(change))
    final = yaml.safe_load(patronictl(run, dcs.show_argv(str(run))))
    assert "log_min_duration_statement" not in final["postgresql"]["parameters"]
    assert dcs.patch(final, want, dcs.managed_paths(want)) == {}
