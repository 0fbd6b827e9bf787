"""The monitor's performance section against real load: the collect script itself runs
(its ``docker exec ... psql`` reaching a real server through a stand-in docker), after
pgbench, a deliberately slow statement and a sort bigger than work_mem."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest
from appdb import APP, APP_PASSWORD, DB, app, init_db, running_server, superuser_run
from pgserver import PG_BIN, PgServer, available

from pgsteady.monitor import model
from pgsteady.monitor.collect import collect_script, parse_sections
from pgsteady.settings import HostFacts, build_settings

pytestmark = [
    pytest.mark.skipif(not available(), reason="Postgres 15 server binaries missing"),
    pytest.mark.skipif(os.geteuid() != 0, reason="runs psql as the postgres OS user"),
]

#: ``docker exec [-i] [-e VAR=value]... -u postgres CONTAINER psql ARGS``: psql over the
#: test server's socket as the postgres OS user (the container's superuser login).
FAKE_DOCKER = r"""#!/bin/sh
[ "$1" = exec ] || { echo "fake docker: $1 not supported" >&2; exit 1; }
shift
while [ $# -gt 0 ]; do
    case "$1" in
    -i) shift ;;
    -e) export "$2"; shift 2 ;;
    -u) shift 2 ;;
    *) break ;;
    esac
done
shift
[ "$1" = psql ] || { echo "fake docker: exec $1 not supported" >&2; exit 1; }
shift
exec runuser -u postgres -- env PGOPTIONS="$PGOPTIONS" PGCONNECT_TIMEOUT=5 \
    "$FAKE_PG_BIN/psql" -h "$FAKE_SOCK" -p "$FAKE_PORT" "$@"
"""

SLOW = "SELECT pg_sleep(0.6), count(*) FROM pgbench_branches"
SPILL = (
    "SELECT count(*) FROM (SELECT md5(g::text) AS m FROM generate_series(1, 200000) g "
    "ORDER BY m OFFSET 0) s"
)


@pytest.fixture
def server():
    with running_server() as srv:
        init_db(srv)
        yield srv


def status(srv: PgServer, tmp_path: Path) -> model.HostStatus:
    """Run the real collect script and derive the host's status from its sections."""
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    docker = bindir / "docker"
    docker.write_text(FAKE_DOCKER)
    docker.chmod(docker.stat().st_mode | stat.S_IEXEC)
    data = {"app_dir": str(tmp_path / "app"), "compose_project": "perf",
            "postgres_db": DB, "postgres_user": APP}  # fmt: skip
    settings = build_settings(data, HostFacts(0, 0))
    env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}", "FAKE_PG_BIN": str(PG_BIN),
           "FAKE_SOCK": str(srv.sockdir), "FAKE_PORT": str(srv.port)}  # fmt: skip
    proc = subprocess.run(["sh", "-s"], input=collect_script(settings), env=env,
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    sections = parse_sections(proc.stdout)
    assert sections["performance"]["rc"] == 0, sections["performance"]
    return model.derive({"host": "perf", "sections": sections}, settings)


def pgbench(srv: PgServer, *args: str) -> None:
    env = {**os.environ, "PGPASSWORD": APP_PASSWORD}
    proc = subprocess.run(
        [str(PG_BIN / "pgbench"), "-h", "127.0.0.1", "-p", str(srv.port), "-U", APP, *args, DB],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr


def test_performance_section_under_real_load(server: PgServer, tmp_path: Path) -> None:
    pgbench(server, "-i", "-s", "1", "-q")
    pgbench(server, "-c", "2", "-t", "150", "-n")
    with app(server) as conn, conn.cursor() as cur:
        for _ in range(3):
            cur.execute(SLOW)
        for _ in range(350):  # the most called statement, were it not left out
            cur.execute(f"ALTER ROLE {APP} PASSWORD '{APP_PASSWORD}'")
        # The same secret behind a comment and inside a DO block (utility statements and
        # DO bodies keep their text verbatim on 15 and 17 alike).
        cur.execute(f"/* rotate */ ALTER ROLE {APP} PASSWORD '{APP_PASSWORD}'")
        quoted = APP_PASSWORD.replace("'", "''")
        cur.execute(f"DO $$BEGIN EXECUTE 'ALTER ROLE {APP} PASSWORD ''{quoted}'''; END$$")
        # The application cannot hide its own statements by naming the monitor's marker.
        for _ in range(400):
            cur.execute("SELECT 1 AS pgsteady_monitor_hidden")
        cur.execute("SET work_mem = '64kB'")
        cur.execute(SPILL)
        assert cur.fetchone() == (200000,)

    host = status(server, tmp_path)
    perf = host.performance
    assert perf.available and perf.statements_available, perf
    doc = json.loads(json.dumps(model.report([host])))  # make status JSON=1
    assert "pg_sleep" in doc["hosts"][0]["performance"]["by_total_time"][0]["query"]
    assert APP_PASSWORD not in json.dumps(doc)  # role statements keep their text verbatim
    by_calls = doc["hosts"][0]["performance"]["by_calls"]
    assert "pgsteady_monitor_hidden" in by_calls[0]["query"], by_calls
    assert perf.database == DB
    assert perf.cache_hit_ratio is not None and 0 <= perf.cache_hit_ratio <= 1
    assert perf.block_accesses > 0
    assert perf.temp_files and perf.temp_files > 0 and perf.temp_bytes > 0
    heaviest = perf.by_total_time[0]
    assert "pg_sleep" in heaviest.query and heaviest.calls == 3, perf.by_total_time
    assert heaviest.user == APP  # another role's text, read in full by the collector
    # pgbench -i's COPY or VACUUM may take longer per call on a busy machine
    assert heaviest.queryid in [s.queryid for s in perf.by_mean_time]
    assert [s.mean_ms for s in perf.by_mean_time] == sorted(
        (s.mean_ms for s in perf.by_mean_time), reverse=True
    )
    assert perf.by_calls[0].calls >= 300  # 2 clients x 150 transactions
    assert [s.calls for s in perf.by_calls] == sorted((s.calls for s in perf.by_calls),
                                                       reverse=True)  # fmt: skip
    spill = perf.by_temp_blks_written[0]
    assert "md5" in spill.query and spill.temp_blks_written > 0
    assert perf.statements_temp_blks_written >= spill.temp_blks_written
    # The collector's own statements (a superuser's, with the marker) are left out; the
    # application's statement naming the marker is not.
    assert all(s.user == APP for s in perf.by_calls if "pgsteady_monitor" in s.query)
    assert len(perf.by_calls) <= 5


#: The application (owner of schema public) re-points the name pg_stat_statements at a
#: view whose every row runs its function: were the superuser's collector to read the
#: name, the function would run as the superuser and fail the section.
TRAP = """
ALTER SCHEMA public RENAME TO public_moved;
CREATE SCHEMA public;
CREATE FUNCTION public.trap() RETURNS bigint LANGUAGE plpgsql AS
  $$ BEGIN RAISE EXCEPTION 'trap fired as %', current_user; END $$;
CREATE VIEW public.pg_stat_statements AS SELECT public.trap() AS queryid;
"""


def test_the_collector_never_reads_what_the_application_can_repoint(
    server: PgServer, tmp_path: Path
) -> None:
    with app(server) as conn, conn.cursor() as cur:
        for _ in range(50):
            cur.execute("SELECT 42 AS before_the_trap")
        cur.execute(TRAP)
    # the trap is live: reading the name as the superuser runs the application's function
    armed = superuser_run(server, "SELECT count(*) FROM public.pg_stat_statements")
    assert armed.returncode != 0 and "trap fired as postgres" in armed.stderr
    perf = status(server, tmp_path).performance
    assert perf.statements_available and perf.error is None
    assert "before_the_trap" in perf.by_calls[0].query and perf.by_calls[0].calls == 50
