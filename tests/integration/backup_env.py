"""Helpers for the backup tool's integration tests: a real Postgres container and the
tool installed into a scratch APP_DIR exactly as the deploy installs it."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from pgsteady.backup import artifact

DOCKER = "/usr/bin/docker"
REPO = Path(__file__).resolve().parents[2]
WRAPPER = REPO / "files/backup/pgsteady-backup"
# The host's interpreter; PGSTEADY_TEST_HOST_PYTHON=python3.8 checks the oldest supported.
HOST_PYTHON = os.environ.get("PGSTEADY_TEST_HOST_PYTHON") or (
    "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else "python3"
)


def install_tool(bin_dir: Path) -> None:
    """What the deploy uploads to APP_DIR/bin: the wrapper and the package's zip."""
    shutil.copy(WRAPPER, bin_dir / "pgsteady-backup")
    os.chmod(bin_dir / "pgsteady-backup", 0o755)
    archive = bin_dir / artifact.ARTIFACT
    archive.write_bytes(artifact.build())
    os.chmod(archive, 0o644)


def docker(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [DOCKER, *args], capture_output=True, text=True, check=check, timeout=timeout
    )


def find_image() -> str | None:
    """A Postgres image built by files/image/build-debian-image.sh, if any."""
    if os.environ.get("PGSTEADY_TEST_IMAGE"):
        return os.environ["PGSTEADY_TEST_IMAGE"]
    try:
        out = docker(
            "images",
            "--filter",
            "label=io.pgsteady.recipe",
            "--format",
            "{{.Repository}}:{{.Tag}}",
            check=False,
        ).stdout.split()
    except (OSError, subprocess.TimeoutExpired):
        return None
    tags = [t for t in out if t.startswith("pgsteady/postgres:")] or out
    return tags[0] if tags else None


class Postgres:
    """A throwaway container of the test image (removed with its volumes by ``remove``)."""

    def __init__(self, image: str, *run_args: str) -> None:
        self.name = f"pgsteady-bt-{secrets.token_hex(4)}"
        docker(
            "run",
            "-d",
            "--name",
            self.name,
            "-e",
            "POSTGRES_PASSWORD=unused",
            "-e",
            "POSTGRES_DB=app",
            *run_args,
            image,
        )
        self.wait_ready()
        self.allow_restore_role()

    def allow_restore_role(self) -> None:
        """Put pgsteady's pg_hba rule for the restore role first, as the rendered file has it.

        Restore and drill load app-owned rows in a session logged in as the NOSUPERUSER
        ``pgsteady_restore`` (pgsteady.postgres.parameters.hba_rules), over the socket with a
        password.
        """
        rule = "local all pgsteady_restore scram-sha-256"
        script = (
            'f=$(psql -XAtq -c "SHOW hba_file") && '
            f'{{ echo "{rule}"; cat "$f"; }} > "$f.new" && cat "$f.new" > "$f" && rm "$f.new" && '
            'psql -XAtq -c "SELECT pg_reload_conf()"'
        )
        docker("exec", "-u", "postgres", self.name, "sh", "-c", script)
        time.sleep(0.5)

    def wait_ready(self, timeout: float = 60) -> None:
        """Until the final server (not the entrypoint's init server) accepts TCP connections."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ok = docker("exec", self.name, "pg_isready", "-q", "-h", "127.0.0.1", check=False)
            if ok.returncode == 0 and self.sql("SELECT 1", check=False).stdout.strip() == "1":
                return
            time.sleep(0.3)
        logs = docker("logs", "--tail", "30", self.name, check=False)
        raise RuntimeError(f"{self.name} not ready: {logs.stdout}{logs.stderr}")

    def sql(self, sql: str, db: str = "app", check: bool = True) -> subprocess.CompletedProcess:
        return docker(
            "exec",
            "-u",
            "postgres",
            self.name,
            "psql",
            "-XAtq",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            db,
            "-c",
            sql,
            check=check,
        )

    def value(self, sql: str, db: str = "app") -> str:
        return self.sql(sql, db).stdout.strip()

    def databases(self) -> set[str]:
        return set(self.value("SELECT datname FROM pg_database", "postgres").split())

    def table_digests(self, db: str) -> dict[str, str]:
        """md5 of the ordered text of every row, per user table of ``db``."""
        tables = self.value(
            "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'r' "
            "AND n.nspname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1",
            db,
        ).splitlines()
        return {
            t: self.value(
                f"SELECT count(*) || ':' || coalesce(md5(string_agg(x::text, E'\\n' "
                f"ORDER BY x::text)), '-') FROM {t} x",
                db,
            )
            for t in tables
        }

    def remove(self) -> None:
        docker("rm", "-f", "-v", self.name, check=False)


@dataclass
class Tool:
    """The backup tool installed in a scratch APP_DIR, run like cron runs it."""

    app_dir: Path
    backup_dir: Path
    config_path: Path

    @classmethod
    def install(
        cls,
        app_dir: Path,
        container: str,
        databases: list[str],
        backup_dir: Path | None = None,
        **extra: object,
    ) -> Tool:
        bin_dir = app_dir / "bin"
        bin_dir.mkdir(parents=True, exist_ok=True)
        install_tool(bin_dir)
        backup_dir = backup_dir or app_dir / "backups"
        (app_dir / "config").mkdir(exist_ok=True)
        config = {
            "container": container,
            "databases": databases,
            "backup_dir": str(backup_dir),
            "keep_days": 7,
            "keep_weeks": 4,
            "keep_months": 6,
            "docker": DOCKER,
            "compose_project": "pgsteady-test",
            **extra,
        }
        path = app_dir / "config" / "backup.json"
        path.write_text(json.dumps(config))
        return cls(app_dir, backup_dir, path)

    def run(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        command = [
            HOST_PYTHON,
            str(self.app_dir / "bin" / "pgsteady-backup"),
            args[0],
            "--config",
            str(self.config_path),
            *args[1:],
        ]
        return subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd="/",
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
        )

    def status(self) -> dict:
        return json.loads((self.backup_dir / "status.json").read_text())

    def files(self) -> list[str]:
        """Every entry below backup_dir, relative."""
        return sorted(str(p.relative_to(self.backup_dir)) for p in self.backup_dir.rglob("*"))

    def latest(self, db: str = "app", tier: str = "last") -> Path:
        return (self.backup_dir / tier / f"{db}-latest.dump").resolve()
