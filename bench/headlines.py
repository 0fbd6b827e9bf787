"""The ``headlines`` object of benchmarks.json (issue 19): one figure per key, computed
from the parts' results (this run's or carried ones), ``None`` where a capability has not
landed or its part did not run. Pure.

Each figure is described in :data:`FIGURES`: the key, what it is, where it comes from;
:func:`why_missing` says why a key is null, for the page.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bench.config import PARTS

Results = dict[str, Any]
Figure = tuple[str, str, str, Callable[[Results], Any]]


def _get(res: Results, *path: str) -> Any:
    """``res[p0][p1]...`` or None when any step is missing."""
    node: Any = res
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def _largest(table: dict[str, Any] | None) -> Any:
    """The entry of the largest numeric key (``{"1": .., "10": ..}`` → the "10" entry)."""
    if not table:
        return None
    return table[max(table, key=lambda k: int(k.split("/")[-1]))]


def _restore_speedup(res: Results) -> Any:
    return (_largest(_get(res, "backups", "restore_speedup")) or {}).get("median")


def _ssh_per_host(res: Results) -> Any:
    return (_largest(_get(res, "converge", "parallel_noop")) or {}).get("per_host_seconds")


def _tuning(workload: str) -> Callable[[Results], Any]:
    return lambda res: _get(res, "tuning", "results", workload, "C/B", "median")


# (key, what it is, source in benchmarks.json or where it is measured, getter)
FIGURES: tuple[Figure, ...] = (
    ("recovery_kill9_p95_s", "kill -9 of the postmaster → first query, p95 (s)",
     "recovery.seconds.p95", lambda r: _get(r, "recovery", "seconds", "p95")),
    ("recovery_docker_kill_p95_s", "docker kill → first query, p95 (s)",
     "recovery.docker_kill.seconds.p95",
     lambda r: _get(r, "recovery", "docker_kill", "seconds", "p95")),
    ("tuning_vs_pgtune_ro", "pgsteady / PGTune core, pgbench read-only (ratio)",
     "tuning.results.read_only.C/B.median", _tuning("read_only")),
    ("tuning_vs_pgtune_rw", "pgsteady / PGTune core, pgbench TPC-B-like (ratio)",
     "tuning.results.tpcb_like.C/B.median", _tuning("tpcb_like")),
    ("oom_kills_pgsteady", "OOM kills of pgsteady's config, worst-case memory workload",
     "tuning.oom_kills.pgsteady", lambda r: _get(r, "tuning", "oom_kills", "pgsteady")),
    ("oom_kills_pgtune_host_sized", "OOM kills of PGTune sized for the host",
     "tuning.oom_kills.pgtune_host_sized",
     lambda r: _get(r, "tuning", "oom_kills", "pgtune_host_sized")),
    ("backup_overhead_ratio", "backup tool / bare pg_dump -Fc, median (ratio)",
     "backups.tool_vs_bare.median", lambda r: _get(r, "backups", "tool_vs_bare", "median")),
    ("restore_parallel_speedup", "restore --jobs 1 / --jobs N, N the largest measured (ratio)",
     "backups.restore_speedup (largest N).median", _restore_speedup),
    ("converge_noop_local_s", "no-op converge, @local, median (s)",
     "converge.noop_converge.seconds.p50",
     lambda r: _get(r, "converge", "noop_converge", "seconds", "p50")),
    ("converge_noop_ssh_per_host_s", "no-op converge over ssh, per host, largest inventory (s)",
     "converge.parallel_noop (largest N).per_host_seconds", _ssh_per_host),
    ("host_reboot_to_query_s", "host reboot → first query, lab host, median (s)",
     "host_reboot.kinds.reboot.p50",
     lambda r: _get(r, "host_reboot", "kinds", "reboot", "p50")),
    ("pitr_rpo_s", "writes lost when the database host is lost, restored from the archive, "
     "worst trial (s)", "pitr.host_loss.max_lost_seconds",
     lambda r: _get(r, "pitr", "host_loss", "max_lost_seconds")),
    ("failover_p95_s", "primary lost → writes accepted on the new primary, p95, default "
     "timings, process cluster (s)", "failover.failover_p95_seconds",
     lambda r: _get(r, "failover", "failover_p95_seconds")),
    ("switchover_write_gap_s", "planned switchover: longest gap between acknowledged writes, "
     "p95, default timings, process cluster (s)", "failover.switchover_write_gap_seconds",
     lambda r: _get(r, "failover", "switchover_write_gap_seconds")),
    ("pooler_clients_served", "clients served at once through PgBouncer (count)",
     "pooler.pooler_clients_served", lambda r: _get(r, "pooler", "pooler_clients_served")),
)  # fmt: skip

KEYS = tuple(f[0] for f in FIGURES)

#: Why a key is null when its part ran: the capability or its measurement is missing.
NOT_MEASURED = {
    "recovery_docker_kill_p95_s": "these recovery figures predate its docker kill trials "
    "(issue 19 item 3): re-run --only recovery",
    "oom_kills_pgsteady": "the tuning part ran without the worst-case memory workload "
    "(--memory-rounds 0, or figures from before it landed): re-run --only tuning",
    "oom_kills_pgtune_host_sized": "the tuning part ran without the worst-case memory "
    "workload (--memory-rounds 0, or figures from before it landed): re-run --only tuning",
    "pitr_rpo_s": "the pitr part ran without host-loss trials (--pitr-loss-trials 0, or "
    "figures from before they landed): re-run --only pitr",
}

#: The part each figure comes from (for "the part did not run").
PART = {
    "recovery_kill9_p95_s": "recovery",
    "recovery_docker_kill_p95_s": "recovery",
    "tuning_vs_pgtune_ro": "tuning",
    "tuning_vs_pgtune_rw": "tuning",
    "oom_kills_pgsteady": "tuning",
    "oom_kills_pgtune_host_sized": "tuning",
    "backup_overhead_ratio": "backups",
    "restore_parallel_speedup": "backups",
    "converge_noop_local_s": "converge",
    "converge_noop_ssh_per_host_s": "converge",
    "pitr_rpo_s": "pitr",
    "host_reboot_to_query_s": "host_reboot",
    "pooler_clients_served": "pooler",
    "failover_p95_s": "failover",
    "switchover_write_gap_s": "failover",
}


def compute(res: Results) -> dict[str, Any]:
    """Every headline key, in the issue's order, from ``res`` (a merged benchmarks.json)."""
    return {key: get(res) for key, _, _, get in FIGURES}


def why_missing(res: Results, key: str) -> str | None:
    """Why ``key`` is null in ``res`` (None when it has a value)."""
    if compute(res)[key] is not None:
        return None
    part = PART.get(key)
    if part and part in res.get("errors", {}):
        return f"the {part} part failed"
    if key in NOT_MEASURED and (part is None or part not in PARTS or part in res):
        return NOT_MEASURED[key]
    if part and part not in res:
        return f"the {part} part did not run"
    return f"the {part} part ran without this figure"


def with_headlines(res: Results) -> Results:
    """``res`` with ``headlines`` refreshed and first in the document."""
    rest = {k: v for k, v in res.items() if k != "headlines"}
    return {"headlines": compute(rest), **rest}
