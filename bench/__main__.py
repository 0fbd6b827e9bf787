"""``python -m bench [--quick] [--only PARTS] [...]``: run the benchmarks, write the docs."""

from __future__ import annotations

import json
import shutil
import signal
import sys
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from bench import config as bench_config
from bench import env, headlines, merge, report
from bench.stacks import (
    DOCKER,
    ROOT,
    Stack,
    data_stack,
    database_size,
    deploy_or_fail,
    destroy,
    destroy_all,
    exec_postgres,
    pgbench_init,
    run,
    wait_docker,
)

DATA_PARTS = merge.DATA_PARTS


def log(message: str) -> None:
    print(f"[bench {datetime.now():%H:%M:%S}] {message}", flush=True)


def prepare_data(cfg: bench_config.BenchConfig, results: dict[str, Any]) -> Stack:
    """Deploy the data stack and load pgbench data into its app database."""
    stack = data_stack(cfg)
    deployed = deploy_or_fail(stack)
    log(f"data stack {stack.name} deployed in {deployed.seconds:.1f} s")
    init = pgbench_init(stack, cfg.scale)
    size = database_size(stack)
    log(f"pgbench scale {cfg.scale}: {size / 1024**3:.2f} GiB in {init:.1f} s")
    image = stack.inspect()["Config"]["Image"]
    results["data_stack"] = {
        "deploy_seconds": round(deployed.seconds, 2),
        "pgbench_init_seconds": round(init, 2),
        "database_bytes": size,
        "image": image,
        "image_id": run([DOCKER, "image", "inspect", "-f", "{{.Id}}", image]).stdout.strip(),
    }
    results["versions"]["postgres"] = stack.psql("SHOW server_version")
    pgbench_version = run(exec_postgres(stack, "pgbench", "--version")).stdout.strip()
    results["versions"]["pgbench"] = pgbench_version
    return stack


def require_docker() -> None:
    """Wait for the engine; never start it (it is shared with other work)."""
    if not wait_docker():
        raise RuntimeError("the Docker engine did not come back within 300 s")


def _part(
    name: str,
    results: dict[str, Any],
    fn: Callable[[], dict[str, Any]],
    recover: Callable[[], object] | None = None,
) -> None:
    """Run one part; after a failure (e.g. dockerd restarted under it) recover and retry once."""
    started = time.monotonic()
    log(f"--- {name}")
    for attempt in (1, 2):
        try:
            results[name] = fn()
            break
        except Exception as exc:  # one failed part still leaves the others' figures
            traceback.print_exc()
            message = f"{type(exc).__name__}: {exc}"[:2000]
            if attempt == 1:
                log(f"{name} failed ({message.splitlines()[0]}); recovering, retrying once")
                results.setdefault("retried", {})[name] = message
                try:
                    (recover or require_docker)()
                    continue
                except Exception as again:
                    message += f"; recovery failed: {again}"
            results.setdefault("errors", {})[name] = message
            break
    results.setdefault("part_seconds", {})[name] = round(time.monotonic() - started, 1)
    log(f"--- {name} done in {results['part_seconds'][name]:.0f} s")


def _stop(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


def main(argv: list[str] | None = None) -> int:
    from bench import (
        backups,
        converge,
        failover,
        failover_lab,
        host_reboot,
        pitr,
        pooler,
        recovery,
        tuning,
        upgrade,
    )

    # Cleanup runs on SIGTERM too, and on SIGINT even when started in the background
    # (a non-interactive shell starts background jobs with SIGINT ignored).
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)

    argv = sys.argv[1:] if argv is None else argv
    cfg = bench_config.from_args(argv)
    if cfg.render_only:
        results = json.loads((cfg.out_dir / "benchmarks.json").read_text())
        (cfg.out_dir / "benchmarks.md").write_text(report.render(results))
        log(f"re-rendered {cfg.out_dir}/benchmarks.md from benchmarks.json")
        return 0
    ROOT.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    results: dict[str, Any] = {
        "started": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "argv": " ".join(argv),
        "config": cfg.as_dict(),
        "machine": env.machine(ROOT),
        "versions": env.versions(),
        "load": {"start": env.load_average()},
    }
    log(f"parts: {', '.join(cfg.parts)}; load {results['load']['start']}")
    try:
        if any(p in cfg.parts for p in DATA_PARTS):
            stack = prepare_data(cfg, results)

            def heal() -> None:
                require_docker()
                deploy_or_fail(stack)
                stack.wait_until_accepting(timeout=300)

            if "backups" in cfg.parts:
                _part("backups", results, lambda: backups.run_backups(stack, cfg, log), heal)
            if "tuning" in cfg.parts:
                _part("tuning", results, lambda: tuning.run_tuning(stack, cfg, log), heal)
            if "recovery" in cfg.parts:
                _part("recovery", results, lambda: recovery.run(stack, cfg, log), heal)
            destroy(stack)
        if "converge" in cfg.parts:
            _part("converge", results, lambda: converge.run_converge(cfg, log))
        if "pitr" in cfg.parts:
            _part("pitr", results, lambda: pitr.run(cfg, log))
        if "host_reboot" in cfg.parts:
            _part("host_reboot", results, lambda: host_reboot.run(cfg, log))
        if "pooler" in cfg.parts:
            _part("pooler", results, lambda: pooler.run(cfg.pooler_rounds, cfg.pooler_seconds))
        if "failover" in cfg.parts:
            _part("failover", results, lambda: failover.run(cfg, log))
        if "failover_lab" in cfg.parts:
            _part("failover_lab", results, lambda: failover_lab.run(cfg, log))
        if "upgrade" in cfg.parts:
            _part("upgrade", results, lambda: upgrade.run(cfg.upgrade_rows))
    finally:
        left = destroy_all()
        if left:
            results.setdefault("errors", {})["cleanup"] = f"docker down; left: {', '.join(left)}"
        for leftover in ROOT.glob("bench-*"):  # inventories, the private sshd's files
            shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()
        results["load"]["end"] = env.load_average()
        results["total_seconds"] = round(time.monotonic() - started, 1)
        write(cfg, results)
    for line in report.headlines(results):
        log(line)
    log(f"total {results['total_seconds'] / 60:.1f} min; errors: {results.get('errors', {})}")
    return 1 if results.get("errors") else 0


def write(cfg: bench_config.BenchConfig, results: dict[str, Any]) -> None:
    """Write the run's figures, keeping the previous figures of the parts it did not run,
    with the ``headlines`` object computed from both."""
    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    path = cfg.out_dir / "benchmarks.json"
    previous = None
    if path.exists():
        try:
            previous = json.loads(path.read_text())
        except ValueError as exc:
            log(f"{path} is not JSON ({exc}); writing this run's parts only")
    merged = headlines.with_headlines(merge.merge(previous, results))
    if kept := merged.get("carried"):
        log(f"kept the previous figures of {', '.join(kept)}")
    path.write_text(json.dumps(merged, indent=2) + "\n")
    (cfg.out_dir / "benchmarks.md").write_text(report.render(merged))
    log(f"wrote {cfg.out_dir}/benchmarks.md and benchmarks.json")


if __name__ == "__main__":
    sys.exit(main())
