"""The ``pitr`` part of ``python -m bench``: what WAL archiving with pgBackRest costs and what
its restores do, on the real Debian image with pgsteady's rendered pgbackrest.conf
(encrypted posix repository, async push, zstd).

* throughput: pgbench TPC-B-like on two servers with the same data and settings, one
  archiving and one with ``archive_mode = off``, alternated round by round; paired ratios;
* restore: a full backup of the pgbench database restored into an empty volume
  (``pgbackrest restore``), database MB per second of its wall time, and the time until the
  restored server answers with every pgbench row;
* PITR correctness: marker rows committed one per transaction while pgbench writes beside
  them; restores to random times between two markers must hold exactly the markers
  committed at or before the target;
* host loss: the archiving server lost with its volume under a writer, the replacement
  restored from the repository; seconds of acknowledged writes lost (bench.pitr_loss).

``python -m bench.pitr [--scale N] [--seconds S] [--rounds R] [--targets T] [--loss-trials L]``
runs only this and prints its JSON. Everything it creates has a unique name and is removed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import pitr_loss, stats
from bench.config import BenchConfig
from bench.container_exec import DOCKER, pg, psql, sh
from pgsteady.backup import pgbackrest
from pgsteady.settings import HostFacts, Settings, build_settings

DATA = "/var/lib/postgresql/data"
CLIENTS, THREADS = 4, 2
MARKS, MARK_GAP = 12, 0.3  # marker rows and the pause after each one's commit
READY_TIMEOUT = 180.0


# --- pure: markers and targets --------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """A recovery target between marker ``after`` and marker ``after + 1``."""

    after: int
    epoch: float

    @property
    def text(self) -> str:
        """The target as Postgres reads it: UTC with microseconds."""
        return datetime.fromtimestamp(self.epoch, UTC).strftime("%Y-%m-%d %H:%M:%S.%f+00")


def parse_epochs(text: str) -> dict[int, float]:
    """``id|epoch`` lines (psql -At) → {id: epoch}; blank lines (pg_sleep) are skipped."""
    out = {}
    for line in text.splitlines():
        if line.strip():
            key, value = line.split("|")
            out[int(key)] = float(value)
    return out


def choose_targets(
    inserted: dict[int, float], committed: dict[int, float], n: int, rng: random.Random
) -> list[Target]:
    """``n`` random targets, each inside a window where no marker commit was in flight.

    Marker i's commit lies between ``inserted[i]`` (clock_timestamp() in its INSERT) and
    ``committed[i]`` (clock_timestamp() read after the commit returned); a target in
    (committed[i], inserted[i + 1]) therefore has exactly markers 1..i at or before it.
    """
    ids = sorted(inserted)
    if ids != list(range(1, len(ids) + 1)) or sorted(committed) != ids:
        raise ValueError(f"markers must be 1..N, inserted and committed: {ids}, {committed}")
    windows = {i: (committed[i], inserted[i + 1]) for i in ids[:-1]}
    if n > len(windows):
        raise ValueError(f"{n} targets need at least {n + 1} markers, got {len(ids)}")
    for i, (low, high) in windows.items():
        if not low < high:
            raise ValueError(f"marker {i} committed at {low}, after marker {i + 1}'s insert")
    chosen = sorted(rng.sample(sorted(windows), n))
    return [Target(i, windows[i][0] + (windows[i][1] - windows[i][0]) * rng.uniform(0.2, 0.8))
            for i in chosen]  # fmt: skip


def exact(target: Target, found: Sequence[int]) -> bool:
    """Every marker committed at or before the target present, none after."""
    return list(found) == list(range(1, target.after + 1))


def marker_script(marks: int, gap: float) -> str:
    """psql input: one marker per transaction, the clock after each commit, a pause."""
    create = "CREATE TABLE bench_marks (id int PRIMARY KEY, inserted timestamptz NOT NULL);\n"
    return create + pitr_loss.writer_script("bench_marks", marks, gap)


# --- the servers --------------------------------------------------------------------------


class Workspace:
    """A pgbackrest.conf, its repository passphrase and a posix repository in a temporary
    directory, and the containers and volumes started from them (all removed on exit)."""

    def __init__(self, s: Settings, image: str) -> None:
        self.s, self.image, self.prefix = s, image, f"pgsbench-{uuid.uuid4().hex[:6]}"
        self.names: list[str] = []
        self.root = Path(tempfile.mkdtemp(prefix="pgsbench-"))

    def __enter__(self) -> Workspace:
        root, uid = self.root, self.s.postgres_uid  # 0700 until every file has its mode
        for d in ("config", "secrets", "repo1"):
            (root / d).mkdir()
        (root / "config" / "pgbackrest.conf").write_text(pgbackrest.render_conf(self.s))
        secret = root / "secrets" / "repo1.conf"
        sh("sh", "-c", pgbackrest.generate_secret_command(str(secret), 1))
        (root / "pw").write_text(uuid.uuid4().hex + "\n")
        for path in (root / "config", root / "secrets"):
            os.chown(path, 0, uid)
            path.chmod(0o750)
        for path in (root / "config" / "pgbackrest.conf", secret, root / "pw"):
            os.chown(path, 0, uid)
            path.chmod(0o640)
        os.chown(root / "repo1", uid, uid)
        root.chmod(0o755)  # the container's postgres reaches its mounts through it
        return self

    def __exit__(self, *exc: object) -> None:
        for name in reversed(self.names):
            self.remove(name)
        shutil.rmtree(self.root, ignore_errors=True)

    def name(self, role: str) -> str:
        name = f"{self.prefix}-{role}"
        self.names.append(name)
        return name

    def remove(self, name: str) -> None:
        subprocess.run([DOCKER, "rm", "-f", "-v", name], capture_output=True)
        subprocess.run([DOCKER, "volume", "rm", "-f", name], capture_output=True)

    def mounts(self) -> list[str]:
        env = pgbackrest.environment(self.s)
        return [
            *(a for k, v in env.items() for a in ("-e", f"{k}={v}")),
            "-v", f"{self.root / 'config'}:/etc/pgsteady:ro",
            "-v", f"{self.root / 'secrets'}:{pgbackrest.SECRETS_MOUNT}:ro",
            "-v", f"{self.root / 'repo1'}:{pgbackrest.repo_mount(1)}",
        ]  # fmt: skip

    def start(self, name: str, archiving: bool) -> None:
        """A server on volume ``name`` (empty: initdb), 1 CPU, archiving on or off."""
        s = self.s
        args = [a for k, v in pgbackrest.server_settings(s).items() for a in ("-c", f"{k}={v}")]
        if not archiving:
            args = ["-c", "archive_mode=off"]
        sh(
            DOCKER, "run", "-d", "--init", "--name", name, "--cpus", "1", "--memory", "1g",
            "--shm-size", "256m", "-e", f"PGDATA={DATA}/pgdata",
            "-e", "POSTGRES_PASSWORD_FILE=/run/secrets/pw", *self.mounts(),
            "-v", f"{name}:{DATA}", "-v", f"{self.root / 'pw'}:/run/secrets/pw:ro",
            self.image, "postgres", "-c", "shared_buffers=256MB", "-c", "max_wal_size=1GB", *args,
        )  # fmt: skip
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            ok = subprocess.run([DOCKER, "exec", name, "pg_isready", "-q", "-h", "127.0.0.1"])
            if ok.returncode == 0:
                return
            time.sleep(0.2)
        raise RuntimeError(f"{name} did not accept connections within {READY_TIMEOUT:.0f} s")

    def restore(self, volume: str, *options: str) -> float:
        """``pgbackrest restore`` into a new empty volume; seconds it took."""
        sh(DOCKER, "volume", "create", volume)
        started = time.monotonic()
        sh(
            DOCKER, "run", "--rm", "-u", "postgres", "--entrypoint", "/bin/sh", *self.mounts(),
            "-v", f"{volume}:{DATA}", self.image,
            "-c", f"mkdir -m 700 -p {DATA}/pgdata && exec "
            + shlex.join(pgbackrest.command(self.s, "restore", *options)),
        )  # fmt: skip
        return time.monotonic() - started

    def promoted(self, name: str) -> None:
        """Wait until a restored server has left recovery."""
        deadline = time.monotonic() + READY_TIMEOUT
        while psql(name, "SELECT pg_is_in_recovery()") != "f":
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} still in recovery after {READY_TIMEOUT:.0f} s")
            time.sleep(0.1)


def tps(name: str, seconds: int) -> float:
    out = pg(name, "pgbench", "-n", "-c", str(CLIENTS), "-j", str(THREADS), "-T", str(seconds),
             "postgres")  # fmt: skip
    match = re.search(r"tps = ([\d.]+)", out)
    if not match:
        raise RuntimeError(f"no tps in pgbench output: {out[-500:]}")
    return float(match.group(1))


def round_order(rounds: int) -> list[tuple[int, str]]:
    """ABBA...: which server runs first alternates, so neither gains from going first."""
    pair = ("archiving", "no_archiving")
    return [(r, label) for r in range(rounds) for label in (pair if r % 2 == 0 else pair[::-1])]


def drained(name: str, timeout: float = 300) -> None:
    """Wait until the server has no WAL segment waiting for archive-push."""
    sql = "SELECT count(*) FROM pg_ls_archive_statusdir() WHERE name LIKE '%.ready'"
    deadline = time.monotonic() + timeout
    while psql(name, sql) != "0":
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name}: WAL still waiting for archive-push after {timeout} s")
        time.sleep(0.5)


def debian_image(version: int) -> str:
    """The Debian-built image the deploy would use (built once if missing)."""
    from tests.integration.debian_images import docker_client, ensure_debian_image

    return ensure_debian_image(docker_client(), version)


# --- the part -----------------------------------------------------------------------------


def run(cfg: BenchConfig, log: Callable[[str], None]) -> dict[str, Any]:
    """Measure the cost, the restore and PITR correctness; the part's results."""
    s = build_settings({"postgres_image_source": "debian"}, HostFacts(4096, 2))
    image = debian_image(s.postgres_version)
    with Workspace(s, image) as ws:
        arch, plain = ws.name("arch"), ws.name("plain")
        for name, archiving in ((arch, True), (plain, False)):
            ws.start(name, archiving)
            pg(name, "pgbench", "-i", "-q", "-s", str(cfg.pitr_scale), "postgres")
        pg(arch, *pgbackrest.command(s, "stanza-create"))
        result: dict[str, Any] = {
            "image": image,
            "postgres": psql(arch, "SHOW server_version"),
            "pgbackrest": pg(arch, "pgbackrest", "version").strip(),
            "scale": cfg.pitr_scale,
            "clients": CLIENTS,
            "threads": THREADS,
            "seconds": cfg.pitr_seconds,
            "rounds": cfg.pitr_rounds,
            "order": "archiving first in odd rounds, second in even rounds; before every "
            "run the archive queue drained and a CHECKPOINT on the server about to run",
            "archive_settings": pgbackrest.server_settings(s),
        }
        log(f"pitr: {result['pgbackrest']}, scale {cfg.pitr_scale}, two servers loaded")
        runs: dict[str, list[float]] = {"archiving": [], "no_archiving": []}
        servers = {"archiving": arch, "no_archiving": plain}
        for r, label in round_order(cfg.pitr_rounds):
            drained(arch)  # no archive-push left over from an earlier run
            # every run starts right after a checkpoint: the same full-page-write burst
            psql(servers[label], "CHECKPOINT")
            runs[label].append(tps(servers[label], cfg.pitr_seconds))
            log(f"pitr round {r + 1} {label}: {runs[label][-1]:.0f} tps")
        ws.remove(plain)
        result["tps_runs"] = runs
        result["tps"] = {k: stats.summary(v, 1) for k, v in runs.items()}
        result["archiving_vs_not"] = stats.ratio_summary(runs["archiving"], runs["no_archiving"])
        result.update(restore_rate(ws, arch))
        log(f"pitr restore: {result['restore_mb_per_s']} MB/s, ready in "
            f"{result['restore_to_ready_seconds']} s")  # fmt: skip
        result["pitr"] = pitr_targets(ws, arch, cfg.pitr_targets, log)
        if cfg.pitr_loss_trials:  # last: it destroys the archiving server
            timeout = s.seconds("pgbackrest_archive_timeout")
            result["host_loss"] = pitr_loss.measure(ws, arch, cfg.pitr_loss_trials, timeout, log)
    return result


def restore_rate(ws: Workspace, arch: str) -> dict[str, Any]:
    """Full backup, restore into an empty volume, start it; sizes and times."""
    size = int(psql(arch, "SELECT pg_database_size('postgres')"))
    accounts = psql(arch, "SELECT count(*) FROM pgbench_accounts")
    started = time.monotonic()
    pg(arch, *pgbackrest.command(ws.s, "backup", "--type=full"))
    backup_s = time.monotonic() - started
    restored = ws.name("restored")
    started = time.monotonic()
    restore_s = ws.restore(restored, "--type=immediate", "--target-action=promote")
    ws.start(restored, archiving=False)
    ws.promoted(restored)
    found = psql(restored, "SELECT count(*) FROM pgbench_accounts")
    ready_s = time.monotonic() - started
    ws.remove(restored)
    if found != accounts:
        raise RuntimeError(f"restored pgbench_accounts has {found} rows, the source {accounts}")
    return {
        "database_bytes": size,
        "backup_seconds": round(backup_s, 2),
        "restore_seconds": round(restore_s, 2),
        "restore_mb_per_s": round(size / 2**20 / restore_s, 1),
        "restore_to_ready_seconds": round(ready_s, 2),
        "restored_accounts": int(found),
    }


def pitr_targets(ws: Workspace, arch: str, n: int, log: Callable[[str], None]) -> dict[str, Any]:
    """Markers committed under pgbench load, then ``n`` restores to random times."""
    seconds = int(MARKS * (MARK_GAP + 0.2)) + 5
    load = subprocess.Popen(
        [DOCKER, "exec", "-u", "postgres", arch, "pgbench", "-n", "-c", "2", "-j", "1", "-T",
         str(seconds), "postgres"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        after = pg(arch, "psql", "-XAtq", "-v", "ON_ERROR_STOP=1",
                   stdin=marker_script(MARKS, MARK_GAP))  # fmt: skip
    finally:
        load.wait(timeout=seconds + 120)
    committed = parse_epochs(after)
    inserted = parse_epochs(
        psql(arch, "SELECT id, extract(epoch FROM inserted) FROM bench_marks ORDER BY id")
    )
    pg(arch, *pgbackrest.command(ws.s, "check"))  # switches and archives the newest WAL
    seed = random.SystemRandom().randrange(2**32)
    targets = choose_targets(inserted, committed, n, random.Random(seed))
    checked = []
    for k, target in enumerate(targets, 1):
        name = ws.name(f"pitr{k}")
        started = time.monotonic()
        ws.restore(name, "--type=time", f"--target={target.text}", "--target-action=promote")
        ws.start(name, archiving=False)
        ws.promoted(name)
        found = [int(i) for i in psql(name, "SELECT id FROM bench_marks ORDER BY id").split()]
        seconds_taken = time.monotonic() - started
        ws.remove(name)
        ok = exact(target, found)
        checked.append({"target": target.text, "expected": target.after, "found": found,
                        "exact": ok, "seconds": round(seconds_taken, 2)})  # fmt: skip
        log(f"pitr target {k}/{n} {target.text}: {len(found)} markers, expected "
            f"{target.after}: {'exact' if ok else 'WRONG'}")  # fmt: skip
    return {
        "markers": MARKS,
        "marker_gap_seconds": MARK_GAP,
        "background_load": "pgbench TPC-B-like (2 clients)",
        "seed": seed,
        "targets": checked,
        "exact": sum(t["exact"] for t in checked),
        "n": len(checked),
        "seconds": stats.summary([t["seconds"] for t in checked], 2),
    }


def main(argv: list[str] | None = None) -> None:
    defaults = BenchConfig()
    p = argparse.ArgumentParser(
        prog="python -m bench.pitr", description="pgBackRest: archiving cost, restore, PITR"
    )
    p.add_argument("--scale", type=int, default=defaults.pitr_scale)
    p.add_argument("--seconds", type=int, default=defaults.pitr_seconds)
    p.add_argument("--rounds", type=int, default=defaults.pitr_rounds)
    p.add_argument("--targets", type=int, default=defaults.pitr_targets)
    p.add_argument("--loss-trials", type=int, default=defaults.pitr_loss_trials)
    args = p.parse_args(argv)
    cfg = replace(defaults, pitr_scale=args.scale, pitr_seconds=args.seconds,
                  pitr_rounds=args.rounds, pitr_targets=args.targets,
                  pitr_loss_trials=args.loss_trials)  # fmt: skip
    result = run(cfg, lambda message: print(message, file=sys.stderr, flush=True))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
