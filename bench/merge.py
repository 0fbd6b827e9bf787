"""Merge one run's results into the previous benchmarks.json. Pure.

A run of some parts (``--only pitr``) replaces those parts' figures, including a failure,
and keeps every other part's figures from the previous document, each with the run that
measured it under ``carried``, so the page can say when a section was measured.
"""

from __future__ import annotations

import copy
from typing import Any

from bench.config import PARTS

Results = dict[str, Any]
DATA_PARTS = ("recovery", "tuning", "backups")
PER_PART = ("part_seconds", "errors", "retried")


def run_info(doc: Results) -> Results:
    """What identifies the run that wrote ``doc``: when, how, its sizes and load."""
    keys = ("started", "argv", "config", "load", "machine", "total_seconds")
    return {k: copy.deepcopy(doc[k]) for k in keys if k in doc}


def merge(previous: Results | None, current: Results) -> Results:
    """``current`` plus the parts it did not run, taken from ``previous``."""
    out = copy.deepcopy(current)
    if not previous:
        return out
    # parts this run measured or failed; a part it was asked for but never reached
    # (interrupted) keeps its earlier figures
    ran = {p for p in PARTS if p in current or p in current.get("errors", {})}
    earlier = previous.get("carried", {})
    carried = {}
    for part in PARTS:
        had = part in previous or any(part in previous.get(k, {}) for k in PER_PART)
        if part in ran or not had:
            continue
        if part in previous:
            out[part] = copy.deepcopy(previous[part])
        for key in PER_PART:
            if part in previous.get(key, {}):
                out.setdefault(key, {})[part] = copy.deepcopy(previous[key][part])
        carried[part] = copy.deepcopy(earlier.get(part)) or run_info(previous)
    if carried:
        out["carried"] = carried
        if "data_stack" in previous and any(p in carried for p in DATA_PARTS):
            out.setdefault("data_stack", copy.deepcopy(previous["data_stack"]))
        # versions measured by the carried parts (e.g. the data stack's Postgres)
        out["versions"] = {**previous.get("versions", {}), **out.get("versions", {})}
    # the previous document's key order first: the file's diff shows what changed
    return {**{k: out[k] for k in previous if k in out}, **out}


def part_config(res: Results, part: str) -> Results:
    """The configuration of the run that measured ``part``."""
    return res.get("carried", {}).get(part, {}).get("config", res["config"])
