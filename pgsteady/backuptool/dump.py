"""One verified dump: pg_dump (or pg_dumpall -g) in a REPEATABLE READ snapshot whose row
counts go to the manifest, written to a temp name, verified, checksummed, then published."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime

from . import retention
from .config import Config
from .docker import Docker
from .errors import BackupError
from .layout import DUMP_SUFFIX, GLOBALS, GLOBALS_SUFFIX, TMP_PREFIX
from .manifest import discard_unpublished, make_manifest, publish

META_SQL = """
SELECT pg_catalog.json_build_object(
  'server_version', pg_catalog.current_setting('server_version'),
  'server_version_num', pg_catalog.current_setting('server_version_num')::int,
  'owner', pg_catalog.pg_get_userbyid(d.datdba),
  'encoding', pg_catalog.pg_encoding_to_char(d.encoding),
  'lc_collate', d.datcollate,
  'lc_ctype', d.datctype,
  'tables', (
    SELECT coalesce(pg_catalog.json_object_agg(t.name, t.rows ORDER BY t.name), '{}'::json)
    FROM (
      SELECT pg_catalog.format('%I.%I', n.nspname, c.relname) AS name,
             (pg_catalog.xpath('/row/c/text()', pg_catalog.query_to_xml(
                pg_catalog.format('SELECT pg_catalog.count(*) AS c FROM %I.%I',
                                  n.nspname, c.relname),
                false, true, '')))[1]::text::bigint AS rows
      FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
      WHERE c.relkind = 'r' AND c.relpersistence <> 't'
        AND n.nspname NOT IN ('pg_catalog', 'information_schema')
        AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'
    ) t))
FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database()
"""


class Snapshot:
    """A REPEATABLE READ transaction held open in psql whose snapshot pg_dump shares.

    Queries run in it see exactly the data the dump contains.
    """

    MARK = "__pgsteady_end__"

    def __init__(self, docker: Docker, db: str) -> None:
        self.docker = docker
        self.db = db
        self.err = tempfile.TemporaryFile()  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(
            docker.exec_args("psql", "-XAtq", "-v", "ON_ERROR_STOP=1", "-d", db, stdin=True),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.err,
            text=True,
        )
        try:
            self.query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            self.snapshot_id = self.query("SELECT pg_export_snapshot()")[0]
        except BaseException:
            self.close()
            raise

    def query(self, sql: str) -> list[str]:
        """Run ``sql`` in the transaction; return its output lines."""
        try:
            self.proc.stdin.write(f"{sql.strip().rstrip(';')};\n\\echo {self.MARK}\n")
            self.proc.stdin.flush()
        except OSError:
            pass  # psql died; reported below
        lines = []
        for line in iter(self.proc.stdout.readline, ""):
            line = line.rstrip("\n")
            if line == self.MARK:
                return lines
            lines.append(line)
        self.proc.wait()
        self.err.seek(0)
        message = self.err.read().decode(errors="replace").strip()
        raise BackupError(f"psql in {self.docker.container} (database {self.db}) failed: {message}")

    def close(self) -> None:
        try:
            self.proc.communicate("COMMIT;\n\\q\n", timeout=60)
        except (OSError, ValueError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()
        self.err.close()

    def __enter__(self) -> Snapshot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class Made:
    """One published backup."""

    name: str
    path: str
    manifest: dict


def verify_dump(docker: Docker, path: str, level: str) -> None:
    """Check that pg_restore can read the archive (its TOC, or all of it with 'full')."""
    if os.path.getsize(path) == 0:
        raise BackupError(f"{path}: empty dump")
    args = ("pg_restore", "--list") if level == "list" else ("pg_restore", "-f", "/dev/null")
    try:
        docker.run(*args, input_file=path)
    except BackupError as exc:
        raise BackupError(f"verification of {os.path.basename(path)} failed: {exc}") from None


def dump_database(
    config: Config, docker: Docker, db: str, directory: str, when: datetime, name: str | None = None
) -> Made:
    """Dump ``db`` into ``directory``, verify, checksum, write the manifest, then publish."""
    name = name or retention.names_for(db, when, DUMP_SUFFIX)["last"]
    final = os.path.join(directory, name)
    tmp = os.path.join(directory, TMP_PREFIX + name)
    started = time.monotonic()
    try:
        with Snapshot(docker, db) as snap:
            size, sha = docker.stream_to(
                ["pg_dump", "-Fc", f"--snapshot={snap.snapshot_id}", "-d", db],
                tmp,
                f"pg_dump of database {db}",
            )
            meta = json.loads(snap.query(META_SQL)[0])
        verify_dump(docker, tmp, config.verify)
        manifest = make_manifest(
            config, "database", name, when, size, sha, started, database=db, **meta
        )
        publish(tmp, final, sha, manifest)
    finally:
        discard_unpublished(tmp, final)
    return Made(name, final, manifest)


def dump_globals(config: Config, docker: Docker, directory: str, when: datetime) -> Made:
    """``pg_dumpall --globals-only`` (roles, tablespaces), verified non-empty."""
    name = retention.names_for(GLOBALS, when, GLOBALS_SUFFIX)["last"]
    final = os.path.join(directory, name)
    tmp = os.path.join(directory, TMP_PREFIX + name)
    started = time.monotonic()
    try:
        size, sha = docker.stream_to(["pg_dumpall", "--globals-only"], tmp, "pg_dumpall -g")
        with open(tmp, "rb") as fh:
            if size == 0 or b"CREATE ROLE" not in fh.read():
                raise BackupError(f"pg_dumpall --globals-only gave no roles ({size} bytes)")
        version = docker.psql("postgres", "SHOW server_version")
        manifest = make_manifest(
            config, "globals", name, when, size, sha, started, server_version=version
        )
        publish(tmp, final, sha, manifest)
    finally:
        discard_unpublished(tmp, final)
    return Made(name, final, manifest)
