"""Loading an archive into a database: the superuser restores schema and post-data, rows
owned by other roles load in a session that logs in as the NOSUPERUSER restore role."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
import secrets
import sys
import tempfile
import time

from .databases import database_exists
from .docker import Docker
from .errors import BackupError
from .log import Log
from .sql import ident, literal

#: The NOSUPERUSER role whose session loads app-owned rows (see restore_role()). It logs
#: in over the container's socket with a password made for one restore (pg_hba.conf:
#: ``local all pgsteady_restore scram-sha-256``, rendered by pgsteady.postgres.parameters).
RESTORE_ROLE = "pgsteady_restore"


#: Test hook: a comma-separated list of step names at which restore pauses (an hour),
#: announcing ``pausing at STEP`` on stderr, so that a test can kill it there.
PAUSE_ENV = "PGSTEADY_TEST_RESTORE_PAUSE_AT"


def pause_point(log: Log | None, step: str) -> None:
    """Sleep at ``step`` when the test hook names it (see PAUSE_ENV)."""
    if step in os.environ.get(PAUSE_ENV, "").split(","):
        print(f"pausing at {step}", file=sys.stderr, flush=True)
        time.sleep(3600)


def data_passes(docker: Docker, toc: str) -> dict[str | None, list[str]]:
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
            raise BackupError(f"cannot tell which role owns the archive entry {line!r}")
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


def restore_role_reset_sql(docker: Docker) -> list[str]:
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
def restore_role(docker: Docker, target: str, passfile: str):
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
        with contextlib.suppress(BackupError):
            docker.run("rm", "-f", passfile, timeout=60)
        cleanup = [*restore_role_reset_sql(docker)]
        if database_exists(docker, target):
            cleanup.append(f"REVOKE ALL ON DATABASE {ident(target)} FROM {role}")
        docker.psql("postgres", ";\n".join(cleanup))


def pg_restore(docker: Docker, path: str, target: str, jobs: int) -> None:
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
                raise BackupError(
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
                        with contextlib.suppress(BackupError):
                            docker.psql("postgres", revoke)
        run(*base, "--section=post-data")
    finally:
        if copied:
            with contextlib.suppress(BackupError):
                docker.run("rm", "-f", *copied, timeout=60)
