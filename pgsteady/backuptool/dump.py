"""One verified dump: pg_dump (or pg_dumpall -g) in a REPEATABLE READ snapshot whose row
counts go to the manifest, written to a temp name, then published.

The archive is compressed with zstd where the server's build has it (Postgres 16 and
later): pg_dump spends about half the CPU of its default gzip on it, the file is about a
third of the size, and pg_restore reads it back faster (docs/benchmarks.md, Backups).

One pass over the bytes: as the dump streams they go to the file, into sha256 and into
``pg_restore`` (the verification), while the row counts run in the same snapshot; the
file is fsynced once and never re-read by the backup (``verify``, restore and drill
re-hash it later)."""

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

#: Row counts and database properties for the manifest. A superuser session runs it:
#: every comparison and cast names pg_catalog (OPERATOR(pg_catalog.=), pg_catalog types),
#: so nothing the app creates can stand in for them, whatever search_path says.
META_SQL = """
SELECT pg_catalog.json_build_object(
  'server_version', pg_catalog.current_setting('server_version'),
  'server_version_num',
    pg_catalog.current_setting('server_version_num')::pg_catalog.int4,
  'owner', pg_catalog.pg_get_userbyid(d.datdba),
  'encoding', pg_catalog.pg_encoding_to_char(d.encoding),
  'lc_collate', d.datcollate,
  'lc_ctype', d.datctype,
  'tables', (
    SELECT coalesce(pg_catalog.json_object_agg(t.name, t.rows ORDER BY t.name),
                    '{}'::pg_catalog.json)
    FROM (
      SELECT pg_catalog.format('%I.%I', n.nspname, c.relname) AS name,
             (pg_catalog.xpath('/row/c/text()', pg_catalog.query_to_xml(
                pg_catalog.format('SELECT pg_catalog.count(*) AS c FROM %I.%I',
                                  n.nspname, c.relname),
                false, true, '')))[1]::pg_catalog.text::pg_catalog.int8 AS rows
      FROM pg_catalog.pg_class c
      JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
      WHERE c.relkind OPERATOR(pg_catalog.=) 'r'
        AND c.relpersistence OPERATOR(pg_catalog.<>) 't'
        AND NOT n.nspname OPERATOR(pg_catalog.=) ANY
            ('{pg_catalog,information_schema}'::pg_catalog.name[])
        AND NOT pg_catalog.starts_with(n.nspname, 'pg_toast')
        AND NOT pg_catalog.starts_with(n.nspname, 'pg_temp')
    ) t))
FROM pg_catalog.pg_database d
WHERE d.datname OPERATOR(pg_catalog.=) pg_catalog.current_database()
"""


#: Whether the container's Postgres build can write a zstd pg_dump archive: pg_dump's
#: --compress=zstd came in 16, and the server's wal_compression accepts zstd exactly when
#: the build (server and client programs of one package) was made with it.
COMPRESSION_SQL = """
SELECT pg_catalog.current_setting('server_version_num')::pg_catalog.int4
         OPERATOR(pg_catalog.>=) 160000
       AND 'zstd' OPERATOR(pg_catalog.=) ANY (s.enumvals)
FROM pg_catalog.pg_settings s WHERE s.name OPERATOR(pg_catalog.=) 'wal_compression'
"""


def compression(zstd_capable: bool) -> str:
    """The archive's compression: zstd when the build has it, else pg_dump's gzip."""
    return "zstd" if zstd_capable else "gzip"


def pg_dump_args(db: str, snapshot_id: str, method: str) -> list[str]:
    """pg_dump of ``db`` in the exported snapshot, custom format, compressed by ``method``."""
    compress = [] if method == "gzip" else [f"--compress={method}"]
    return ["pg_dump", "-Fc", *compress, f"--snapshot={snapshot_id}", "-d", db]


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
            # the row counts run beside pg_dump: one process each, no parallel workers
            # taking CPU from the dump
            self.query("SET LOCAL max_parallel_workers_per_gather = 0")
            self.snapshot_id = self.query("SELECT pg_catalog.pg_export_snapshot()")[0]
        except BaseException:
            self.close()
            raise

    def query(self, sql: str) -> list[str]:
        """Run ``sql`` in the transaction; return its output lines."""
        self.send(sql)
        return self.receive()

    def send(self, sql: str) -> None:
        """Start ``sql`` in the transaction; ``receive()`` returns its output lines."""
        try:
            self.proc.stdin.write(f"{sql.strip().rstrip(';')};\n\\echo {self.MARK}\n")
            self.proc.stdin.flush()
        except OSError:
            pass  # psql died; reported by receive()

    def receive(self) -> list[str]:
        """The output lines of the query sent last (waits for it to finish)."""
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

    def close(self, abort: bool = False) -> None:
        """End the read-only transaction; ``abort``: drop the session at once (a query
        still running, such as the row counts of a failed dump, is not waited for)."""
        done = False
        if not abort:
            try:
                self.proc.communicate("COMMIT;\n\\q\n", timeout=60)
                done = True
            except (OSError, ValueError, subprocess.TimeoutExpired):
                pass
        if not done:
            self.proc.kill()
            self.proc.wait()
        self.err.close()

    def __enter__(self) -> Snapshot:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.close(abort=exc_type is not None)


@dataclass
class Made:
    """One published backup."""

    name: str
    path: str
    manifest: dict


def verifier(level: str) -> list[str]:
    """The pg_restore that reads the archive as it streams: its TOC only ('list'), or
    every entry and every table's data, decompressed to /dev/null ('full')."""
    return ["pg_restore", "--list"] if level == "list" else ["pg_restore", "-f", "/dev/null"]


def dump_database(
    config: Config, docker: Docker, db: str, directory: str, when: datetime, name: str | None = None
) -> Made:
    """Dump ``db`` into ``directory`` (verified and hashed as it streams, row counts
    taken meanwhile in the same snapshot), write the manifest, then publish."""
    name = name or retention.names_for(db, when, DUMP_SUFFIX)["last"]
    final = os.path.join(directory, name)
    tmp = os.path.join(directory, TMP_PREFIX + name)
    started = time.monotonic()
    try:
        with Snapshot(docker, db) as snap:
            method = compression(snap.query(COMPRESSION_SQL) == ["t"])
            snap.send(META_SQL)  # counts the rows the dump holds while it streams
            size, sha = docker.stream_to(
                pg_dump_args(db, snap.snapshot_id, method),
                tmp,
                f"pg_dump of database {db}",
                verify=verifier(config.verify),
            )
            meta = json.loads(snap.receive()[0])
        if size == 0:
            raise BackupError(f"{tmp}: empty dump")
        manifest = make_manifest(
            config, "database", name, when, size, sha, started, database=db,
            compression=method, **meta,
        )  # fmt: skip
        publish(tmp, final, sha, manifest)
    finally:
        discard_unpublished(tmp, final)
    return Made(name, final, manifest)


def dump_globals(
    config: Config, docker: Docker, directory: str, when: datetime, version: str | None = None
) -> Made:
    """``pg_dumpall --globals-only`` (roles, tablespaces), verified non-empty.

    ``version``: the server_version a database dump of this run read, saving a query."""
    name = retention.names_for(GLOBALS, when, GLOBALS_SUFFIX)["last"]
    final = os.path.join(directory, name)
    tmp = os.path.join(directory, TMP_PREFIX + name)
    started = time.monotonic()
    try:
        size, sha = docker.stream_to(["pg_dumpall", "--globals-only"], tmp, "pg_dumpall -g")
        with open(tmp, "rb") as fh:
            if size == 0 or b"CREATE ROLE" not in fh.read():
                raise BackupError(f"pg_dumpall --globals-only gave no roles ({size} bytes)")
        version = version or docker.psql("postgres", "SHOW server_version")
        manifest = make_manifest(
            config, "globals", name, when, size, sha, started, server_version=version
        )
        publish(tmp, final, sha, manifest)
    finally:
        discard_unpublished(tmp, final)
    return Made(name, final, manifest)
