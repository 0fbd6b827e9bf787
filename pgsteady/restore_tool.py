"""pgsteady-backup restore and drill (stdlib-only, runs on the host; see backup_tool).

``restore`` checks a backup's sha256, then restores it; the target is a NEW database
(``DB_restore_YYYYmmdd_HHMMSS`` unless ``--target-db`` names another), or with
``--force`` an existing one, which it replaces atomically:

1. The backup lock (the one backups and drills take) is held for the whole operation.
2. With ``--force``, a verified safety backup of the target goes to ``backup_dir/safety/``.
3. The archive is restored into a fresh database with a unique temporary name
   (``pgsteady_restore_<hex>``), owned by the superuser, with CONNECT revoked from
   PUBLIC: the application cannot connect to it, nor see it half-filled. Rows are loaded
   as their table's owner, by a session that never logs in as a superuser, when that
   owner is not a superuser (see pg_restore()).
4. Only after pg_restore and ANALYZE succeeded, one transaction terminates the target's
   sessions, renames the target to ``pgsteady_replaced_<hex>``, renames the new database
   to the target's name and gives it the target's owner, database ACL (GRANT/REVOKE),
   connection limit and ``ALTER DATABASE/ROLE ... SET`` settings. For a new target they
   are copied from the database the backup was taken from, when it exists.
5. The replaced database is then dropped: the safety backup of step 2 is its copy.

A failure or a kill at any point before the swap leaves the target untouched; the next
restore (or drill) drops the ``pgsteady_restore_*`` / ``pgsteady_replaced_*`` databases a
killed run left. Every restore, successful or not, is recorded in status.json
(``last_restore`` and the newest entries of ``restores``).

``--jobs N`` copies the dump into the container's /tmp (the backup files are 0600 root,
unreadable by the container's postgres user) and runs ``pg_restore -j N`` on it; with
one job the dump is streamed through stdin.

``drill`` restores the newest backup of every database into a scratch database nobody
else can connect to, compares each table's row count with the manifest, drops the
scratch database and records the outcome under ``drill`` in status.json.

Every superuser session runs with search_path pinned (backup_tool.SAFE_PGOPTIONS) and
schema-qualified catalog names. Rows of tables owned by other roles are loaded in a
session that logs in as the NOSUPERUSER role ``pgsteady_restore`` (see pg_restore()).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import hmac
import json
import os
import secrets
import sys
import tempfile
import time

if __package__:
    from . import backup_tool as bt
else:  # run from app_dir/bin, next to backup_tool.py
    import backup_tool as bt

RESERVED = ("template0", "template1", "postgres")
TEMP_PREFIX = "pgsteady_restore_"
REPLACED_PREFIX = "pgsteady_replaced_"
#: The NOSUPERUSER role whose session loads app-owned rows (see restore_role()). It logs
#: in over the container's socket with a password made for one restore (pg_hba.conf:
#: ``local all pgsteady_restore scram-sha-256``, rendered by pgsteady.pgparams).
RESTORE_ROLE = "pgsteady_restore"
KEEP_RESTORES = 20
DATABASE_PRIVILEGES = ("CREATE", "CONNECT", "TEMPORARY")
#: Test hook: a comma-separated list of step names at which restore pauses (an hour),
#: announcing ``pausing at STEP`` on stderr, so that a test can kill it there.
PAUSE_ENV = "PGSTEADY_TEST_RESTORE_PAUSE_AT"
#: GUCs whose value is a list of names: pg_db_role_setting flattens them, and each
#: element is given back as its own literal (as pg_dump does).
LIST_GUCS = (
    "local_preload_libraries",
    "search_path",
    "session_preload_libraries",
    "shared_preload_libraries",
    "temp_tablespaces",
    "unix_socket_directories",
)


def ident(name: str) -> str:
    """A quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def literal(value: str) -> str:
    """A SQL string literal (standard_conforming_strings is on)."""
    return "'" + value.replace("'", "''") + "'"


def pause_point(log: bt.Log | None, step: str) -> None:
    """Sleep at ``step`` when the test hook names it (see PAUSE_ENV)."""
    if step in os.environ.get(PAUSE_ENV, "").split(","):
        print(f"pausing at {step}", file=sys.stderr, flush=True)
        time.sleep(3600)


def resolve_backup(config: bt.Config, db: str, backup: str) -> str:
    """The file named by ``--backup`` ('latest' = newest backup of ``db``)."""
    if backup == "latest":
        return bt.newest_backup(config.backup_dir, db)
    path = os.path.abspath(backup)
    if not os.path.isfile(path):
        raise bt.BackupError(f"backup file {path} does not exist")
    return os.path.realpath(path)


def database_exists(docker: bt.Docker, name: str) -> bool:
    found = docker.psql(
        "postgres", f"SELECT 1 FROM pg_catalog.pg_database WHERE datname = {literal(name)}"
    )
    return found == "1"


def drop_database(docker: bt.Docker, name: str) -> None:
    """Drop ``name``, disconnecting its sessions."""
    docker.psql("postgres", f"DROP DATABASE IF EXISTS {ident(name)} WITH (FORCE)")


def drop_leftovers(docker: bt.Docker, log: bt.Log) -> None:
    """Drop the temporary databases of a restore that was killed (call with the lock held)."""
    patterns = [
        literal(prefix.replace("_", "\\_") + "%") for prefix in (TEMP_PREFIX, REPLACED_PREFIX)
    ]
    where = " OR ".join(f"datname LIKE {p}" for p in patterns)
    names = docker.psql("postgres", f"SELECT datname FROM pg_catalog.pg_database WHERE {where}")
    for name in names.split():
        log.info(f"dropping {name}, left by an interrupted restore")
        drop_database(docker, name)
    role = docker.psql(
        "postgres",
        "SELECT rolcanlogin OR EXISTS (SELECT FROM pg_catalog.pg_auth_members m "
        "WHERE m.member = r.oid) FROM pg_catalog.pg_roles r "
        f"WHERE r.rolname = {literal(RESTORE_ROLE)}",
    )
    if role == "t":
        log.info(f"taking the login and memberships of {RESTORE_ROLE} left by an interrupted run")
        docker.psql("postgres", ";\n".join(restore_role_reset_sql(docker)))


def create_database(docker: bt.Docker, name: str, manifest: dict) -> None:
    """Create an empty, private database from template0 with the backup's encoding/locale.

    It is owned by the superuser and CONNECT is revoked from PUBLIC: only superusers can
    connect until the restore hands it over.
    """
    options = [f"TEMPLATE template0 ENCODING {literal(manifest.get('encoding', 'UTF8'))}"]
    if manifest.get("lc_collate"):
        options.append(f"LC_COLLATE {literal(manifest['lc_collate'])}")
    if manifest.get("lc_ctype"):
        options.append(f"LC_CTYPE {literal(manifest['lc_ctype'])}")
    docker.psql("postgres", f"CREATE DATABASE {ident(name)} {' '.join(options)}")
    docker.psql("postgres", f"REVOKE ALL ON DATABASE {ident(name)} FROM PUBLIC")


def data_passes(docker: bt.Docker, toc: str) -> dict[str | None, list[str]]:
    """Every ``pg_restore --list`` entry, grouped by the role that restores its data.

    An entry owned by a role that is not a superuser goes to that role; one owned by a
    superuser, or without an owner, to the superuser (key None). Each group is restored
    with ``--section=data``, so every data entry (table data, sequence values, large
    objects, whatever a version adds) is restored exactly once, by its owner.
    """
    rows = docker.psql("postgres", "SELECT rolsuper, rolname FROM pg_catalog.pg_roles")
    roles = [(name, flag == "t") for flag, _, name in (r.partition("|") for r in rows.splitlines())]
    roles.sort(key=lambda role: -len(role[0]))  # "a b" before "b": names may hold spaces
    passes: dict[str | None, list[str]] = {}
    for line in toc.splitlines():
        if not line.strip() or line.startswith(";"):
            continue
        owner = next(((n, su) for n, su in roles if line.endswith(f" {n}")), None)
        if owner is None and " TABLE DATA " in line:
            raise bt.BackupError(f"cannot tell which role owns the archive entry {line!r}")
        role = owner[0] if owner and not owner[1] else None
        passes.setdefault(role, []).append(line)
    return passes


def scram_verifier(password: str, iterations: int = 4096) -> str:
    """The SCRAM-SHA-256 verifier of an ASCII ``password`` (what pg_authid stores).

    The server only ever sees the verifier, so the password never reaches its logs.
    """
    salt = secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    b64 = lambda raw: base64.b64encode(raw).decode()  # noqa: E731
    stored = hashlib.sha256(client_key).digest()
    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored)}:{b64(server_key)}"


def restore_role_reset_sql(docker: bt.Docker) -> list[str]:
    """SQL taking every membership and the login away from the restore role.

    Run before a data pass (a killed run may have left a grant) and after it.
    """
    granted = docker.psql(
        "postgres",
        "SELECT r.rolname FROM pg_catalog.pg_auth_members m "
        "JOIN pg_catalog.pg_roles r ON r.oid = m.roleid "
        "JOIN pg_catalog.pg_roles u ON u.oid = m.member "
        f"WHERE u.rolname = {literal(RESTORE_ROLE)} ORDER BY 1",
    )
    sql = [f"REVOKE {ident(name)} FROM {ident(RESTORE_ROLE)}" for name in granted.splitlines()]
    return [*sql, f"ALTER ROLE {ident(RESTORE_ROLE)} NOLOGIN PASSWORD NULL"]


@contextlib.contextmanager
def restore_role(docker: bt.Docker, target: str, passfile: str):
    """Let the restore role log in to ``target`` (only) for the duration of the block.

    Yields the libpq connection string of a session that LOGS IN as the NOSUPERUSER,
    NOINHERIT role ``pgsteady_restore``: ``SET ROLE <owner>`` (pg_restore ``--role``)
    works once the owner is granted to it (see grant_owner), and app code that runs
    ``RESET ROLE`` falls back to that role, never to the superuser. The password is
    random, made for this block, written to ``passfile`` (0600 inside the container),
    and only its SCRAM verifier is sent to the server. On exit, also after a failure,
    the role loses its memberships, its login and the CONNECT grant.
    """
    exists = docker.psql(
        "postgres", f"SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = {literal(RESTORE_ROLE)}"
    )
    role = ident(RESTORE_ROLE)
    attrs = "NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS NOINHERIT"
    if exists != "1":
        docker.psql("postgres", f"CREATE ROLE {role} NOLOGIN {attrs}")
    password = secrets.token_hex(32)
    with tempfile.NamedTemporaryFile("w") as fh:
        os.fchmod(fh.fileno(), 0o600)
        fh.write(f"*:*:{target}:{RESTORE_ROLE}:{password}\n")
        fh.flush()
        docker.run("sh", "-c", f"umask 077 && cat > {passfile}", input_file=fh.name, timeout=60)
    try:
        docker.psql(
            "postgres",
            ";\n".join(
                [
                    *restore_role_reset_sql(docker),
                    f"ALTER ROLE {role} LOGIN {attrs} CONNECTION LIMIT -1 "
                    f"PASSWORD {literal(scram_verifier(password))} VALID UNTIL 'infinity'",
                    f"GRANT CONNECT ON DATABASE {ident(target)} TO {role}",
                ]
            ),
        )
        yield f"dbname={target} user={RESTORE_ROLE} passfile={passfile}"
    finally:
        with contextlib.suppress(bt.BackupError):
            docker.run("rm", "-f", passfile, timeout=60)
        cleanup = [*restore_role_reset_sql(docker)]
        if database_exists(docker, target):
            cleanup.append(f"REVOKE ALL ON DATABASE {ident(target)} FROM {role}")
        docker.psql("postgres", ";\n".join(cleanup))


def pg_restore(docker: bt.Docker, path: str, target: str, jobs: int) -> None:
    """Restore the archive at ``path`` (on the host) into the existing ``target``.

    The superuser restores the schema (pre-data) and then indexes, constraints and
    triggers (post-data; index expressions run as the table owner). Rows owned by a
    role that is not a superuser are loaded in a session that LOGS IN as the
    NOSUPERUSER restore role (restore_role()) with ``--role=<owner>``: loading evaluates
    CHECK constraints, domain checks and generated columns, i.e. functions that role
    wrote, and ``SET ROLE`` inside a superuser's session is no boundary (that code
    could ``RESET ROLE``). Only rows owned by a superuser load as the superuser.
    """
    work = f"/tmp/pgsteady-restore-{secrets.token_hex(6)}"
    inside = f"{work}.dump" if jobs > 1 else None
    copied: list[str] = []

    def copy_in(name: str, source: str) -> str:
        docker.run("sh", "-c", f"umask 077 && cat > {name}", input_file=source, timeout=3600)
        copied.append(name)
        return name

    def run(*args: str) -> str:
        if inside:
            return docker.run("pg_restore", *args, "-j", str(jobs), inside, timeout=24 * 3600)
        return docker.run("pg_restore", *args, input_file=path, timeout=24 * 3600)

    try:
        if inside:
            copy_in(inside, path)
        # The data entries only: a role that owns no rows gets no pass (and no grant).
        toc = docker.run("pg_restore", "--list", "--section=data", *([inside] if inside else []),
                         input_file=None if inside else path)  # fmt: skip
        base = ["--exit-on-error", "-d", target]
        run(*base, "--section=pre-data")
        passes = sorted(data_passes(docker, toc).items(), key=str)
        lists = []
        for i, (role, lines) in enumerate(passes):
            with tempfile.NamedTemporaryFile("w", suffix=".list") as fh:
                fh.write("\n".join(lines) + "\n")
                fh.flush()
                lists.append((role, copy_in(f"{work}-{i}.list", fh.name)))
        for role, listed in lists:
            if role is None:
                run(*base, "--section=data", f"--use-list={listed}")
        owned = [(role, listed) for role, listed in lists if role is not None]
        if owned:
            if "pg_database_owner" in (role for role, _ in owned):
                raise bt.BackupError(
                    "the archive holds rows of a table owned by pg_database_owner, which "
                    "cannot be granted to the restore role: give that table a real owner"
                )
            with restore_role(docker, target, f"{work}.pgpass") as conninfo:
                for role, listed in owned:
                    grant = f"GRANT {ident(role)} TO {ident(RESTORE_ROLE)}"
                    docker.psql("postgres", grant)
                    try:
                        pause_point(None, "owner-data")
                        run("--exit-on-error", "-d", conninfo, "--section=data",
                            f"--use-list={listed}", f"--role={role}")  # fmt: skip
                    finally:
                        revoke = f"REVOKE {ident(role)} FROM {ident(RESTORE_ROLE)}"
                        with contextlib.suppress(bt.BackupError):
                            docker.psql("postgres", revoke)
        run(*base, "--section=post-data")
    finally:
        if copied:
            with contextlib.suppress(bt.BackupError):
                docker.run("rm", "-f", *copied, timeout=60)


def table_counts(docker: bt.Docker, db: str) -> dict:
    """Exact row count of every table of ``db``."""
    return json.loads(docker.psql(db, bt.TABLE_COUNTS_SQL))["tables"]


_PROPERTIES_SQL = """
SELECT pg_catalog.json_build_object(
  'owner', pg_catalog.pg_get_userbyid(d.datdba),
  'connlimit', d.datconnlimit,
  'acl', CASE WHEN d.datacl IS NULL THEN NULL ELSE (
    SELECT coalesce(pg_catalog.json_agg(pg_catalog.json_build_object(
             'grantee', CASE WHEN a.grantee = 0 THEN NULL
                             ELSE pg_catalog.pg_get_userbyid(a.grantee) END,
             'privilege', a.privilege_type, 'grantable', a.is_grantable)
             ORDER BY a.grantee, a.privilege_type), '[]'::json)
    FROM pg_catalog.aclexplode(d.datacl) a) END,
  'settings', (
    SELECT coalesce(pg_catalog.json_agg(pg_catalog.json_build_object(
             'role', CASE WHEN s.setrole = 0 THEN NULL
                          ELSE pg_catalog.pg_get_userbyid(s.setrole) END,
             'config', s.setconfig) ORDER BY s.setrole), '[]'::json)
    FROM pg_catalog.pg_db_role_setting s WHERE s.setdatabase = d.oid))
FROM pg_catalog.pg_database d WHERE d.datname = %s
"""


def database_properties(docker: bt.Docker, name: str) -> dict | None:
    """Owner, ACL entries, connection limit and SET settings of ``name`` (None: no such DB)."""
    out = docker.psql("postgres", _PROPERTIES_SQL % literal(name))
    return json.loads(out) if out else None


def split_guc_list(value: str) -> list[str]:
    """The elements of a flattened list GUC (``"$user", public``), unquoted."""
    items, i = [], 0
    while i < len(value):
        while i < len(value) and value[i] in " \t\n":
            i += 1
        if i >= len(value):
            break
        if value[i] == '"':
            i += 1
            item = ""
            while i < len(value):
                if value[i] == '"':
                    if value[i + 1 : i + 2] == '"':
                        item += '"'
                        i += 2
                        continue
                    i += 1
                    break
                item += value[i]
                i += 1
        else:
            start = i
            while i < len(value) and value[i] != ",":
                i += 1
            item = value[start:i].strip()
        items.append(item)
        while i < len(value) and value[i] in " \t\n":
            i += 1
        if i < len(value) and value[i] == ",":
            i += 1
    return items


def setting_sql(database: str, role: str | None, entry: str) -> str:
    """``ALTER DATABASE/ROLE ... SET`` re-creating one pg_db_role_setting entry."""
    name, _, value = entry.partition("=")
    if name.lower() in LIST_GUCS:
        values = ", ".join(literal(v) for v in split_guc_list(value)) or "''"
    else:
        values = literal(value)
    where = (
        f"ROLE {ident(role)} IN DATABASE {ident(database)}"
        if role
        else f"DATABASE {ident(database)}"
    )
    return f"ALTER {where} SET {ident(name)} TO {values}"


def handover_sql(name: str, props: dict) -> list[str]:
    """Give database ``name`` the owner, ACL, connection limit and settings in ``props``."""
    db = ident(name)
    sql = [
        f"ALTER DATABASE {db} OWNER TO {ident(props['owner'])}",
        f"ALTER DATABASE {db} CONNECTION LIMIT {int(props['connlimit'])}",
    ]
    if props["acl"] is None:  # the defaults: PUBLIC may connect and create temp tables
        sql.append(f"GRANT CONNECT, TEMPORARY ON DATABASE {db} TO PUBLIC")
    else:
        sql += [
            f"REVOKE ALL ON DATABASE {db} FROM PUBLIC",
            f"REVOKE ALL ON DATABASE {db} FROM {ident(props['owner'])}",
        ]
        for item in props["acl"]:
            if item["privilege"] not in DATABASE_PRIVILEGES:
                raise bt.BackupError(f"unexpected database privilege {item['privilege']!r}")
            grantee = ident(item["grantee"]) if item["grantee"] else "PUBLIC"
            option = " WITH GRANT OPTION" if item["grantable"] else ""
            sql.append(f"GRANT {item['privilege']} ON DATABASE {db} TO {grantee}{option}")
    for setting in props["settings"]:
        sql += [setting_sql(name, setting["role"], e) for e in setting["config"] or []]
    return sql


def swap_sql(target: str, temp: str, replaced: str | None, props: dict) -> str:
    """One transaction: retire ``target`` (when it exists) and put ``temp`` in its place."""
    steps = ["BEGIN"]
    if replaced:
        steps += [
            "SELECT pg_catalog.count(pg_catalog.pg_terminate_backend(pid)) FROM "
            f"pg_catalog.pg_stat_activity WHERE datname = {literal(target)} "
            "AND pid <> pg_catalog.pg_backend_pid()",
            f"ALTER DATABASE {ident(target)} RENAME TO {ident(replaced)}",
        ]
    steps.append(f"ALTER DATABASE {ident(temp)} RENAME TO {ident(target)}")
    steps += handover_sql(target, props)
    steps.append("COMMIT")
    return ";\n".join(steps) + ";"


def swap(docker: bt.Docker, log: bt.Log, target: str, temp: str, replaced: str | None,
         props: dict) -> None:  # fmt: skip
    """Run the swap transaction, retrying while sessions reconnect to the old target."""
    for attempt in range(1, 6):
        try:
            docker.psql("postgres", swap_sql(target, temp, replaced, props), timeout=300)
            return
        except bt.BackupError as exc:
            if "is being accessed by other users" not in str(exc) or attempt == 5:
                raise
            log.info(f"sessions reconnected to {target} during the swap; retrying")
            time.sleep(1)


def restore(
    config: bt.Config,
    log: bt.Log,
    db: str | None,
    backup: str,
    target: str | None,
    force: bool,
    jobs: int,
) -> dict:
    """Restore a backup atomically (see the module doc); raise BackupError on failure."""
    docker = bt.Docker(config)
    source_db = db or (config.databases[0] if len(config.databases) == 1 else None)
    if source_db is None and backup == "latest":
        raise bt.BackupError("--db is required with --backup latest when several are configured")
    path = resolve_backup(config, source_db or "", backup)
    started = time.monotonic()
    manifest = bt.check_file(path)
    if manifest.get("kind") != "database":
        raise bt.BackupError(f"{path} is not a database backup (kind {manifest.get('kind')})")
    log.info(f"sha256 of {path} verified")
    source_db = manifest["database"]
    stamp = bt.now_utc().strftime("%Y%m%d_%H%M%S")
    target = target or f"{source_db[:40]}_restore_{stamp}"
    if (
        target in RESERVED
        or len(target.encode()) > 63
        or target.startswith((TEMP_PREFIX, REPLACED_PREFIX))
    ):
        raise bt.BackupError(f"--target-db {target!r}: not a usable database name")
    docker.check_running()
    safety = None
    with bt.Lock(config.backup_dir, config.lock_timeout):
        drop_leftovers(docker, log)
        props = database_properties(docker, target)
        if props is not None and not force:
            raise bt.BackupError(
                f"database {target} exists; pass --force to restore over it "
                "(a safety backup of it is taken first)"
            )
        if props is not None:
            log.info(f"taking a safety backup of {target} before restoring over it")
            safety = bt.dump_database(
                config,
                docker,
                target,
                os.path.join(config.backup_dir, bt.SAFETY_DIR),
                bt.now_utc(),
                name=f"{target}-pre-restore-{stamp}{bt.DUMP_SUFFIX}",
            ).path
            log.info(f"safety backup {safety} verified")
        pause_point(log, "safety")
        if props is None:
            props = database_properties(docker, source_db) or {
                "owner": manifest.get("owner") or "postgres",
                "connlimit": -1,
                "acl": [],
                "settings": [],
            }
            owner_known = docker.psql(
                "postgres",
                f"SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = {literal(props['owner'])}",
            )
            if owner_known != "1":
                props["owner"] = "postgres"
        suffix = secrets.token_hex(6)
        temp = f"{TEMP_PREFIX}{suffix}"
        create_database(docker, temp, manifest)
        pause_point(log, "created")
        try:
            pg_restore(docker, path, temp, jobs)
            pause_point(log, "restored")
            docker.psql(temp, "ANALYZE")
            pause_point(log, "swap")
            replaced = f"{REPLACED_PREFIX}{suffix}" if safety else None
            swap(docker, log, target, temp, replaced, props)
        except BaseException as exc:
            with contextlib.suppress(bt.BackupError):
                drop_database(docker, temp)
            if not isinstance(exc, bt.BackupError):
                raise
            message = f"restore into {target} failed; {target} is unchanged: {exc}"
            raise bt.BackupError(message) from None
        log.info(f"{target} now holds the restored data")
        pause_point(log, "swapped")
        if replaced:
            drop_database(docker, replaced)
    result = {
        "backup": path,
        "database": source_db,
        "target": target,
        "safety_backup": safety,
        "jobs": jobs,
        "duration_seconds": round(time.monotonic() - started, 3),
    }
    log.info(f"restored {path} into {target} in {result['duration_seconds']} s", to_syslog=True)
    return result


def drill_one(config: bt.Config, log: bt.Log, docker: bt.Docker, db: str, jobs: int) -> dict:
    """Restore the newest backup of ``db`` into a scratch database and compare row counts."""
    started = time.monotonic()
    path = bt.newest_backup(config.backup_dir, db)
    manifest = bt.check_file(path)
    scratch = f"{TEMP_PREFIX}{secrets.token_hex(6)}"
    create_database(docker, scratch, manifest)
    try:
        pg_restore(docker, path, scratch, jobs)
        counts = table_counts(docker, scratch)
    finally:
        drop_database(docker, scratch)
    expected = manifest.get("tables", {})
    mismatches = {
        table: {"manifest": expected.get(table), "restored": counts.get(table)}
        for table in sorted(set(expected) | set(counts))
        if expected.get(table) != counts.get(table)
    }
    result = {
        "ok": not mismatches,
        "backup": path,
        "tables": len(counts),
        "rows": sum(counts.values()),
        "mismatches": mismatches,
        "duration_seconds": round(time.monotonic() - started, 3),
    }
    log.info(
        f"drill {db}: {result['tables']} tables, {result['rows']} rows, "
        f"{'OK' if result['ok'] else f'{len(mismatches)} MISMATCHED'} "
        f"in {result['duration_seconds']} s"
    )
    return result


def drill(config: bt.Config, log: bt.Log, db: str | None, jobs: int) -> dict:
    """Drill every configured database (or one); return the status section."""
    started_at = bt.now_utc()
    started = time.monotonic()
    docker = bt.Docker(config)
    docker.check_running()
    drop_leftovers(docker, log)
    results = {}
    errors = []
    for name in [db] if db else config.databases:
        try:
            results[name] = drill_one(config, log, docker, name, jobs)
        except bt.BackupError as exc:
            results[name] = {"ok": False, "error": str(exc)}
            errors.append(f"{name}: {exc}")
        if not results[name]["ok"] and "error" not in results[name]:
            errors.append(
                f"{name}: row counts differ from the manifest: {results[name]['mismatches']}"
            )
    try:
        bt.check_file(bt.newest_backup(config.backup_dir, bt.GLOBALS, bt.GLOBALS_SUFFIX))
    except bt.BackupError as exc:
        errors.append(str(exc))
    return {
        "time": started_at.isoformat(),
        "ok": not errors,
        "duration_seconds": round(time.monotonic() - started, 3),
        "databases": results,
        "error": "; ".join(errors) or None,
    }


def record_restore(config: bt.Config, log: bt.Log, entry: dict) -> None:
    """Record one restore in status.json: ``last_restore`` and the newest ``restores``."""
    history = bt.read_status(config.backup_dir).get("restores")
    history = [e for e in history if isinstance(e, dict)] if isinstance(history, list) else []
    bt.update_status(config, log, last_restore=entry, restores=[*history, entry][-KEEP_RESTORES:])


def cmd_restore(config: bt.Config, log: bt.Log, args: argparse.Namespace) -> int:
    def run() -> None:
        started = bt.now_utc()
        entry = {
            "time": started.isoformat(),
            "backup": args.backup,
            "target": args.target_db,
            "force": bool(args.force),
        }
        try:
            result = restore(
                config, log, args.db, args.backup, args.target_db, args.force, args.jobs
            )
        except BaseException as exc:
            message = (
                str(exc) if isinstance(exc, bt.BackupError) else f"{type(exc).__name__}: {exc}"
            )
            record_restore(config, log, {**entry, "ok": False, "error": message})
            raise
        record_restore(config, log, {**entry, **result, "ok": True})
        print(result["target"])

    return bt.with_failure_handling(config, log, "restore", run)


def cmd_drill(config: bt.Config, log: bt.Log, args: argparse.Namespace) -> int:
    def run() -> None:
        try:
            with bt.Lock(config.backup_dir, config.lock_timeout):
                section = drill(config, log, args.db, args.jobs)
        except bt.BackupError as exc:
            section = {"time": bt.now_utc().isoformat(), "ok": False, "error": str(exc)}
        bt.update_status(config, log, drill=section)
        print(
            ("drill OK" if section["ok"] else "drill FAILED")
            + f" in {section.get('duration_seconds', 0)} s"
        )
        if not section["ok"]:
            raise bt.BackupError(section["error"])
        log.info(f"drill succeeded in {section['duration_seconds']} s", to_syslog=True)

    return bt.with_failure_handling(config, log, "drill", run)
