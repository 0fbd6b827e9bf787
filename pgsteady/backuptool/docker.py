"""Commands in the Postgres container: ``docker exec -u postgres``, search_path pinned."""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import tempfile

from .config import Config
from .errors import BackupError
from .layout import CHUNK, disk_message, remove_quietly

#: Every session the tool opens runs as the superuser: it resolves names in pg_catalog
#: (then pg_temp, which is never searched for functions or operators) and never in a
#: schema the application role can create objects in.
#: role=none and default_transaction_read_only=off outrank what the application sets on
#: its database (ALTER DATABASE ... SET role / default_transaction_read_only); the
#: string equals pgsteady.postgres.session.SUPERUSER_PGOPTIONS (this zip is standalone).
SAFE_PGOPTIONS = (
    "-c search_path=pg_catalog,pg_temp -c role=none -c default_transaction_read_only=off"
)


class Docker:
    """``docker exec -u postgres`` into the Postgres container (search_path pinned)."""

    def __init__(self, config: Config) -> None:
        self.docker = config.docker
        self.container = config.container
        self.project = config.compose_project

    def exec_args(self, *command: str, stdin: bool = False) -> list[str]:
        interactive = ["-i"] if stdin else []
        return [
            self.docker, "exec", *interactive, "-e", f"PGOPTIONS={SAFE_PGOPTIONS}",
            "-u", "postgres", self.container, *command,
        ]  # fmt: skip

    def check_running(self) -> None:
        """Raise a BackupError naming the container unless it is running."""
        try:
            proc = subprocess.run(
                [self.docker, "inspect", "-f", "{{.State.Status}}", self.container],
                capture_output=True,
                text=True,
                timeout=60,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise BackupError(f"cannot run docker ({self.docker}): {exc}") from None
        if proc.returncode != 0:
            raise BackupError(
                f"container {self.container} not found (compose project {self.project}): "
                f"{proc.stderr.strip()}"
            )
        state = proc.stdout.strip()
        if state != "running":
            raise BackupError(
                f"container {self.container} is not running (state: {state}); start it "
                f"(docker-compose -p {self.project} up -d, in the app directory)"
            )

    def run(self, *command: str, input_file: str | None = None, timeout: float = 3600) -> str:
        """Run a command in the container; return stdout or raise with its stderr."""
        stdin = open(input_file, "rb") if input_file else subprocess.DEVNULL  # noqa: SIM115
        try:
            proc = subprocess.run(
                self.exec_args(*command, stdin=input_file is not None),
                stdin=stdin,
                capture_output=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            raise BackupError(f"{command[0]} timed out after {timeout:.0f} s") from None
        finally:
            if input_file:
                stdin.close()
        if proc.returncode != 0:
            err = proc.stderr.decode(errors="replace").strip()
            raise BackupError(f"{command[0]} failed in {self.container}: {err}")
        return proc.stdout.decode(errors="replace")

    def psql(self, db: str, sql: str, timeout: float = 3600) -> str:
        """Run one SQL command as postgres in ``db``; return its unaligned output."""
        return self.run(
            "psql", "-XAtq", "-v", "ON_ERROR_STOP=1", "-d", db, "-c", sql, timeout=timeout
        ).strip()

    def stream_to(
        self, command: list[str], path: str, what: str, verify: list[str] | None = None
    ) -> tuple[int, str]:
        """Write a container command's stdout to a new 0600 file; return (size, sha256).

        One pass: each chunk goes to the file, into sha256 and, with ``verify``, to the
        stdin of that container command (e.g. ``pg_restore -f /dev/null``), which must exit
        0; it may stop reading early (``pg_restore --list`` reads the TOC only). The file
        is fsynced once; on any failure it is removed and a BackupError is raised.
        """
        digest = hashlib.sha256()
        size = 0
        with tempfile.TemporaryFile() as err, tempfile.TemporaryFile() as verr:
            proc = subprocess.Popen(self.exec_args(*command), stdout=subprocess.PIPE, stderr=err)
            checker = None
            try:
                if verify:
                    checker = subprocess.Popen(
                        self.exec_args(*verify, stdin=True),
                        stdin=subprocess.PIPE,
                        stdout=subprocess.DEVNULL,
                        stderr=verr,
                    )
                feed = checker.stdin if checker else None
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as out:
                    for chunk in iter(lambda: proc.stdout.read(CHUNK), b""):
                        out.write(chunk)
                        digest.update(chunk)
                        size += len(chunk)
                        if feed:
                            try:
                                feed.write(chunk)
                            except BrokenPipeError:  # it stopped reading: its exit code says
                                feed = None
                    _close_quietly(checker)
                    out.flush()
                    os.fsync(out.fileno())
            except BaseException as exc:
                for child in (proc, checker):
                    if child:
                        child.kill()
                        _close_quietly(child)
                        child.wait()
                message = disk_message(exc, path, what) if isinstance(exc, OSError) else ""
                remove_quietly(path)
                if message:
                    raise BackupError(message) from None
                raise
            code = proc.wait()
            checked = checker.wait() if checker else 0
            if code != 0:
                remove_quietly(path)
                err.seek(0)
                message = err.read().decode(errors="replace").strip()
                raise BackupError(f"{what} failed in {self.container} (exit {code}): {message}")
            if checked != 0:
                remove_quietly(path)
                verr.seek(0)
                message = verr.read().decode(errors="replace").strip()
                raise BackupError(
                    f"verification of {os.path.basename(path)} ({verify[0]}, fed as it was "
                    f"written) failed (exit {checked}): {message}"
                )
        return size, digest.hexdigest()


def _close_quietly(child: subprocess.Popen | None) -> None:
    """Close a child's stdin (end of input); a child that already exited is fine."""
    if child and child.stdin and not child.stdin.closed:
        with contextlib.suppress(BrokenPipeError):
            child.stdin.close()
