"""A throw-away real Postgres server for integration tests.

Runs the distribution's server binaries as the ``postgres`` OS user (the server refuses
root) in a private temporary directory, on a free TCP port and a private socket
directory. The postmaster is started directly, so its PID is ours to stop.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from pgsteady.postgres.parameters import hba_rules
from pgsteady.postgres.tuning import TuningResult
from pgsteady.render import render
from pgsteady.tls import CA_FILE, CERT_FILE, KEY_FILE, Authority, create_ca, issue_server_cert
from tests.support.ports import free_port

PG_BIN = Path(os.environ.get("PGSTEADY_PG_BIN", "/usr/lib/postgresql/15/bin"))
OS_USER = "postgres"
SUPERUSER_PASSWORD = "s3cret-super"


def available() -> bool:
    """True when the server binaries and the postgres OS user exist."""
    try:
        pwd.getpwnam(OS_USER)
    except KeyError:
        return False
    return (PG_BIN / "postgres").is_file() and (PG_BIN / "initdb").is_file()


def _as_postgres(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", OS_USER, "--", *cmd] if os.geteuid() == 0 else cmd


def own(path: Path, mode: int = 0o640) -> Path:
    """Give ``path`` to the postgres OS user (the server and psql run as it)."""
    entry = pwd.getpwnam(OS_USER)
    os.chown(path, entry.pw_uid, entry.pw_gid)
    path.chmod(mode)
    return path


def _chown(path: Path) -> None:
    if os.geteuid() == 0:
        shutil.chown(path, OS_USER, OS_USER)


class PgServer:
    """initdb once; then write config files, check them, start and stop the server."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="pgs-it-"))
        self.root.chmod(0o755)
        _chown(self.root)
        self.data = self.root / "data"
        self.sockdir = self.root / "sock"
        self.sockdir.mkdir()
        _chown(self.sockdir)
        self.hba_file = self.root / "pg_hba.conf"
        self.log = self.root / "server.log"
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        pwfile = self.root / "pw"
        pwfile.write_text(SUPERUSER_PASSWORD + "\n")
        _chown(pwfile)
        subprocess.run(
            _as_postgres(
                [str(PG_BIN / "initdb"), "-D", str(self.data), "-U", OS_USER, "-A",
                 "scram-sha-256", f"--pwfile={pwfile}", "-N"]
            ),
            check=True,
            capture_output=True,
            cwd="/",
        )  # fmt: skip
        pwfile.unlink()

    def write(self, postgresql_conf: str, pg_hba_conf: str) -> None:
        """Replace the cluster's postgresql.conf and the hba file it points to."""
        for path, text in ((self.data / "postgresql.conf", postgresql_conf), (self.hba_file,
                           pg_hba_conf)):  # fmt: skip
            path.write_text(text)
            _chown(path)

    def _server_args(self) -> list[str]:
        return [str(PG_BIN / "postgres"), "-D", str(self.data), "-k", str(self.sockdir)]

    def check_config(self) -> subprocess.CompletedProcess[str]:
        """Let the server parse its configuration (``postgres -C``) without starting."""
        return subprocess.run(
            _as_postgres([*self._server_args(), "-C", "max_connections"]),
            capture_output=True,
            text=True,
            cwd="/",
            check=False,
        )

    def start(self, timeout: float = 60) -> None:
        """Start the postmaster directly (so we own its PID) and wait until it accepts."""
        log = self.log.open("ab")
        pw = pwd.getpwnam(OS_USER)
        kwargs = {}
        if os.geteuid() == 0:
            kwargs = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}
        self.proc = subprocess.Popen(self._server_args(), stdout=log, stderr=log, cwd="/", **kwargs)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"postgres exited {self.proc.returncode}:\n{self.log_text()}")
            ready = subprocess.run(
                [str(PG_BIN / "pg_isready"), "-q", "-h", str(self.sockdir), "-p", str(self.port)],
                check=False,
            )
            if ready.returncode == 0:
                return
            time.sleep(0.2)
        raise RuntimeError(f"postgres did not become ready:\n{self.log_text()}")

    def psql_as_os_user(self, sql: str) -> subprocess.CompletedProcess[str]:
        """psql over the socket as the postgres OS user (peer authentication)."""
        return subprocess.run(
            _as_postgres(
                [str(PG_BIN / "psql"), "-h", str(self.sockdir), "-p", str(self.port), "-U",
                 OS_USER, "-d", "postgres", "-X", "-At", "-v", "ON_ERROR_STOP=1", "-c", sql]
            ),
            capture_output=True,
            text=True,
            cwd="/",
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PGPASSWORD": ""},
            check=False,
        )  # fmt: skip

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self) -> None:
        """Fast shutdown of the postmaster we started (by PID), then wait for it."""
        if self.proc is None or self.proc.poll() is not None:
            return
        os.kill(self.proc.pid, signal.SIGINT)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGQUIT)
            self.proc.wait(timeout=10)

    def configure(
        self,
        result: TuningResult,
        overrides: dict[str, str] | None = None,
        *,
        database: str = "app",
        app_roles: tuple[str, ...] = ("app",),
        hba: str | None = None,
        tls: dict[str, str] | None = None,
    ) -> None:
        """Write the rendered postgresql.conf (tuned; with ``tls`` lines if given) and
        pg_hba.conf: ``hba``, or pgsteady's rules for ``database`` and ``app_roles``."""
        conf = render(
            "postgresql.conf.j2",
            settings=result.settings,
            overrides=overrides or {},
            listen_addresses="127.0.0.1",
            port=self.port,
            hba_file=str(self.hba_file),
            header="Managed by pgsteady (integration test).",
            tls=tls or {},
        )
        if hba is None:
            rules = hba_rules(["samenet"], OS_USER, database=database, app_roles=list(app_roles))
            hba = render("pg_hba.conf.j2", rules=rules)
        self.write(conf, hba)

    def make_tls(self, names: list[str], ca: Authority | None = None) -> Path:
        """CA + server certificate for ``names`` under root/tls, laid out and owned as on a
        converged host (key root:postgres 0640 in a 0750 directory); returns the directory."""
        ca = ca or create_ca("integration")
        cert, key = issue_server_cert(ca, names)
        tls = self.root / "tls"
        (tls / "private").mkdir(parents=True, exist_ok=True)
        tls.chmod(0o755)
        gid = pwd.getpwnam(OS_USER).pw_gid
        os.chown(tls / "private", 0, gid)
        (tls / "private").chmod(0o750)
        (tls / CA_FILE).write_bytes(ca.cert_pem)
        (tls / CERT_FILE).write_bytes(cert)
        key_path = tls / KEY_FILE
        key_path.touch(mode=0o600)
        key_path.write_bytes(key)
        os.chown(key_path, 0, gid)
        key_path.chmod(0o640)
        return tls

    def write_hba(self, text: str) -> None:
        self.hba_file.write_text(text)
        _chown(self.hba_file)

    def reload(self, timeout: float = 10) -> None:
        """pg_reload_conf() and wait until the postmaster has read the files again."""
        before = self.psql_as_os_user("SELECT pg_conf_load_time()").stdout.strip()
        self.psql_as_os_user("SELECT pg_reload_conf()")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            now = self.psql_as_os_user("SELECT pg_conf_load_time()").stdout.strip()
            if now and now != before:
                return
            time.sleep(0.1)
        raise RuntimeError(f"postgres did not reload:\n{self.log_text()}")

    def psql_file(self, path: Path) -> subprocess.CompletedProcess[str]:
        """psql -f as the postgres OS user over the socket, stopping at the first error."""
        return subprocess.run(
            _as_postgres(
                [str(PG_BIN / "psql"), "-h", str(self.sockdir), "-p", str(self.port), "-d",
                 "postgres", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", str(path)]
            ),
            capture_output=True, text=True, cwd="/",
        )  # fmt: skip

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
