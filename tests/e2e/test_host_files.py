"""Nothing root runs, sources or trusts is writable by another uid (issue 11, item 2),
and superuser sessions of pgsteady-ctl resolve only catalog objects (item 1, ctl part).

One stack, converged by the real pyinfra CLI (the e2e conftest's ``shared_stack``, handed
on converged and with the planted objects dropped); the postgres uid (999) is played by
`setpriv --reuid 999`, the app role by a real login over TCP.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

from pgsteady.settings import Settings, build_settings
from pgsteady.stack.hostfacts import read_host_facts
from pgsteady.stack.hostfiles import layout, server_owned_dirs
from tests.support.stack import Stack

UID = 999


def _run(command: str) -> str:
    return subprocess.run(command, shell=True, capture_output=True, text=True).stdout


def _settings(st: Stack) -> Settings:
    return build_settings(st.host_data(), read_host_facts(_run))


def ctl(st: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [f"{st.app_dir}/bin/pgsteady-ctl", *args], capture_output=True, text=True, timeout=600
    )


def _tree(root: Path, skip: list[str]) -> list[Path]:
    """Every path under root, without the server-owned directories (hostfiles)."""
    paths = [root]
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [n for n in dirnames if str(Path(dirpath) / n) not in skip]
        paths += [Path(dirpath) / n for n in dirnames + filenames]
    return paths


def test_every_path_follows_the_ownership_rule(shared_stack: Stack) -> None:
    s = _settings(shared_stack)
    bad = []
    for want in layout(s):
        try:
            st = os.lstat(want.path)
        except FileNotFoundError:
            bad.append(f"{want.path}: missing")
            continue
        if st.st_uid != 0 or st.st_mode & 0o022:
            bad.append(f"{want.path}: {st.st_uid}:{st.st_gid} {stat.S_IMODE(st.st_mode):04o}")
        if want.gid != 0 and (st.st_gid != want.gid or not st.st_mode & 0o040):
            bad.append(f"{want.path}: its reader's group ({want.gid}) cannot read it")
    # Nothing under app_dir escapes the rule, whoever added it (tls/, image/ ...).
    for path in _tree(shared_stack.app_dir, server_owned_dirs(s)):
        st = os.lstat(path)
        if st.st_uid != 0 or st.st_mode & 0o022:
            bad.append(f"{path}: {st.st_uid}:{st.st_gid} {stat.S_IMODE(st.st_mode):04o}")
    assert not bad, "\n".join(bad)
    assert not (shared_stack.app_dir / "config" / "ctl.env").exists()
    assert not (shared_stack.app_dir / "config" / "backup.json").exists()


def test_uid_999_cannot_change_what_root_uses(shared_stack: Stack) -> None:
    s = _settings(shared_stack)
    targets = sorted(
        {Path(o.path) for o in layout(s)} | set(_tree(shared_stack.app_dir, server_owned_dirs(s)))
    )
    before = {p: p.read_bytes() for p in targets if p.is_file()}
    # For each path: append to it (a file) or create in it (a directory), then rename it.
    script = r"""
for p in "$@"; do
    if [ -d "$p" ]; then
        (: > "$p/.planted") 2>/dev/null && echo "created a file in $p"
    else
        (echo x >> "$p") 2>/dev/null && echo "appended to $p"
    fi
    mv -- "$p" "$p.moved" 2>/dev/null && echo "renamed $p"
done
true
"""
    proc = subprocess.run(
        ["setpriv", f"--reuid={UID}", f"--regid={UID}", "--clear-groups",
         "sh", "-c", script, "sh", *map(str, targets)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "", proc.stdout
    after = {p: p.read_bytes() for p in before}
    assert after == before
    # The server's group can still read what the server reads (the control case).
    conf = shared_stack.app_dir / "config" / "postgresql.conf"
    readable = subprocess.run(
        ["setpriv", f"--reuid={UID}", f"--regid={UID}", "--clear-groups", "cat", str(conf)],
        capture_output=True,
    )
    assert readable.returncode == 0, readable.stderr


def test_ctl_and_backup_tool_refuse_files_uid_999_owns(shared_stack: Stack) -> None:
    env = shared_stack.app_dir / "etc" / "ctl.env"
    assert ctl(shared_stack, "status").returncode == 0
    os.chown(env, UID, UID)
    try:
        res = ctl(shared_stack, "watchdog")
        assert res.returncode == 2, res
        assert "refusing" in res.stderr and str(env) in res.stderr, res.stderr
    finally:
        os.chown(env, 0, 0)
    assert ctl(shared_stack, "status").returncode == 0

    config = shared_stack.app_dir / "etc" / "backup.json"
    os.chown(config, UID, UID)
    try:
        res = subprocess.run(
            [
                "python3",
                f"{shared_stack.app_dir}/bin/pgsteady-backup",
                "verify",
                "--config",
                str(config),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert res.returncode == 2 and "refusing" in res.stderr, res
    finally:
        os.chown(config, 0, 0)


def test_converge_moves_an_old_layout_to_root_owned_paths(shared_stack: Stack) -> None:
    """A host converged before etc/ existed: config/ owned by uid 999 with ctl.env and
    backup.json in it, secrets owned by uid 999. One converge fixes all; the next is a no-op."""
    app = shared_stack.app_dir
    for name in ("ctl.env", "backup.json"):
        shutil.copy(app / "etc" / name, app / "config" / name)
    for path in [app / "config", *(app / "config").iterdir(), app / "init"]:
        os.chown(path, UID, UID)
    for secret in (app / "secrets").glob("*_password"):  # the old layout's secrets
        os.chown(secret, UID, UID)
        secret.chmod(0o600)
    result = shared_stack.deploy()
    assert result.returncode == 0, result.output[-4000:]
    test_every_path_follows_the_ownership_rule(shared_stack)
    shared_stack.wait_healthy()
    again = shared_stack.deploy()
    assert again.returncode == 0, again.output[-4000:]
    assert again.changed == 0, again.changed_operations()


def test_ctl_superuser_sessions_resolve_only_the_catalog(shared_stack: Stack) -> None:
    """The app role plants public.lower(varchar); psql and apply-sql never call it."""
    st = shared_stack
    with st.connect() as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE public.canary (who text)")
        cur.execute(
            "CREATE FUNCTION public.lower(varchar) RETURNS text LANGUAGE sql AS "
            "$$ INSERT INTO public.canary VALUES (current_user) RETURNING 'planted' $$"
        )
        cur.execute("GRANT INSERT ON public.canary TO PUBLIC")
    try:
        # The trap works for a session with the default search_path (the control case).
        assert st.psql("SELECT lower('X'::varchar)", db="app") == "planted"
        st.psql("TRUNCATE public.canary", db="app")

        res = ctl(st, "psql", "-X", "-At", "-d", "app", "-c", "SHOW search_path")
        assert res.returncode == 0 and res.stdout.strip() == "pg_catalog,pg_temp", res
        res = ctl(st, "psql", "-X", "-At", "-d", "app", "-c", "SELECT lower('X'::varchar)")
        assert res.returncode == 0 and res.stdout.strip() == "x", res

        sql_file = st.app_dir / "init" / "zz-trap.sql"
        sql_file.write_text("\\connect app\nSELECT lower('Y'::varchar);\n")
        try:
            res = ctl(st, "apply-sql", "/docker-entrypoint-initdb.d/zz-trap.sql")
            assert res.returncode == 0, res
        finally:
            sql_file.unlink()
        assert st.psql("SELECT count(*) FROM public.canary", db="app") == "0"
    finally:  # the stack is shared with the verify modules: leave no trap behind
        with st.connect() as conn, conn.cursor() as cur:
            cur.execute("DROP FUNCTION public.lower(varchar)")
            cur.execute("DROP TABLE public.canary")


def test_init_db_sql_applies_with_the_pinned_search_path(shared_stack: Stack) -> None:
    """The deploy re-applies init_db.sql through apply-sql when it changes."""
    res = ctl(shared_stack, "apply-sql", "/docker-entrypoint-initdb.d/10-init_db.sql")
    assert res.returncode == 0, res.stderr
