"""REAL Patroni 4.0.7 members started from the rendered files (as the postgres user, with
the host's Postgres 15) against 3 real etcd members with TLS and RBAC on.

Proves: Patroni authenticates to etcd as its prefix-limited user over a CN-less client
certificate and takes the leader key; its REST API answers over verified HTTPS only to a
client certificate, on every endpoint (review R8 L1), and gates state-changing calls by
source, client certificate and password; a second member clones the leader with
pg_basebackup and streams over TLS as the replication role, checking the leader's
certificate (sslmode=verify-full) and presenting its own, without which the members-only
line refuses the right password (R8 L2), and /replica?lag= says 200 for it; the rendered
haproxy.cfg, run by the real HAProxy, sends postgres_port to the leader and
postgres_replica_port to the replica, and follows a switchover made through the REST API.

Both members share this host, so each gets its own socket directory and certificate
paths as local parameters, which on real hosts are the same path on every member; and
the replicas dial from 127.0.0.1 here, which one extra pg_hba line admits (on real hosts
they dial from their private address, which the rendered per-member lines admit).
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pgsteady.cluster import patroni
from pgsteady.cluster.topology import Cluster
from tests.support.cluster_binaries import patroni as patroni_bin
from tests.support.cluster_binaries import require_file
from tests.support.etcd_lab import running_etcd
from tests.support.patroni_lab import (
    BIN_DIR,
    REPLICATION_PW,
    Live,
    as_postgres,
    haproxy_in_front,
    https,
    postgres_root,
    reaches,
    start_member,
    stop,
    wait_status,
)

pytestmark = pytest.mark.timeout(600)


@pytest.fixture
def root() -> Iterator[Path]:
    """A directory the postgres user can reach (pytest's tmp dirs are root-only)."""
    with postgres_root() as path:
        yield path


def test_patroni_leads_clones_over_tls_and_guards_its_rest_api(tmp_path: Path, root: Path) -> None:
    require_file(str(BIN_DIR / "pg_ctl"), "postgresql-15")
    patroni_bin()
    rest_pw = secrets.token_urlsafe(16)
    members: list[Live] = []
    with running_etcd(tmp_path) as lab:
        c, ca = lab.cluster, lab.tmp / "ca.crt"
        try:
            m1 = start_member(lab, root, "m1", rest_pw)
            members.append(m1)
            base = f"https://{c.member('m1').address}:{c.rest_port}"
            wait_status(m1, f"{base}/primary", ca, 200)
            leader = lab.ctl("get", c.prefix + "leader", "--print-value-only", user="patroni")
            assert leader.stdout.strip() == "m1", leader.stderr

            # the REST API's gates on a state-changing call
            client = (lab.tmp / "client.crt", lab.tmp / "client.key")
            auth, wrong = ("patroni", rest_pw), ("patroni", "not-it")
            reload = f"{base}/reload"
            outsider = https(reload, ca, "POST", cert=client, auth=auth, source="127.0.0.9")
            assert outsider == (403, "Access is denied")
            # verify_client: required (R8 L1): no endpoint answers without a client
            # certificate, the read-only ones (the whole pg_hba in /config) included
            for path in ("/config", "/patroni", "/cluster", "/history", "/metrics"):
                assert https(f"{base}{path}", ca, anonymous=True) == (0, ""), path
            assert https(reload, ca, "POST", auth=auth, anonymous=True) == (0, "")
            config = https(f"{base}/config", ca, cert=client)  # the control
            assert config[0] == 200 and "pg_hba" in config[1], config
            assert https(reload, ca, "POST", cert=client)[0] == 401
            assert https(reload, ca, "POST", cert=client, auth=wrong)[0] == 401
            # the control: certificate, password and an allowed source together pass
            assert https(reload, ca, "POST", cert=client, auth=auth)[0] in (200, 202)

            m1.sql(c.member_port, "CREATE TABLE probe (x int); INSERT INTO probe VALUES (42)")
            m2 = start_member(lab, root, "m2", rest_pw)
            members.append(m2)
            m2_api = f"https://{c.member('m2').address}:{c.rest_port}"
            lag = f"{m2_api}/replica?lag={c.replica_max_lag}"
            wait_status(m2, lag, ca, 200)
            assert https(f"{m2_api}/primary", ca)[0] == 503
            assert https(f"{base}/replica", ca)[0] == 503

            # /replica answers 200 once m2 runs as a replica within the lag limit, which can
            # come a moment before its WAL receiver has connected: wait for the stream.
            deadline, rows = time.monotonic() + 60, ""
            while time.monotonic() < deadline:
                rows = m1.sql(
                    c.member_port,
                    "SELECT r.usename, r.application_name, s.ssl FROM pg_stat_replication r "
                    "JOIN pg_stat_ssl s USING (pid) WHERE r.state = 'streaming'",
                )
                if rows:
                    break
                time.sleep(0.5)
            assert rows == "replicator|m2|t"
            conninfo = m2.sql(c.member_port, "SHOW primary_conninfo")
            assert "sslmode=verify-full" in conninfo and "sslrootcert=" in conninfo
            assert "sslcert=" in conninfo and "sslkey=" in conninfo  # R8 L2
            assert "password" not in conninfo  # it comes from the 0600 pgpass file
            # R8 L2: the replication line wants a client certificate with the password
            assert_replication_needs_a_client_certificate(c, m2)
            deadline = time.monotonic() + 60
            while m2.sql(c.member_port, "SELECT coalesce(max(x), 0) FROM probe") != "42":
                assert time.monotonic() < deadline, "the row never reached the replica"
                time.sleep(1)
            with haproxy_in_front(lab, root):
                reaches(lab, root, c.postgres_port, "127.0.0.2|f")
                reaches(lab, root, c.replica_port, "127.0.0.3|t")
                # a switchover through the gated REST API: the leader moves, the old one
                # rejoins as a replica, and HAProxy follows both
                body = json.dumps({"leader": "m1", "candidate": "m2"})
                switch = https(f"{base}/switchover", ca, "POST", client, auth, data=body)
                assert switch[0] == 200, switch
                wait_status(m2, f"{m2_api}/primary", ca, 200, timeout=60)
                reaches(lab, root, c.postgres_port, "127.0.0.3|f")
                reaches(lab, root, c.replica_port, "127.0.0.2|t", timeout=120)
        finally:
            for member in reversed(members):
                stop(member)


def assert_replication_needs_a_client_certificate(c: Cluster, m2: Live) -> None:
    """A replication connection with the right password but no client certificate is
    refused by the members-only line (clientcert=verify-ca); the control with m2's own
    certificate (as Patroni presents it) passes. As the postgres user, from 127.0.0.1."""
    base = [
        f"host=127.0.0.2 port={c.member_port} user={patroni.REPLICATION_USER}",
        "replication=true dbname=replication sslmode=verify-ca",
        f"sslrootcert={m2.dir / 'ca.crt'}",
    ]
    with_cert = [*base, f"sslcert={m2.dir / 'server.crt'} sslkey={m2.dir / 'server.key'}"]
    # no certificate at all: libpq must not pick up ~/.postgresql/postgresql.crt either
    without = [*base, "sslcert=/nonexistent sslkey=/nonexistent"]
    env = {"PGPASSWORD": REPLICATION_PW, "PATH": "/usr/bin:/bin"}
    out = {
        name: as_postgres(
            [str(BIN_DIR / "psql"), " ".join(dsn), "-XAtq", "-c", "IDENTIFY_SYSTEM"], env
        )
        for name, dsn in (("with", with_cert), ("without", without))
    }
    assert out["with"].returncode == 0, out["with"].stderr
    assert out["without"].returncode != 0
    assert "certificate" in out["without"].stderr, out["without"].stderr
