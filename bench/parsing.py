"""Parse the output of the tools the benchmarks run. Pure."""

from __future__ import annotations

import re

_TPS = re.compile(r"^tps = ([0-9.]+) \(without initial connection time\)", re.M)
_LATENCY = re.compile(r"^latency average = ([0-9.]+) ms", re.M)


def parse_pgbench(output: str) -> dict[str, float]:
    """tps (without connection time) and average latency in ms from pgbench's summary."""
    tps = _TPS.search(output)
    if not tps:
        raise ValueError(f"no tps line in pgbench output:\n{output[-1500:]}")
    latency = _LATENCY.search(output)
    return {"tps": float(tps.group(1)), "latency_ms": float(latency.group(1)) if latency else 0.0}
