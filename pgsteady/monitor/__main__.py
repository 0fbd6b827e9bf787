"""``python -m pgsteady.monitor --inventory FILE [--json | --live] [--performance]``.

``--performance`` adds each host's full performance view (top statements by total time,
calls, mean time and temp blocks) to the text output; the JSON always has it, and the
live view shows it with the ``p`` key.

Exit codes: 0 every host ok or only warning; 1 a host is critical (down, unhealthy,
over a critical threshold, invalid settings) or unreachable; 2 the inventory or the
arguments are unusable. ``--live`` exits 0 when quit with ``q``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from rich.console import Console

from pgsteady.inventory import InventoryError
from pgsteady.monitor import collect, model, snapshot, view


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m pgsteady.monitor", description=__doc__)
    p.add_argument("--inventory", default="inventory/local.py", help="pyinfra inventory file")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--json", action="store_true", help="print the JSON document once")
    mode.add_argument("--live", action="store_true", help="refreshing view with keys")
    p.add_argument(
        "--performance", action="store_true", help="text: add the top statements of each host"
    )
    p.add_argument("--interval", type=float, default=5.0, help="live refresh, seconds")
    p.add_argument("--iterations", type=int, default=None, help="live: stop after N refreshes")
    p.add_argument(
        "--timeout", type=float, default=collect.DEFAULT_TIMEOUT, help="per host, seconds"
    )
    args = p.parse_args(argv)
    if args.interval <= 0 or args.timeout <= 0 or (args.iterations or 1) < 1:
        p.error("--interval, --timeout and --iterations must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        targets = collect.load_targets(args.inventory)
    except (InventoryError, OSError, ValueError) as exc:
        print(f"pgsteady.monitor: {exc}", file=sys.stderr)
        return 2
    if not targets:
        print(f"pgsteady.monitor: no hosts in {args.inventory}", file=sys.stderr)
        return 2
    if args.live:
        from pgsteady.monitor.live import run_live

        return run_live(targets, args.interval, args.iterations, args.timeout)
    hosts = snapshot(targets, args.timeout)
    if args.json:
        print(json.dumps(model.report(hosts), indent=2, sort_keys=True))
    else:
        Console().print(view.render_status(hosts, performance=args.performance))
    return model.exit_code(hosts)


if __name__ == "__main__":
    sys.exit(main())
