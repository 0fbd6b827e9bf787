"""PgBouncer: what the pooler costs and what it serves (issue 18).

``python -m bench.pooler [--rounds N] [--seconds S] [--out FILE]``: one stack converged
with the real pyinfra CLI (pgbouncer_enabled by default), pgbench data in its app
database, then, alternated round by round in the same session:

* ``pgbench -S`` (select-only, 8 clients held) through the pooler and direct: the
  pooler's added latency per query (both over TLS with verify-full, as the app role);
* ``pgbench -S -C`` (a new connection per transaction): the connection cost each way;
* 1,000 client connections held at once through the pooler, each running queries:
  ``pooler_clients_served`` and the peak of the app pool's server connections (SHOW
  POOLS) against ``default_pool_size``.

pgbench runs on this machine (its own pgbench, which must be installed), with the app
role's password in a 0600 passfile of a private temporary directory. The figures go to
stdout and, with --out, to a JSON file.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench import stats
from bench.parsing import parse_pgbench
from bench.stacks import deploy_or_fail, destroy, new_stack
from pgsteady.settings import HostFacts, build_settings
from pgsteady.stack import pgbouncer

_CONNECT_TPS = re.compile(r"^tps = ([0-9.]+) \(including reconnection times\)", re.M)
_CONNECT_TIME = re.compile(r"^average connection time = ([0-9.]+) ms", re.M)
CLIENTS = 1000


def _env(stack: Any, passfile: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PGHOST": "127.0.0.1",
        "PGUSER": "app",
        "PGDATABASE": "app",
        "PGPASSFILE": str(passfile),
        "PGSSLMODE": "verify-full",
        "PGSSLROOTCERT": str(stack.ca_file),
    }


def _pgbench(env: dict[str, str], port: int, args: list[str]) -> str:
    proc = subprocess.run(
        ["pgbench", "-p", str(port), *args], env=env, capture_output=True, text=True, timeout=600
    )
    if proc.returncode != 0:
        raise RuntimeError(f"pgbench {' '.join(args)} failed: {proc.stderr[-1500:]}")
    return proc.stdout


def _pool_servers(stack: Any) -> int:
    s = build_settings(stack.host_data(), HostFacts(ram_mb=4096, cpus=2))
    out = subprocess.run(
        pgbouncer.admin_command(s, "SHOW POOLS"), capture_output=True, text=True, check=True
    ).stdout
    rows = {(r["database"], r["user"]): r for r in pgbouncer.parse_show(out)}
    return pgbouncer.server_connections(rows.get(("app", "app"), {}))


def thousand_clients(stack: Any) -> dict[str, Any]:
    """CLIENTS connections through the pooler held at once, each running 3 queries."""
    import psycopg2

    barrier = threading.Barrier(CLIENTS + 1, timeout=600)
    served: list[int] = []
    errors: list[str] = []
    peak = [0]

    def client() -> None:
        try:
            conn = psycopg2.connect(
                host="127.0.0.1", port=stack.pgbouncer_port, user="app", dbname="app",
                password=stack.secret("app_password"), sslmode="verify-full",
                sslrootcert=str(stack.ca_file), connect_timeout=120,
            )  # fmt: skip
        except psycopg2.Error as exc:
            errors.append(repr(exc))
            barrier.abort()
            return
        conn.autocommit = True
        try:
            barrier.wait()
            with conn.cursor() as cur:
                for _ in range(3):
                    cur.execute("SELECT pg_sleep(0.02)")
            served.append(1)
        except Exception as exc:  # noqa: BLE001 - counted as not served
            errors.append(repr(exc))
        finally:
            conn.close()

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    started = time.monotonic()
    for t in threads:
        t.start()
    with contextlib.suppress(threading.BrokenBarrierError):  # a client failed: see errors
        barrier.wait()
    while any(t.is_alive() for t in threads):
        peak[0] = max(peak[0], _pool_servers(stack))
        time.sleep(0.1)
    peak[0] = max(peak[0], _pool_servers(stack))
    return {
        "pooler_clients_served": len(served),
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "peak_server_connections": peak[0],
        "seconds": round(time.monotonic() - started, 1),
    }


def run(rounds: int, seconds: int) -> dict[str, Any]:
    stack = new_stack("pooler", postgres_memory_limit="1GB", postgres_cpus=1)
    try:
        deploy_or_fail(stack)
        s = build_settings(stack.host_data(), HostFacts(ram_mb=4096, cpus=2))
        with tempfile.TemporaryDirectory(prefix="pgsteady-bench-") as tmp:
            passfile = Path(tmp) / "pgpass"
            passfile.touch(mode=0o600)
            passfile.write_text(f"127.0.0.1:*:*:app:{stack.secret('app_password')}\n")
            env = _env(stack, passfile)
            _pgbench(env, stack.port, ["-i", "-q", "-s", "5"])
            ports = {"direct": stack.port, "pooler": stack.pgbouncer_port}
            held: dict[str, list[float]] = {"direct": [], "pooler": []}
            connect: dict[str, list[float]] = {"direct": [], "pooler": []}
            connect_tps: dict[str, list[float]] = {"direct": [], "pooler": []}
            for _, label in stats.alternate(["direct", "pooler"], rounds):
                out = _pgbench(env, ports[label], ["-S", "-c", "8", "-j", "2", "-T", str(seconds)])
                held[label].append(parse_pgbench(out)["latency_ms"])
                out = _pgbench(env, ports[label], ["-S", "-C", "-c", "8", "-j", "2",
                                                   "-T", str(max(3, seconds // 2))])  # fmt: skip
                connect[label].append(float(_CONNECT_TIME.search(out).group(1)))  # type: ignore[union-attr]
                connect_tps[label].append(float(_CONNECT_TPS.search(out).group(1)))  # type: ignore[union-attr]
        return {
            "default_pool_size": pgbouncer.default_pool_size(s),
            "select_only_latency_ms": {k: stats.summary(v) for k, v in held.items()},
            "select_only_latency_ratio_pooler_to_direct": stats.ratio_summary(
                held["pooler"], held["direct"]
            ),
            "added_latency_ms_p50": round(
                stats.median(held["pooler"]) - stats.median(held["direct"]), 3
            ),
            "connect_ms": {k: stats.summary(v) for k, v in connect.items()},
            "connect_per_transaction_tps": {k: stats.summary(v) for k, v in connect_tps.items()},
            **thousand_clients(stack),
        }
    finally:
        destroy(stack)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pooler", description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    result = run(args.rounds, args.seconds)
    text = json.dumps(result, indent=2, sort_keys=True) + "\n"
    sys.stdout.write(text)
    if args.out:
        args.out.write_text(text)
    return 0 if result["errors"] == 0 and result["pooler_clients_served"] == CLIENTS else 1


if __name__ == "__main__":
    sys.exit(main())
