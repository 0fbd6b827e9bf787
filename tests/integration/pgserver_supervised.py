"""A real PostgreSQL server in a temp dir, restarted by a supervisor thread when it dies.

Emulates a container with ``restart: always``: when the postmaster dies, every process of the
cluster is SIGKILLed (the kernel does that when a PID namespace's init dies; the processes are
found by their working directory, our private data dir), and after
``restart_delay`` a new postmaster is started on the same data directory and port, again and
again until one stays up.  :meth:`stop` takes the server down on purpose and keeps it down
until :meth:`start`.

Tests should depend only on the :class:`PostgresServer` protocol so that another fixture (a
Docker container, say) can stand in for :class:`SupervisedPostgres`.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Protocol

import psycopg2

from tests.support.ports import free_port

log = logging.getLogger(__name__)

DEFAULT_BINDIR = Path("/usr/lib/postgresql/15/bin")


class PostgresServer(Protocol):
    """What the integration tests need from a database server fixture."""

    def dsn(self) -> str: ...

    def kill_postmaster(self) -> int:
        """SIGKILL the postmaster (its supervisor is expected to bring it back); return PID."""
        ...

    def stop(self) -> None:
        """Take the server down and keep it down."""
        ...

    def start(self) -> None:
        """Bring the server back up and return once it accepts connections."""
        ...


def available(bindir: Path = DEFAULT_BINDIR, user: str = "postgres") -> str | None:
    """``None`` if this harness can run here, else the reason it cannot (for ``skip``)."""
    if not (bindir / "postgres").exists():
        return f"no postgres binary in {bindir}"
    try:
        pwd.getpwnam(user)
    except KeyError:
        return f"no OS user {user!r}"
    if os.geteuid() != 0:
        return "needs root to run postgres as another user"
    return None


class SupervisedPostgres:
    """initdb + postmaster as ``user`` on a free port + a restart-on-death supervisor."""

    def __init__(
        self,
        *,
        bindir: Path = DEFAULT_BINDIR,
        user: str = "postgres",
        restart_delay: float = 0.2,
        settings: dict[str, str] | None = None,
    ) -> None:
        self.bindir = bindir
        self.user = user
        self.restart_delay = restart_delay
        self.port = free_port()
        self.restarts = 0
        self.deaths: list[float] = []  # monotonic times the supervisor saw the postmaster dead
        pw = pwd.getpwnam(user)
        self._uid, self._gid = pw.pw_uid, pw.pw_gid
        self.base = Path(tempfile.mkdtemp(prefix="pgsteady-pg-"))
        os.chown(self.base, self._uid, self._gid)
        self.datadir = self.base / "data"
        self.sockdir = self.base / "sock"
        self.logfile = self.base / "postgres.log"
        self._settings = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": str(self.sockdir),
            "max_connections": "50",
            "shared_buffers": "32MB",
            **(settings or {}),
        }
        self._lock = threading.RLock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._want_up = False
        self._closing = threading.Event()
        self._supervisor: threading.Thread | None = None

    # -- PostgresServer protocol -------------------------------------------------------------

    def dsn(self) -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres"

    def kill_postmaster(self, *, teardown: bool = True) -> int:
        """SIGKILL the postmaster; return its PID.  The supervisor restarts it.

        With ``teardown`` (the default) the rest of the cluster is SIGKILLed right away, as the
        kernel does in a container whose init died.  Without it, orphaned backends live on
        until they notice the postmaster is gone (bare-metal behaviour) or the supervisor
        reaps them.
        """
        with self._lock:
            proc = self._proc
            if proc is None or proc.poll() is not None:
                raise RuntimeError("postmaster is not running")
            os.kill(proc.pid, signal.SIGKILL)
            if teardown:
                proc.wait(10)
                self._kill_cluster_processes()
        log.info("SIGKILLed postmaster %d (teardown=%s)", proc.pid, teardown)
        return proc.pid

    def stop(self, timeout: float = 30.0) -> None:
        with self._lock:
            self._want_up = False
            proc, self._proc = self._proc, None
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGINT)  # fast shutdown
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)
            self._kill_cluster_processes()

    def start(self, timeout: float = 30.0) -> None:
        with self._lock:
            self._want_up = True
            if self._proc is None or self._proc.poll() is not None:
                self._spawn()
        self.wait_ready(timeout)

    # -- extras ------------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        with self._lock:
            return None if self._proc is None else self._proc.pid

    def setup(self) -> SupervisedPostgres:
        """initdb, start the server and the supervisor; returns self once connectable."""
        atexit.register(self.close)
        self._run_as_user(
            [
                str(self.bindir / "initdb"),
                "-D",
                str(self.datadir),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ]
        )
        self.sockdir.mkdir()
        os.chown(self.sockdir, self._uid, self._gid)
        self.start()
        self._supervisor = threading.Thread(target=self._supervise, name="pg-supervisor")
        self._supervisor.daemon = True
        self._supervisor.start()
        return self

    def wait_ready(self, timeout: float = 30.0) -> float:
        """Block until a connection succeeds; return the seconds waited."""
        start = time.monotonic()
        while True:
            try:
                psycopg2.connect(self.dsn(), connect_timeout=2).close()
                return time.monotonic() - start
            except psycopg2.OperationalError as exc:
                if time.monotonic() - start > timeout:
                    msg = f"postgres not ready after {timeout}s:\n{self.log_tail()}"
                    raise TimeoutError(msg) from exc
                time.sleep(0.05)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def close(self) -> None:
        """Stop the supervisor and the server, then delete the temp dir.  Idempotent."""
        if self._closing.is_set():
            return
        self._closing.set()
        if self._supervisor is not None:
            self._supervisor.join(10)
        with contextlib.suppress(Exception):
            self.stop()
        shutil.rmtree(self.base, ignore_errors=True)
        atexit.unregister(self.close)

    def __enter__(self) -> SupervisedPostgres:
        return self.setup()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals ---------------------------------------------------------------------------

    def _supervise(self) -> None:
        while not self._closing.wait(0.05):
            with self._lock:
                proc = self._proc
                if not self._want_up or proc is None or proc.poll() is None:
                    continue
                self.deaths.append(time.monotonic())
                log.warning("postmaster %d died (rc=%s); restarting", proc.pid, proc.returncode)
                self._kill_cluster_processes()
            # Docker-like restart delay, without holding the lock (stop() may come meanwhile).
            if self._closing.wait(self.restart_delay):
                return
            with self._lock:
                if self._want_up and self._proc is proc:
                    self._spawn()
                    self.restarts += 1

    def _spawn(self) -> None:
        args = [str(self.bindir / "postgres"), "-D", str(self.datadir)]
        for key, value in self._settings.items():
            args += ["-c", f"{key}={value}"]
        with open(self.logfile, "ab") as logf:
            self._proc = subprocess.Popen(
                args,
                stdout=logf,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                user=self._uid,
                group=self._gid,
                extra_groups=[],
                env={"PATH": "/usr/bin:/bin", "LANG": "C"},
                cwd=self.base,
                start_new_session=True,
            )
        log.info("started postmaster %d", self._proc.pid)

    def _kill_cluster_processes(self, timeout: float = 10.0) -> None:
        """SIGKILL leftover processes of this cluster (cwd is our private data dir)."""
        deadline = time.monotonic() + timeout
        while True:
            pids = self._cluster_pids()
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            if time.monotonic() > deadline:
                raise RuntimeError(f"cluster processes survive SIGKILL: {pids}")
            time.sleep(0.02)

    def _cluster_pids(self) -> list[int]:
        target = os.path.realpath(self.datadir)
        pids = []
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                if os.readlink(f"/proc/{entry.name}/cwd") == target:
                    pids.append(int(entry.name))
            except OSError:  # gone, zombie, or not ours to read
                continue
        return pids

    def _run_as_user(self, args: list[str]) -> None:
        subprocess.run(
            args,
            check=True,
            capture_output=True,
            user=self._uid,
            group=self._gid,
            extra_groups=[],
            env={"PATH": "/usr/bin:/bin", "LANG": "C"},
            cwd=self.base,
        )
