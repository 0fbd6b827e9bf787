"""``python -m bench.pitr [--scale N] [--seconds S] [--rounds R]``: the cost of WAL archiving
and the restore rate of pgBackRest, on the real Debian image with pgsteady's rendered
pgbackrest.conf (encrypted posix repository, async push).

* throughput: pgbench TPC-B-like, the same data and server settings, alternating rounds
  on a server with archiving on and one with ``archive_mode = off``; the ratio of medians;
* restore: a full backup of the pgbench database restored into an empty volume
  (``pgbackrest restore``), database MB per second of wall time.

Prints one JSON document. Everything it creates has a unique name and is removed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from pgsteady import pgbackrest
from pgsteady.image import debian_recipe
from pgsteady.settings import HostFacts, build_settings

DOCKER = "/usr/bin/docker" if Path("/usr/bin/docker").exists() else "docker"
UID = 999


def sh(*args: str, timeout: float = 3600) -> str:
    proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:4])}: {proc.stdout[-1500:]} {proc.stderr[-1500:]}")
    return proc.stdout


class Server:
    def __init__(self, image: str, root: Path, archiving: bool) -> None:
        self.name = f"pgsbench-{'arch' if archiving else 'plain'}-{uuid.uuid4().hex[:6]}"
        self.image, self.root, self.archiving = image, root, archiving

    def start(self, s, volume: str | None = None) -> None:
        args = [a for k, v in pgbackrest.server_settings(s).items() for a in ("-c", f"{k}={v}")]
        if not self.archiving:
            args = ["-c", "archive_mode=off"]
        env = {**pgbackrest.environment(s), "POSTGRES_PASSWORD_FILE": "/run/secrets/pw"}
        sh(
            DOCKER, "run", "-d", "--init", "--name", self.name, "--cpus", "1", "--memory", "1g",
            "--shm-size", "256m", "-e", "PGDATA=/var/lib/postgresql/data/pgdata",
            *(a for k, v in env.items() for a in ("-e", f"{k}={v}")),
            "-v", f"{volume or self.name}:/var/lib/postgresql/data",
            "-v", f"{self.root / 'pw'}:/run/secrets/pw:ro",
            "-v", f"{self.root / 'config'}:/etc/pgsteady:ro",
            "-v", f"{self.root / 'secrets'}:{pgbackrest.SECRETS_MOUNT}:ro",
            "-v", f"{self.root / 'repo1'}:{pgbackrest.repo_mount(1)}",
            self.image, "postgres", "-c", "shared_buffers=256MB", "-c", "max_wal_size=1GB", *args,
        )  # fmt: skip
        for _ in range(240):
            ok = subprocess.run([DOCKER, "exec", self.name, "pg_isready", "-q", "-h", "127.0.0.1"])
            if ok.returncode == 0:
                return
            time.sleep(0.5)
        raise RuntimeError(f"{self.name} did not start")

    def exec(self, *args: str, timeout: float = 3600) -> str:
        return sh(DOCKER, "exec", "-u", "postgres", self.name, *args, timeout=timeout)

    def remove(self) -> None:
        subprocess.run([DOCKER, "rm", "-f", "-v", self.name], capture_output=True)
        subprocess.run([DOCKER, "volume", "rm", "-f", self.name], capture_output=True)


def tps(server: Server, seconds: int) -> float:
    out = server.exec("pgbench", "-n", "-c", "4", "-j", "2", "-T", str(seconds), "postgres")
    return float(re.search(r"tps = ([\d.]+)", out).group(1))


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.pitr")
    p.add_argument("--scale", type=int, default=20)
    p.add_argument("--seconds", type=int, default=30)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    s = build_settings({"postgres_image_source": "debian"}, HostFacts(4096, 2))
    image = debian_recipe(s.postgres_version).tag
    root = Path(tempfile.mkdtemp(prefix="pgsbench-"))
    root.chmod(0o755)
    for d in ("config", "secrets", "repo1"):
        (root / d).mkdir()
    (root / "config" / "pgbackrest.conf").write_text(pgbackrest.render_conf(s))
    secret = root / "secrets" / "repo1.conf"
    sh("sh", "-c", pgbackrest.generate_secret_command(str(secret), 1))
    (root / "pw").write_text("bench\n")
    for path in (root / "config", root / "secrets"):
        os.chown(path, 0, UID)
        path.chmod(0o750)
    for path in (root / "config" / "pgbackrest.conf", secret, root / "pw"):
        os.chown(path, 0, UID)
        path.chmod(0o640)
    os.chown(root / "repo1", UID, UID)
    servers = [Server(image, root, True), Server(image, root, False)]
    result: dict[str, object] = {"scale": args.scale, "seconds": args.seconds}
    try:
        for srv in servers:
            srv.start(s)
            srv.exec("pgbench", "-i", "-q", "-s", str(args.scale), "postgres")
        servers[0].exec(*pgbackrest.command(s, "stanza-create"))
        runs: dict[str, list[float]] = {"archiving": [], "no_archiving": []}
        for _ in range(args.rounds):
            runs["archiving"].append(tps(servers[0], args.seconds))
            runs["no_archiving"].append(tps(servers[1], args.seconds))
        result["tps"] = runs
        result["tps_ratio"] = round(
            statistics.median(runs["archiving"]) / statistics.median(runs["no_archiving"]), 3
        )
        servers[1].remove()
        size = int(servers[0].exec("psql", "-XAtc", "SELECT pg_database_size('postgres')"))
        started = time.monotonic()
        servers[0].exec(*pgbackrest.command(s, "backup", "--type=full"))
        backup_s = time.monotonic() - started
        restored = Server(image, root, False)
        restored.name = f"{servers[0].name}-restore"
        servers.append(restored)
        sh(DOCKER, "volume", "create", restored.name)
        env = [a for k, v in pgbackrest.environment(s).items() for a in ("-e", f"{k}={v}")]
        started = time.monotonic()
        sh(
            DOCKER, "run", "--rm", "-u", "postgres", "--entrypoint", "/bin/sh", *env,
            "-v", f"{restored.name}:/var/lib/postgresql/data",
            "-v", f"{root / 'config'}:/etc/pgsteady:ro",
            "-v", f"{root / 'secrets'}:{pgbackrest.SECRETS_MOUNT}:ro",
            "-v", f"{root / 'repo1'}:{pgbackrest.repo_mount(1)}",
            image, "-c", "mkdir -m 700 -p /var/lib/postgresql/data/pgdata && exec "
            + " ".join(pgbackrest.command(s, "restore", "--type=immediate")),
        )  # fmt: skip
        restore_s = time.monotonic() - started
        result.update(
            database_bytes=size,
            backup_seconds=round(backup_s, 1),
            restore_seconds=round(restore_s, 1),
            restore_mb_per_s=round(size / 2**20 / restore_s, 1),
        )
    finally:
        for srv in servers:
            srv.remove()
        shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
