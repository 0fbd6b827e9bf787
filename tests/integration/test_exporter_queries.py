"""pgsteady's custom exporter queries, run by the real prometheus-postgres-exporter.

The Debian package's exporter (0.11.1 on bookworm) logs in to a real Postgres 15 as a
monitoring role that has pg_monitor and nothing more, loads
files/metrics/postgres-exporter-queries.yaml with ``--extend.query-path`` and is scraped
over HTTP. Each ``pgsteady_*`` metric shows the server's real state as it changes (a
failing archive_command, a replication slot without and with a client, a long
transaction), the built-in metrics the alert rules use exist under their names, and
with the role's search_path led by a schema full of traps (functions, aggregates,
operators and views named like the catalog's, each raising an error) every custom query
still answers: no name in them resolves outside pg_catalog.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from pgserver import OS_USER, PG_BIN, PgServer, _as_postgres, available, free_port, own

from pgsteady.postgres.tuning import TuningInput, tune
from pgsteady.units import GIB

REPO = Path(__file__).resolve().parents[2]
QUERIES = REPO / "files/metrics/postgres-exporter-queries.yaml"
EXPORTER = shutil.which("prometheus-postgres-exporter") or "/usr/bin/prometheus-postgres-exporter"
MONITOR = "watcher"
MONITOR_PASSWORD = "w-Pass-93f1"

pytestmark = [
    pytest.mark.skipif(not available(), reason="Postgres 15 server binaries missing"),
    pytest.mark.skipif(
        not Path(EXPORTER).exists(),
        reason="prometheus-postgres-exporter missing (sh scripts/ensure-test-host)",
    ),
]

SAMPLE = re.compile(r"^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$")
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')

Samples = dict[str, list[tuple[dict[str, str], float]]]


def parse(text: str) -> Samples:
    """Prometheus' text format: metric name -> [(labels, value)]."""
    out: Samples = {}
    for line in text.splitlines():
        m = SAMPLE.match(line)
        if m:
            labels = dict(LABEL.findall(m.group(2) or ""))
            out.setdefault(m.group(1), []).append((labels, float(m.group(3))))
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    """The one sample of ``name`` whose labels include ``labels``."""
    found = [v for ls, v in samples.get(name, []) if labels.items() <= ls.items()]
    assert len(found) == 1, f"{name}{labels}: {samples.get(name)}"
    return found[0]


class Exporter:
    """The exporter binary logged in as the monitoring role over the server's socket,
    its password in a file (as the deployed container gets it), on a free port."""

    def __init__(self, srv: PgServer) -> None:
        self.port = free_port()
        pw = srv.root / "monitor_password"
        pw.write_text(MONITOR_PASSWORD + "\n")
        pw.chmod(0o600)
        env = {
            "PATH": "/usr/bin:/bin",
            "DATA_SOURCE_URI": f":{srv.port}/postgres?host={srv.sockdir}&sslmode=disable",
            "DATA_SOURCE_USER": MONITOR,
            "DATA_SOURCE_PASS_FILE": str(pw),
        }
        self.log = srv.root / f"exporter-{self.port}.log"
        self.proc = subprocess.Popen(
            [EXPORTER, f"--web.listen-address=127.0.0.1:{self.port}",
             f"--extend.query-path={QUERIES}", "--log.level=info"],
            env=env, stdout=self.log.open("wb"), stderr=subprocess.STDOUT, cwd="/",
        )  # fmt: skip

    def scrape(self, timeout: float = 30) -> Samples:
        deadline = time.monotonic() + timeout
        while True:
            try:
                url = f"http://127.0.0.1:{self.port}/metrics"
                with urllib.request.urlopen(url, timeout=10) as resp:
                    return parse(resp.read().decode())
            except (urllib.error.URLError, ConnectionError):
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise AssertionError(self.log.read_text(errors="replace")) from None
                time.sleep(0.2)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


def until(check, timeout: float = 30, step: float = 0.5):  # noqa: ANN001, ANN201
    """Poll ``check()`` until it returns a true value; that value, or fail."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {timeout} s: {check}")
        time.sleep(step)


def sql(srv: PgServer, query: str) -> str:
    proc = srv.psql_as_os_user(query)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def receive(srv: PgServer, slot: str) -> subprocess.Popen[bytes]:
    """A real WAL stream on ``slot`` (pg_receivewal), as a standby's would be."""
    wal = srv.root / "received-wal"
    wal.mkdir()
    own(wal, 0o700)
    return subprocess.Popen(
        _as_postgres([str(PG_BIN / "pg_receivewal"), "-h", str(srv.sockdir), "-p",
                      str(srv.port), "-U", OS_USER, "-D", str(wal), "--slot", slot,
                      "--no-loop"]),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd="/",
    )  # fmt: skip


def end(proc: subprocess.Popen[bytes]) -> None:
    """Stop a process this test started (by its PID) and reap it."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
    proc.wait(timeout=10)


@pytest.fixture
def server() -> Iterator[PgServer]:
    """Archiving on, into an archive_command that fails; the monitoring role as
    init_db.sql makes it (LOGIN, pg_monitor, search_path pg_catalog, public)."""
    srv = PgServer()
    hba = (
        "local all postgres peer\n"
        "local replication postgres peer\n"
        f"local all {MONITOR} scram-sha-256\n"
    )
    overrides = {"archive_mode": "on", "archive_command": "false", "archive_timeout": "60s"}
    srv.configure(tune(TuningInput(15, "web", 1 * GIB, 1)), overrides, hba=hba)
    srv.start()
    try:
        sql(srv, f"CREATE ROLE {MONITOR} LOGIN PASSWORD '{MONITOR_PASSWORD}'; "
                 f"GRANT pg_monitor TO {MONITOR}; "
                 f"ALTER ROLE {MONITOR} SET search_path = pg_catalog, public")  # fmt: skip
        yield srv
    finally:
        srv.cleanup()


@pytest.fixture
def exporter(server: PgServer) -> Iterator[Exporter]:
    exp = Exporter(server)
    try:
        yield exp
    finally:
        exp.stop()


def test_builtin_metrics_the_rules_use_exist(server: PgServer, exporter: Exporter) -> None:
    m = exporter.scrape()
    assert value(m, "pg_up") == 1
    assert value(m, "pg_settings_max_connections") == float(sql(server, "SHOW max_connections"))
    assert value(m, "pg_settings_archive_timeout_seconds") == 60
    assert value(m, "pg_stat_database_deadlocks", datname="postgres") == 0
    assert value(m, "pg_stat_activity_count", datname="postgres", state="active") >= 1
    assert value(m, "pg_stat_activity_max_tx_duration", datname="postgres", state="active") >= 0
    assert "pg_stat_archiver_failed_count" in m
    # Not built into 0.11.1 (pgsteady's queries give them): the rules must not use these.
    assert "pg_postmaster_start_time_seconds" not in m
    assert "pg_replication_lag" not in m
    started = float(sql(server, "SELECT extract(epoch FROM pg_postmaster_start_time())"))
    assert value(m, "pgsteady_postmaster_start_time_seconds") == pytest.approx(started)
    assert value(m, "pgsteady_postmaster_in_recovery") == 0
    frozen = sql(server, "SELECT age(datfrozenxid) FROM pg_database WHERE datname = 'template1'")
    assert value(m, "pgsteady_database_xid_age", datname="template1") == float(frozen)


def test_archiver_metrics_follow_a_failing_then_fixed_archive_command(
    server: PgServer, exporter: Exporter
) -> None:
    m = exporter.scrape()
    assert value(m, "pgsteady_archiver_failing") == 0
    assert value(m, "pgsteady_archiver_ready_segments") == 0
    assert value(m, "pgsteady_archiver_oldest_ready_age_seconds") == 0

    sql(server, "CREATE TABLE filler AS SELECT g FROM generate_series(1, 1000) g")
    sql(server, "SELECT pg_switch_wal()")
    m = until(lambda: (s := exporter.scrape()) and value(s, "pgsteady_archiver_failing") == 1 and s)
    assert value(m, "pgsteady_archiver_ready_segments") >= 1
    time.sleep(2)
    m = exporter.scrape()
    assert value(m, "pgsteady_archiver_failing") == 1
    assert value(m, "pgsteady_archiver_oldest_ready_age_seconds") >= 2

    sql(server, "ALTER SYSTEM SET archive_command = 'true'")
    server.reload()
    m = until(
        lambda: (s := exporter.scrape()) and value(s, "pgsteady_archiver_ready_segments") == 0
        and s, timeout=90,
    )  # fmt: skip
    assert value(m, "pgsteady_archiver_failing") == 0
    assert value(m, "pgsteady_archiver_oldest_ready_age_seconds") == 0


def test_replication_slot_and_replay_metrics(server: PgServer, exporter: Exporter) -> None:
    sql(server, "SELECT pg_create_physical_replication_slot('standby1', true)")
    sql(server, "CREATE TABLE filler AS SELECT g FROM generate_series(1, 1000) g")
    m = exporter.scrape()
    assert value(m, "pgsteady_replication_slot_active", slot_name="standby1") == 0
    retained = value(m, "pgsteady_replication_slot_retained_bytes", slot_name="standby1")
    assert retained > 0
    assert "pgsteady_replication_replay_lag_seconds" not in m

    receiver = receive(server, "standby1")
    try:
        m = until(
            lambda: (
                (s := exporter.scrape())
                and value(s, "pgsteady_replication_slot_active", slot_name="standby1") == 1
                and "pgsteady_replication_replay_lag_seconds" in s
                # the walsender streams: what the cluster's not-streaming rule looks for.
                # It passes 'startup' and 'catchup' first (CI caught a scrape in between);
                # a pg_receivewal reports no replay position, so its replay lag counts as 0
                and value(s, "pgsteady_replication_streaming", application_name="pg_receivewal")
                == 1
                and s
            )
        )
        assert value(m, "pgsteady_replication_replay_lag_seconds",
                     application_name="pg_receivewal") >= 0  # fmt: skip
        lag = value(m, "pgsteady_replication_replay_lag_bytes", application_name="pg_receivewal")
        assert lag >= 0
    finally:
        end(receiver)


def test_a_standby_reports_its_wal_receiver_until_its_primary_stops(
    server: PgServer, exporter: Exporter
) -> None:
    """What PostgresClusterNoPrimary takes as a replica's evidence of a primary (review R10
    L6): a real standby (pg_basebackup -R) reports pgsteady_wal_receiver_streaming 1 to
    the monitoring role while it streams, and no such series once its primary is gone; a
    primary never has one."""
    standby = PgServer()
    shutil.rmtree(standby.data)
    standby_exporter = None
    try:
        subprocess.run(
            _as_postgres([str(PG_BIN / "pg_basebackup"), "-D", str(standby.data), "-R",
                          "-X", "stream", "-c", "fast", "--no-sync", "-h",
                          str(server.sockdir), "-p", str(server.port), "-U", OS_USER]),
            check=True, capture_output=True, cwd="/",
        )  # fmt: skip
        hba = f"local all postgres peer\nlocal all {MONITOR} scram-sha-256\n"
        standby.configure(tune(TuningInput(15, "web", 1 * GIB, 1)), hba=hba)
        standby.start()
        standby_exporter = Exporter(standby)
        m = until(
            lambda: (s := standby_exporter.scrape())
            and "pgsteady_wal_receiver_streaming" in s and s
        )  # fmt: skip
        assert value(m, "pgsteady_wal_receiver_streaming") == 1
        assert value(m, "pgsteady_postmaster_in_recovery") == 1
        assert "pgsteady_wal_receiver_streaming" not in exporter.scrape()  # the primary
        server.stop()
        until(
            lambda: (
                "pgsteady_wal_receiver_streaming" not in (s := standby_exporter.scrape())
                and value(s, "pg_up") == 1
            ),
            timeout=60,
        )
    finally:
        if standby_exporter is not None:
            standby_exporter.stop()
        standby.cleanup()


def test_oldest_transaction_leaves_only_the_superusers_pg_dump_out(
    server: PgServer, exporter: Exporter
) -> None:
    """The backup's pg_dump (the superuser's) is left out; a role that only calls itself
    pg_dump (any client can set application_name) is not (review L1)."""

    def hold(app: str, user: str = OS_USER) -> subprocess.Popen[bytes]:
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "PGAPPNAME": app}
        if user != OS_USER:
            env["PGPASSWORD"] = MONITOR_PASSWORD
        return subprocess.Popen(
            _as_postgres([str(PG_BIN / "psql"), "-h", str(server.sockdir), "-p",
                          str(server.port), "-U", user, "-d", "postgres", "-X", "-q", "-c",
                          "BEGIN; SELECT txid_current(); SELECT pg_sleep(60); COMMIT;"]),
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd="/",
        )  # fmt: skip

    def holding(user: str) -> bool:
        query = (
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pg_dump' "
            f"AND usename = '{user}' AND xact_start IS NOT NULL"
        )
        return sql(server, query) == "1"

    holders = [hold("pg_dump")]
    try:
        until(lambda: holding(OS_USER))
        time.sleep(3)
        assert value(exporter.scrape(), "pgsteady_transaction_oldest_age_seconds") < 2
        holders.append(hold("pg_dump", user=MONITOR))
        until(lambda: holding(MONITOR))
        time.sleep(3)
        age = value(exporter.scrape(), "pgsteady_transaction_oldest_age_seconds")
        assert 2 <= age < 30
    finally:
        for proc in holders:
            end(proc)


#: Names the custom queries use, planted in a schema searched BEFORE pg_catalog; each
#: raises when called. An unqualified name in a query would resolve to one of them.
TRAPS = r"""
CREATE SCHEMA trap;
CREATE FUNCTION trap.sprung() RETURNS integer LANGUAGE plpgsql AS
  $$ BEGIN RAISE EXCEPTION 'pgsteady trap sprung'; END $$;
CREATE FUNCTION trap.b2(text, text) RETURNS boolean LANGUAGE sql AS 'SELECT trap.sprung() = 1';
CREATE FUNCTION trap.b2n(name, text) RETURNS boolean LANGUAGE sql AS 'SELECT trap.sprung() = 1';
CREATE FUNCTION trap.btt(timestamptz, timestamptz) RETURNS boolean LANGUAGE sql
  AS 'SELECT trap.sprung() = 1';
CREATE FUNCTION trap.itt(timestamptz, timestamptz) RETURNS interval LANGUAGE sql
  AS 'SELECT trap.sprung() * interval ''1 s''';
CREATE OPERATOR trap.~~ (LEFTARG = text, RIGHTARG = text, FUNCTION = trap.b2);
CREATE OPERATOR trap.~~ (LEFTARG = name, RIGHTARG = text, FUNCTION = trap.b2n);
CREATE OPERATOR trap.!~~ (LEFTARG = text, RIGHTARG = text, FUNCTION = trap.b2);
CREATE OPERATOR trap.= (LEFTARG = text, RIGHTARG = text, FUNCTION = trap.b2);
CREATE OPERATOR trap.> (LEFTARG = timestamptz, RIGHTARG = timestamptz, FUNCTION = trap.btt);
CREATE OPERATOR trap.- (LEFTARG = timestamptz, RIGHTARG = timestamptz, FUNCTION = trap.itt);
CREATE FUNCTION trap.now() RETURNS timestamptz LANGUAGE sql
  AS 'SELECT trap.sprung()::text::timestamptz';
CREATE FUNCTION trap.date_part(text, interval) RETURNS float8 LANGUAGE sql
  AS 'SELECT trap.sprung()';
CREATE FUNCTION trap.date_part(text, timestamptz) RETURNS float8 LANGUAGE sql
  AS 'SELECT trap.sprung()';
CREATE FUNCTION trap.age(xid) RETURNS integer LANGUAGE sql AS 'SELECT trap.sprung()';
CREATE FUNCTION trap.pg_postmaster_start_time() RETURNS timestamptz LANGUAGE sql
  AS 'SELECT trap.sprung()::text::timestamptz';
CREATE FUNCTION trap.pg_is_in_recovery() RETURNS boolean LANGUAGE sql AS 'SELECT trap.sprung() = 1';
CREATE FUNCTION trap.pg_current_wal_lsn() RETURNS pg_lsn LANGUAGE sql
  AS 'SELECT trap.sprung()::text::pg_lsn';
CREATE FUNCTION trap.pg_last_wal_receive_lsn() RETURNS pg_lsn LANGUAGE sql
  AS 'SELECT trap.sprung()::text::pg_lsn';
CREATE FUNCTION trap.pg_wal_lsn_diff(pg_lsn, pg_lsn) RETURNS numeric LANGUAGE sql
  AS 'SELECT trap.sprung()';
CREATE FUNCTION trap.pg_ls_archive_statusdir(OUT name text, OUT size bigint,
  OUT modification timestamptz) RETURNS SETOF record LANGUAGE sql
  AS 'SELECT trap.sprung()::text, 0::bigint, now()';
CREATE FUNCTION trap.sf(bigint) RETURNS bigint LANGUAGE sql AS 'SELECT trap.sprung()::bigint';
CREATE AGGREGATE trap.count(*) (SFUNC = trap.sf, STYPE = bigint, INITCOND = 0);
CREATE FUNCTION trap.sff(float8, float8) RETURNS float8 LANGUAGE sql
  AS 'SELECT trap.sprung()::float8';
CREATE AGGREGATE trap.max(float8) (SFUNC = trap.sff, STYPE = float8);
CREATE FUNCTION trap.sft(timestamptz, timestamptz) RETURNS timestamptz LANGUAGE sql
  AS 'SELECT trap.sprung()::text::timestamptz';
CREATE AGGREGATE trap.min(timestamptz) (SFUNC = trap.sft, STYPE = timestamptz);
CREATE VIEW trap.pg_stat_archiver AS SELECT * FROM pg_catalog.pg_stat_archiver
  WHERE trap.sprung() = 1;
CREATE VIEW trap.pg_stat_activity AS SELECT * FROM pg_catalog.pg_stat_activity
  WHERE trap.sprung() = 1;
CREATE VIEW trap.pg_database AS SELECT * FROM pg_catalog.pg_database WHERE trap.sprung() = 1;
CREATE VIEW trap.pg_replication_slots AS SELECT * FROM pg_catalog.pg_replication_slots
  WHERE trap.sprung() = 1;
CREATE VIEW trap.pg_stat_replication AS SELECT * FROM pg_catalog.pg_stat_replication
  WHERE trap.sprung() = 1;
GRANT USAGE ON SCHEMA trap TO PUBLIC;
GRANT SELECT ON ALL TABLES IN SCHEMA trap TO PUBLIC;
"""

CUSTOM = (
    "pgsteady_postmaster_start_time_seconds", "pgsteady_postmaster_in_recovery",
    "pgsteady_transaction_oldest_age_seconds", "pgsteady_archiver_failing",
    "pgsteady_archiver_ready_segments", "pgsteady_archiver_oldest_ready_age_seconds",
    "pgsteady_database_xid_age", "pgsteady_replication_slot_active",
    "pgsteady_replication_slot_retained_bytes", "pgsteady_replication_replay_lag_bytes",
    "pgsteady_replication_streaming",
)  # fmt: skip


def test_custom_queries_resolve_nothing_outside_pg_catalog(server: PgServer) -> None:
    sql(server, TRAPS)
    sql(server, f"ALTER ROLE {MONITOR} SET search_path = trap, pg_catalog")
    # Rows in every view the queries read, so a trap in a WHERE clause would run.
    sql(server, "SELECT pg_create_physical_replication_slot('standby1', true)")
    sql(server, "CREATE TABLE filler AS SELECT g FROM generate_series(1, 1000) g")
    sql(server, "SELECT pg_switch_wal()")
    # Control: an unqualified name in the monitoring role's session springs a trap.
    control = subprocess.run(
        [str(PG_BIN / "psql"), "-h", str(server.sockdir), "-p", str(server.port), "-U",
         MONITOR, "-d", "postgres", "-XAtq", "-c",
         "SELECT count(*) FROM pg_ls_archive_statusdir() WHERE name LIKE '%.ready'"],
        env={"PATH": "/usr/bin:/bin", "PGPASSWORD": MONITOR_PASSWORD},
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert "pgsteady trap sprung" in control.stderr
    receiver = receive(server, "standby1")
    exp = Exporter(server)
    try:
        m = until(
            lambda: (
                (s := exp.scrape())
                and "pgsteady_replication_replay_lag_seconds" in s
                and value(s, "pgsteady_archiver_failing") == 1
                and s
            )
        )
        assert [name for name in CUSTOM if name not in m] == []
        assert value(m, "pgsteady_replication_slot_active", slot_name="standby1") == 1
        assert value(m, "pgsteady_archiver_ready_segments") >= 1
        assert value(m, "pgsteady_database_xid_age", datname="postgres") > 0
    finally:
        exp.stop()
        end(receiver)
