"""Pure statistics for the benchmark report: percentiles, summaries and paired ratios."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100), linear between closest ranks (numpy's default)."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is outside 0..100")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def median(values: Sequence[float]) -> float:
    return percentile(values, 50)


def summary(values: Sequence[float], digits: int = 3) -> dict[str, float | int]:
    """n, min, p50, p95, max and mean of ``values``, rounded."""
    return {
        "n": len(values),
        "min": round(min(values), digits),
        "p50": round(percentile(values, 50), digits),
        "p95": round(percentile(values, 95), digits),
        "max": round(max(values), digits),
        "mean": round(sum(values) / len(values), digits),
    }


def paired_ratios(numerators: Sequence[float], denominators: Sequence[float]) -> list[float]:
    """Round-by-round ratios ``n[i] / d[i]`` of runs alternated in the same session."""
    if len(numerators) != len(denominators):
        raise ValueError(f"{len(numerators)} numerators but {len(denominators)} denominators")
    if any(d == 0 for d in denominators):
        raise ValueError("a denominator is zero")
    return [n / d for n, d in zip(numerators, denominators, strict=True)]


def ratio_summary(
    numerators: Sequence[float], denominators: Sequence[float], digits: int = 3
) -> dict[str, float | int]:
    """Median of the paired ratios and their spread (min-max over rounds)."""
    ratios = paired_ratios(numerators, denominators)
    return {
        "n": len(ratios),
        "median": round(median(ratios), digits),
        "min": round(min(ratios), digits),
        "max": round(max(ratios), digits),
        "ratios": [round(r, digits) for r in ratios],
    }


def alternate(labels: Sequence[str], rounds: int) -> list[tuple[int, str]]:
    """The run order A B C A B C ...: ``(round, label)`` pairs."""
    if rounds < 1:
        raise ValueError("at least one round")
    return [(r, label) for r in range(rounds) for label in labels]
