"""What a benchmark run does: the parts, their sizes, full and --quick presets."""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

PARTS = (
    "recovery",
    "tuning",
    "backups",
    "converge",
    "pitr",
    "host_reboot",
    "pooler",
    "failover",
    "failover_lab",
    "upgrade",
)
REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class BenchConfig:
    """Sizes of one run; the defaults are the documented full run (about 3 hours on 2 CPUs)."""

    parts: tuple[str, ...] = PARTS
    # the data-carrying stack (tuning, backups, recovery)
    memory_limit: str = "2GB"
    cpus: int = 2
    scale: int = 70
    # recovery
    recovery_trials: int = 20
    recovery_spacing: float = 11.0
    recovery_timeout: float = 180.0
    old_promise_seconds: float = 30.0
    # tuning
    tuning_rounds: int = 2
    tuning_seconds: int = 30
    tuning_warmup: int = 5
    clients: int = 4
    threads: int = 2
    # worst-case memory workload (inside the tuning part)
    memory_rounds: int = 3
    memory_hold: float = 3.0
    memory_timeout: float = 600.0
    memory_table_rows: int = 6_000_000
    # backups
    backup_rounds: int = 3
    restore_rounds: int = 2
    restore_jobs: tuple[int, ...] = (1, 2, 4)
    drill_rounds: int = 2
    # converge
    converge_first: int = 3
    converge_hosts: tuple[int, ...] = (1, 5, 10)
    converge_rounds: int = 1
    use_sshd: bool = True
    # pitr (pgBackRest: cost of archiving, restore rate, PITR correctness)
    pitr_scale: int = 20
    pitr_seconds: int = 20
    pitr_rounds: int = 3
    pitr_targets: int = 5
    pitr_loss_trials: int = 3  # host losses restored from the repository (pitr_rpo_s)
    # host_reboot (one lab host: reboots and power cycles -> first query)
    host_reboot_trials: int = 3
    host_reboot_timeout: float = 300.0
    # pooler (PgBouncer: added latency, connection cost, 1,000 clients)
    pooler_rounds: int = 3
    pooler_seconds: int = 10
    # failover (issue 15: the process cluster; comma lists of profiles and modes)
    failover_trials: int = 10
    failover_profiles: str = "default,tight"
    failover_modes: str = "async,sync"
    failover_timeout: float = 150.0
    # failover_lab (issue 15: the host-container lab, `make lab-cluster-chaos`)
    failover_lab_trials: int = 10
    failover_lab_kinds: str = "all"
    failover_lab_profile: str = "default"
    failover_lab_mode: str = "sync"  # the cluster default; async accepts commit loss
    failover_lab_timeout: float = 240.0
    failover_lab_minutes: float = 0.0  # start no new round after this long (0: no limit)
    failover_lab_inventory: str = ""  # an already deployed lab cluster; else one is built
    failover_lab_name: str = ""
    failover_lab_out: str = "/tmp/pgsteady-lab/cluster-chaos.jsonl"
    # upgrade (major 15 -> 17 under a writer): rows of ~100 bytes, 5M ~ pgbench -s 50
    upgrade_rows: int = 5_000_000
    # output
    out_dir: Path = field(default=REPO / "docs")
    quick: bool = False
    render_only: bool = False

    def as_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["out_dir"] = str(self.out_dir)
        return data


QUICK = {
    "scale": 20,
    "recovery_trials": 3,
    "tuning_rounds": 1,
    "tuning_seconds": 8,
    "tuning_warmup": 2,
    "memory_rounds": 1,
    "backup_rounds": 1,
    "restore_rounds": 1,
    "restore_jobs": (1, 2),
    "drill_rounds": 1,
    "converge_first": 1,
    "converge_hosts": (1, 2),
    "converge_rounds": 1,
    "pitr_scale": 5,
    "pitr_seconds": 5,
    "pitr_rounds": 1,
    "pitr_loss_trials": 1,
    "host_reboot_trials": 1,
    "pooler_rounds": 1,
    "pooler_seconds": 4,
    "failover_trials": 1,
    "failover_profiles": "default",
    "failover_lab_trials": 1,
    "upgrade_rows": 200_000,
}


def parse_parts(text: str) -> tuple[str, ...]:
    """``"recovery,tuning"`` → ("recovery", "tuning") in the canonical order."""
    wanted = {p.strip() for p in text.split(",") if p.strip()}
    unknown = sorted(wanted - set(PARTS))
    if unknown or not wanted:
        raise ValueError(f"unknown part(s) {', '.join(unknown) or '(none)'}; use {','.join(PARTS)}")
    return tuple(p for p in PARTS if p in wanted)


def _int_list(text: str) -> tuple[int, ...]:
    values = tuple(int(v) for v in text.split(",") if v.strip())
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"{text!r}: expected positive integers like 1,2,4")
    return values


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark pgsteady on this machine; write docs/benchmarks.md and .json.",
    )
    p.add_argument("--quick", action="store_true", help="a short smoke run (a few minutes)")
    p.add_argument("--only", type=parse_parts, help=f"comma-separated parts of {','.join(PARTS)}")
    p.add_argument("--out-dir", type=Path, help="where to write benchmarks.md/.json")
    p.add_argument(
        "--render-only",
        action="store_true",
        help="only re-write benchmarks.md from the benchmarks.json in --out-dir",
    )
    for f in fields(BenchConfig):
        if f.name in ("parts", "out_dir", "quick", "render_only"):
            continue
        kind = type(f.default)
        flag = "--" + f.name.replace("_", "-")
        if kind is tuple:
            p.add_argument(flag, type=_int_list, help=f"default {f.default}")
        elif kind is bool:
            p.add_argument(flag, action=argparse.BooleanOptionalAction, help=f"default {f.default}")
        else:
            p.add_argument(flag, type=kind, help=f"default {f.default}")
    return p


def from_args(argv: list[str] | None = None) -> BenchConfig:
    """The run's configuration: defaults, then --quick, then explicit options."""
    args = parser().parse_args(argv)
    config = replace(BenchConfig(), **QUICK, quick=True) if args.quick else BenchConfig()
    explicit = {
        f.name: getattr(args, f.name)
        for f in fields(BenchConfig)
        if f.name not in ("parts", "out_dir", "quick", "render_only")
        and getattr(args, f.name) is not None
    }
    if args.only:
        explicit["parts"] = args.only
    if args.out_dir:
        explicit["out_dir"] = args.out_dir
    if args.render_only:
        explicit["render_only"] = True
    return replace(config, **explicit)
