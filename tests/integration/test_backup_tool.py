"""The backup tool against a real Postgres container: backups you can restore.

The tool is installed into a scratch APP_DIR as the deploy installs it and run with the
host's python3, as cron runs it. Needs Docker and an image from
files/image/build-debian-image.sh (label io.pgsteady.recipe).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import signal
import subprocess
import time

import pytest
from backup_env import DOCKER, HOST_PYTHON, Postgres, Tool, docker, find_image

from pgsteady.backuptool import config as tool_config
from pgsteady.backuptool.docker import Docker
from pgsteady.backuptool.dump import verifier
from pgsteady.backuptool.errors import BackupError

IMAGE = find_image()


def needs_pg(test):
    """Mark a test that needs Docker and the test image."""
    skip = pytest.mark.skipif(IMAGE is None, reason="no image labelled io.pgsteady.recipe")
    return pytest.mark.docker(skip(test))


SCHEMA = r"""
CREATE SCHEMA other;
CREATE TABLE big (id bigserial PRIMARY KEY, label text NOT NULL, at timestamptz, doc jsonb);
INSERT INTO big (label, at, doc)
  SELECT md5(g::text), '2024-01-01'::timestamptz + g * interval '1 minute',
         jsonb_build_object('g', g, 'even', g % 2 = 0)
  FROM generate_series(1, 120000) g;
CREATE TABLE small (k text PRIMARY KEY, v text, n numeric);
INSERT INTO small VALUES ('null', NULL, NULL), ('unicode', 'žluťoučký kůň ☃', 1.5),
  ('newline', E'a\nb\tc', -0.000001), ('quote', 'it''s "q"', 1e20);
CREATE TABLE "other"."Mixed Case" (id int PRIMARY KEY, big_id bigint REFERENCES big (id));
INSERT INTO "other"."Mixed Case" SELECT g, g FROM generate_series(1, 5000) g;
CREATE TABLE events (id int, day date NOT NULL) PARTITION BY RANGE (day);
CREATE TABLE events_2024 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE events_2025 PARTITION OF events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
INSERT INTO events SELECT g, '2024-01-01'::date + g FROM generate_series(0, 700) g;
CREATE TABLE empty_one (x int);
CREATE INDEX ON big (at);
"""


@pytest.fixture(scope="module")
def pg():
    container = Postgres(IMAGE)
    try:
        container.sql(SCHEMA)
        yield container
    finally:
        container.remove()


@pytest.fixture
def tool(tmp_path, pg):
    return Tool.install(tmp_path / "app", pg.name, ["app"])


def ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def failed(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode != 0, f"unexpectedly succeeded:\n{proc.stdout}\n{proc.stderr}"
    return proc.stderr


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def no_temp_files(tool: Tool) -> bool:
    return not [f for f in tool.files() if os.path.basename(f).startswith(".tmp-")]


# --- configuration (no container needed) ---------------------------------------------


def test_config_errors_name_every_key():
    with pytest.raises(BackupError) as err:
        tool_config.config_from_dict(
            {"databases": [], "backup_dir": "/b", "keep_days": 0, "verfy": "x"}
        )
    message = str(err.value)
    for part in ("verfy: unknown key", "container: missing", "databases: []"):
        assert part in message
    config = tool_config.config_from_dict(
        {"container": "c", "databases": ["app"], "backup_dir": "/b", "keep_weeks": 0}
    )
    assert (config.keep_days, config.keep_weeks, config.docker, config.verify) == (
        7,
        0,
        "docker",
        "full",
    )
    with pytest.raises(BackupError, match="keep_days: 0 is not accepted"):
        tool_config.config_from_dict(
            {"container": "c", "databases": ["a"], "backup_dir": "/b", "keep_days": 0}
        )


# --- with a real server -----------------------------------------------------------------


@needs_pg
def test_backup_produces_verified_files_manifest_and_status(tool, pg):
    stale = tool.backup_dir / "last" / ".tmp-app-20200101-000000.dump"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"half a dump")
    started = time.monotonic()
    proc = ok(tool.run("backup"))
    elapsed = time.monotonic() - started
    assert not stale.exists() and no_temp_files(tool)

    dump = tool.latest()
    assert re.fullmatch(r"app-\d{8}-\d{6}\.dump", dump.name)
    manifest = json.loads((dump.parent / (dump.name + ".manifest.json")).read_text())
    assert (dump.parent / (dump.name + ".sha256")).read_text().split()[0] == sha256(dump)
    assert manifest["sha256"] == sha256(dump) and manifest["size"] == dump.stat().st_size
    assert manifest["database"] == "app" and manifest["server_version"]
    # zstd where the build writes it (16+), pg_dump's gzip before: the archive says which
    method = "zstd" if manifest["server_version_num"] >= 160000 else "gzip"
    listing = subprocess.run(
        [DOCKER, "exec", "-i", "-u", "postgres", pg.name, "pg_restore", "--list"],
        input=dump.read_bytes(), capture_output=True, check=True,
    )  # fmt: skip
    assert manifest["compression"] == method
    # pg_restore names the method from 16 on; 15's prints gzip's default level, -1
    shown = method if manifest["server_version_num"] >= 160000 else "-1"
    assert f"Compression: {shown}\n".encode() in listing.stdout
    counts = {t: int(d.split(":")[0]) for t, d in pg.table_digests("app").items()}
    assert manifest["tables"] == counts
    assert counts["public.big"] == 120000 and counts['other."Mixed Case"'] == 5000

    day, week, month = (tool.latest(tier=t) for t in ("daily", "weekly", "monthly"))
    assert {os.stat(p).st_ino for p in (dump, day, week, month)} == {dump.stat().st_ino}
    glob = (tool.backup_dir / "last" / "globals-latest.sql").resolve()
    assert b"CREATE ROLE postgres" in glob.read_bytes()
    for entry in tool.backup_dir.rglob("*"):
        if entry.is_symlink():
            continue
        assert entry.stat().st_mode & 0o777 == (0o700 if entry.is_dir() else 0o600), entry

    status = tool.status()
    success = status["last_success"]
    assert status["last_run"]["ok"] is True and "last_error" not in status
    assert success["files"] == [f"last/{dump.name}", f"last/{glob.name}"]
    assert success["size_bytes"] == dump.stat().st_size + glob.stat().st_size
    assert 0 < success["duration_seconds"] < elapsed
    assert "succeeded" in proc.stderr
    ok(tool.run("verify"))
    assert "OK" in ok(tool.run("verify", "--all")).stderr
    print(
        f"\nbackup of {dump.stat().st_size} bytes took {elapsed:.2f} s (tool: "
        f"{success['duration_seconds']} s)"
    )


def _restore(tool: Tool, *args: str) -> tuple[str, float]:
    started = time.monotonic()
    proc = ok(tool.run("restore", *args))
    return proc.stdout.strip().splitlines()[-1], time.monotonic() - started


@needs_pg
def test_round_trip_into_new_databases(tool, pg):
    ok(tool.run("backup"))
    before = pg.databases()
    source = pg.table_digests("app")
    target, seconds = _restore(tool)
    assert re.fullmatch(r"app_restore_\d{8}_\d{6}", target) and target not in before
    assert pg.table_digests(target) == source
    parallel, seconds_j2 = _restore(tool, "--jobs", "2", "--target-db", "app_parallel")
    assert parallel == "app_parallel"
    assert pg.table_digests(parallel) == source
    assert pg.value("SELECT count(*) FROM events", parallel) == "701"  # via the partitions
    started = time.monotonic()
    ok(tool.run("verify"))
    verify_seconds = time.monotonic() - started
    print(
        f"\nrestore: {seconds:.2f} s; restore -j2: {seconds_j2:.2f} s; "
        f"verify: {verify_seconds:.2f} s"
    )
    for db in (target, parallel):
        pg.sql(f'DROP DATABASE "{db}"', "postgres")


@needs_pg
def test_restore_over_existing_needs_force_and_takes_safety_backup(tool, pg):
    ok(tool.run("backup"))
    target = f"inplace_{secrets.token_hex(3)}"
    pg.sql(f"CREATE DATABASE {target}", "postgres")
    pg.sql("CREATE TABLE marker (note text); INSERT INTO marker VALUES ('before')", target)

    message = failed(tool.run("restore", "--target-db", target))
    assert f"database {target} exists; pass --force" in message
    assert pg.value("SELECT note FROM marker", target) == "before"  # untouched

    restored, _ = _restore(tool, "--target-db", target, "--force")
    assert restored == target
    assert pg.table_digests(target) == pg.table_digests("app")  # marker is gone
    safety = list((tool.backup_dir / "safety").glob(f"{target}-pre-restore-*.dump"))
    assert len(safety) == 1
    manifest = json.loads(safety[0].with_name(safety[0].name + ".manifest.json").read_text())
    assert manifest["tables"] == {"public.marker": 1}
    assert manifest["sha256"] == sha256(safety[0])
    # the safety backup restores the previous state
    back, _ = _restore(tool, "--backup", str(safety[0]), "--target-db", target, "--force")
    assert pg.value("SELECT note FROM marker", back) == "before"
    pg.sql(f"DROP DATABASE {target}", "postgres")


@needs_pg
def test_drill_restores_compares_and_records(tool, pg):
    ok(tool.run("backup"))
    before = pg.databases()
    proc = ok(tool.run("drill"))
    assert "drill OK" in proc.stdout
    drill = tool.status()["drill"]
    assert drill["ok"] is True and drill["error"] is None
    app = drill["databases"]["app"]
    # six tables: the partitioned parent holds no rows itself; its two leaves are counted
    assert app["ok"] and app["tables"] == 6 and app["mismatches"] == {}
    assert app["rows"] == 120000 + 4 + 5000 + 701
    assert pg.databases() == before  # the scratch database is gone
    print(f"\ndrill: {drill['duration_seconds']} s")


@needs_pg
@pytest.mark.parametrize("damage", ["flip", "truncate", "manifest"])
def test_damaged_backup_is_caught(tool, pg, damage):
    ok(tool.run("backup"))
    dump = tool.latest()
    data = bytearray(dump.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0xFF
        dump.write_bytes(bytes(data))
    elif damage == "truncate":
        dump.write_bytes(bytes(data[: len(data) // 2]))
    else:  # the dump is intact but the manifest's row count is not what it restores to
        path = dump.with_name(dump.name + ".manifest.json")
        manifest = json.loads(path.read_text())
        manifest["tables"]["public.small"] = 5
        path.write_text(json.dumps(manifest))

    verify = tool.run("verify")
    drill = tool.run("drill")
    assert tool.status()["drill"]["ok"] is False
    if damage == "manifest":
        ok(verify)
        assert "row counts differ" in failed(drill)
        assert tool.status()["drill"]["databases"]["app"]["mismatches"] == {
            "public.small": {"manifest": 5, "restored": 4}
        }
    else:
        assert "sha256 mismatch" in failed(verify) and "corrupted" in verify.stderr
        assert "sha256 mismatch" in failed(drill)
        assert "sha256 mismatch" in failed(tool.run("restore"))
    assert not [d for d in pg.databases() if "_drill_" in d or "_restore_" in d]


@needs_pg
def test_one_pass_hash_is_the_file_s_and_stream_verification_rejects_damage(tool, pg, tmp_path):
    """The backup never re-reads its dump: sha256 and pg_restore take the bytes as they
    stream. The recorded hash is the file's on disk; a stream pg_restore cannot read to its
    end fails the backup with no file left ('full'), while 'list' reads only the TOC; a
    byte changed on disk afterwards is caught by verify (the scheduled re-read)."""
    dk = Docker(tool_config.Config(pg.name, ["app"], str(tmp_path), docker=DOCKER))
    whole = tmp_path / "whole.dump"
    size, sha = dk.stream_to(
        ["pg_dump", "-Fc", "-d", "app"], str(whole), "pg_dump", verify=verifier("full")
    )
    assert size == whole.stat().st_size > 100_000 and sha == sha256(whole)
    # the same dump cut in half (after its TOC): what a dump dying mid-table looks like
    cut = ["sh", "-c", f"pg_dump -Fc -d app | head -c {size // 2}"]
    broken = tmp_path / "broken.dump"
    with pytest.raises(BackupError, match=r"verification of broken\.dump \(pg_restore"):
        dk.stream_to(cut, str(broken), "cut pg_dump", verify=verifier("full"))
    assert not broken.exists()
    # 'list' is the TOC-only guarantee: the same damage passes it (documented as such)
    assert dk.stream_to(cut, str(broken), "cut pg_dump", verify=verifier("list"))[0] == size // 2

    ok(tool.run("backup"))
    dump = tool.latest()
    manifest = json.loads(dump.with_name(dump.name + ".manifest.json").read_text())
    assert manifest["sha256"] == sha256(dump) and manifest["size"] == dump.stat().st_size
    data = bytearray(dump.read_bytes())
    offset = secrets.randbelow(len(data))
    data[offset] ^= 0x01
    dump.write_bytes(bytes(data))
    assert "sha256 mismatch" in failed(tool.run("verify")), f"byte {offset} flipped"


@pytest.fixture
def own_pg():
    container = Postgres(IMAGE)
    yield container
    container.remove()


@needs_pg
def test_stopped_container_fails_clearly_then_recovers(tmp_path, own_pg):
    hook_out = tmp_path / "hook.env"
    tool = Tool.install(
        tmp_path / "app",
        own_pg.name,
        ["app"],
        on_failure_command=f"env | grep ^PGSTEADY_ | sort > {hook_out}",
    )
    ok(tool.run("backup"))
    first = tool.status()["last_success"]
    docker("stop", "-t", "10", own_pg.name)

    message = failed(tool.run("backup"))
    assert f"container {own_pg.name} is not running (state: exited)" in message
    status = tool.status()
    assert status["last_success"] == first
    assert status["last_run"]["ok"] is False
    assert own_pg.name in status["last_error"]["message"]
    hook = hook_out.read_text()
    assert "PGSTEADY_EVENT=backup_failed" in hook and "is not running" in hook
    assert f"PGSTEADY_CONTAINER={own_pg.name}" in hook

    docker("start", own_pg.name)
    own_pg.wait_ready()
    ok(tool.run("backup"))
    status = tool.status()
    assert status["last_run"]["ok"] is True
    assert status["last_success"]["files"] != first["files"]
    assert own_pg.name in status["last_error"]["message"]  # the last error stays on record


@pytest.fixture
def small_fs(tmp_path):
    mount = tmp_path / "tiny-fs"
    mount.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", str(mount)], check=True
    )
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


@needs_pg
@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_full_backup_filesystem(tmp_path, pg, small_fs):
    db = f"grow_{secrets.token_hex(3)}"
    pg.sql(f"CREATE DATABASE {db}", "postgres")
    try:
        pg.sql(
            "CREATE TABLE t (v text); INSERT INTO t SELECT 'small' FROM generate_series(1, 10)", db
        )
        tool = Tool.install(tmp_path / "app", pg.name, [db], backup_dir=small_fs / "backups")
        ok(tool.run("backup"))
        good = tool.latest(db)
        good_files = tool.files()
        good_sha = sha256(good)
        # > 2 MB even compressed: random hex
        pg.sql(
            "INSERT INTO t SELECT md5(random()::text) || md5(random()::text) "
            "FROM generate_series(1, 100000)",
            db,
        )
        time.sleep(1.1)  # a new file name (one per second)

        message = failed(tool.run("backup"))
        assert "no space left on the backup filesystem" in message
        assert no_temp_files(tool)
        assert tool.files() == good_files  # nothing new, nothing removed (status aside)
        assert sha256(good) == good_sha
        status = tool.status()
        assert "no space left" in status["last_error"]["message"]
        assert status["last_success"]["files"][0] == f"last/{good.name}"
        ok(tool.run("verify"))
    finally:
        pg.sql(f"DROP DATABASE {db} WITH (FORCE)", "postgres")


@needs_pg
def test_sigterm_mid_dump_leaves_no_partial_file(tool, pg):
    ok(tool.run("backup"))
    before = tool.files()
    # Hold a lock that makes pg_dump wait, so the run is surely mid-dump when killed.
    locker = subprocess.Popen(
        [
            DOCKER,
            "exec",
            "-u",
            "postgres",
            pg.name,
            "psql",
            "-Xq",
            "-d",
            "app",
            "-c",
            "BEGIN; LOCK TABLE small IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(60)",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(1)
        command = [
            HOST_PYTHON,
            str(tool.app_dir / "bin" / "pgsteady-backup"),
            "backup",
            "--config",
            str(tool.config_path),
        ]
        run = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 20
        while not [f for f in tool.files() if ".tmp-" in f] and time.monotonic() < deadline:
            time.sleep(0.1)
        assert [f for f in tool.files() if ".tmp-" in f], "the dump never started"
        run.send_signal(signal.SIGTERM)
        _, stderr = run.communicate(timeout=60)
    finally:
        pg.sql(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE query LIKE '%pg_sleep(60)%' AND pid <> pg_backend_pid()",
            "postgres",
        )
        locker.wait(timeout=30)
    assert run.returncode != 0
    assert "interrupted by signal SIGTERM" in stderr
    assert tool.files() == before and no_temp_files(tool)
    assert "SIGTERM" in tool.status()["last_error"]["message"]
