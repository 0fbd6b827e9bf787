"""Failover part (issue 15 figures): fault → first write acknowledged through the proxy.

Runs the failover trials (:mod:`pgsteady.lab.failover_trial`) on the process cluster of
``tests/support/failover_lab.py``: Patroni 4.0.7 members m1 and m2 (Postgres 15) on three
etcd members with TLS and RBAC, HAProxy in front, all processes on this one machine. For
each timing profile and durability mode one cluster is started, then ``failover_trials``
rounds run every kind once (kinds alternate, so the machine's load spreads over them).

The ``tight`` profile runs only the kinds whose gap the timings decide (a lost or paused
primary, a switchover). These are not the host-container lab's figures: no network
between members, no isolation fault, one shared 2-core VM.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from bench import env, stats
from bench.config import BenchConfig
from pgsteady.lab import failover as figures

Results = dict[str, Any]

#: The kinds the tight profile runs: where ttl/loop_wait/retry_timeout decide the gap.
TIGHT_KINDS = ("primary_kill", "primary_pause", "switchover")
#: Issue 15's goals: p95 of a lost primary with default / tight timings; switchover gap.
GOAL_DEFAULT, GOAL_TIGHT, GOAL_SWITCHOVER = 30.0, 10.0, 5.0


def plan(profiles: str, modes: str, kinds: str = "") -> list[tuple[str, str, tuple[str, ...]]]:
    """(profile, mode, kinds) per cluster to start, from the comma lists of the config."""
    from tests.support.failover_lab import PROFILES

    wanted = tuple(k for k in kinds.split(",") if k) or tuple(figures.KINDS)
    out = []
    for profile in [p for p in profiles.split(",") if p]:
        if profile not in PROFILES:
            raise ValueError(f"failover profile {profile!r}: expected {', '.join(PROFILES)}")
        for mode in [m for m in modes.split(",") if m]:
            if mode not in ("async", "sync"):
                raise ValueError(f"failover mode {mode!r}: expected async or sync")
            run = tuple(k for k in wanted if profile == "default" or k in TIGHT_KINDS)
            unknown = [k for k in run if k not in figures.KINDS]
            if unknown:
                raise ValueError(f"unknown fault kind(s) {unknown}; expected {list(figures.KINDS)}")
            if run:
                out.append((profile, mode, run))
    return out


def kind_summary(trials: Sequence[Mapping[str, Any]]) -> Results:
    """Figures over the trials of one kind: the gap's summary over the trials whose writes
    resumed, the longest gaps, loss per trial and in total, split-brain trials."""
    gaps = [t["seconds"] for t in trials if t.get("seconds") is not None]
    return {
        "trials": len(trials),
        "whole_again": sum(1 for t in trials if t.get("whole_again")),
        "seconds": stats.summary(gaps) if gaps else None,
        "longest_gap_seconds": stats.summary([t["longest_gap_seconds"] for t in trials]),
        "lost_per_trial": [len(t["lost"]) for t in trials],
        "lost_total": sum(len(t["lost"]) for t in trials),
        "acked_total": sum(t["acked"] for t in trials),
        "unknown_total": sum(t["unknown"] for t in trials),
        "split_brain_trials": sum(1 for t in trials if t["split_brain"]),
        "probe_lost_per_trial": [len(t["probe_lost"]) for t in trials],
        "new_timeline_trials": sum(
            1 for t in trials if t["timeline_after"] != t["timeline_before"]
        ),
    }


def _worst(runs: Mapping[str, Results], profile: str, kinds: Sequence[str], key: str) -> Any:
    values = [
        run["kinds"][k][key]["p95"]
        for run in runs.values()
        if run["profile"] == profile
        for k in kinds
        if k in run["kinds"] and run["kinds"][k].get(key)
    ]
    return max(values) if values else None


def headline_figures(runs: Mapping[str, Results]) -> Results:
    """The page's and the headlines' figures: the worst p95 over the modes (and, for a
    lost primary, over ``primary_kill`` and ``primary_pause``) per profile."""
    return {
        "failover_p95_seconds": _worst(runs, "default", figures.PRIMARY_LOST, "seconds"),
        "failover_tight_p95_seconds": _worst(runs, "tight", figures.PRIMARY_LOST, "seconds"),
        "switchover_write_gap_seconds": _worst(
            runs, "default", ("switchover",), "longest_gap_seconds"
        ),
        "switchover_tight_write_gap_seconds": _worst(
            runs, "tight", ("switchover",), "longest_gap_seconds"
        ),
    }


def _version(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except OSError:
        return "not installed"
    return (out.stdout or out.stderr).strip().splitlines()[0] if out.stdout or out.stderr else ""


def run(cfg: BenchConfig, log: Callable[[str], None] = print) -> Results:
    """Every (profile, mode) cluster, ``cfg.failover_trials`` rounds of its kinds."""
    from pgsteady.lab.failover_trial import run_trial
    from tests.support.cluster_binaries import PATRONI_VENV
    from tests.support.failover_lab import PROFILES, process_cluster

    runs: Results = {}
    for profile, mode, kinds in plan(cfg.failover_profiles, cfg.failover_modes):
        name = f"{profile}/{mode}"
        tmp = Path(tempfile.mkdtemp(prefix="bench-failover-"))
        trials: list[Results] = []
        load_start = env.load_average()
        started = time.monotonic()
        error = None
        try:
            with process_cluster(tmp, profile, synchronous=mode == "sync") as cluster:
                for round_ in range(cfg.failover_trials):
                    for kind in kinds:
                        trial = run_trial(cluster, kind, cfg.failover_timeout)
                        trial["round"] = round_ + 1
                        trial["load_1min"] = os.getloadavg()[0]
                        trials.append(trial)
                        log(
                            f"failover {name} {kind} {round_ + 1}/{cfg.failover_trials}: "
                            f"{trial['seconds']} s, lost {len(trial['lost'])}, split brain "
                            f"{trial['split_brain'] or 'no'}, whole again {trial['whole_again']}"
                        )
                        if not trial["whole_again"]:  # the next trial needs a whole cluster
                            raise RuntimeError(f"{kind}: {trial.get('whole_error')}")
        except Exception as exc:  # this cluster's trials so far still count; go on
            error = f"{type(exc).__name__}: {exc}"[:3000]
            log(f"failover {name} stopped: {error.splitlines()[0]}")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        runs[name] = {
            "profile": profile,
            "timings": PROFILES[profile],
            "synchronous_mode": mode == "sync",
            "load": {"start": load_start, "end": env.load_average()},
            "minutes": round((time.monotonic() - started) / 60, 1),
            "kinds": {
                k: kind_summary([t for t in trials if t["kind"] == k])
                for k in kinds
                if any(t["kind"] == k for t in trials)  # a run that stopped early
            },
            "trials": trials,
            **({"error": error} if error else {}),
        }
    return {
        "where": "processes on this one machine: 2 Patroni members (m1, m2), 3 etcd members "
        "(TLS, RBAC), HAProxy on m1's address surviving every fault",
        "versions": {
            "patroni": _version([str(PATRONI_VENV / "bin" / "patroni"), "--version"]),
            "etcd": _version([shutil.which("etcd") or "etcd", "--version"]),
            "haproxy": _version([shutil.which("haproxy") or "/usr/sbin/haproxy", "-v"]),
            "postgres": _version(["/usr/lib/postgresql/15/bin/postgres", "--version"]),
        },
        "trials_per_kind": cfg.failover_trials,
        "runs": runs,
        **headline_figures(runs),
    }


def _cell(s: Mapping[str, Any] | None) -> str:
    if not s:
        return "no recovery"
    return f"{s['p50']:.1f} / {s['p95']:.1f} / {s['max']:.1f}"


def section(fo: Results) -> list[str]:
    """The page's failover section."""
    lines = [
        "## Failover (process cluster, not yet the host lab)",
        "",
        f"{fo['where']}; {', '.join(f'{k} {v}' for k, v in fo['versions'].items())}. "
        "Per trial: a writer commits a numbered row through HAProxy's primary port every "
        "100 ms (reconnecting, 2 s client-side deadline); a probe commits to each member's "
        "own port. **Gap**: the fault → the first write acknowledged by another server "
        "instance (a restarted or new primary); for quorum loss, the repair → the first "
        "write. **Lost**: acknowledged rows missing on the leader afterwards. **Split "
        "brain**: members acknowledging probe commits in interleaved turns. Each trial "
        "waits until the cluster is whole again (pg_rewind rejoin, synchronous standby). "
        f"{fo['trials_per_kind']} trial(s) per kind and cluster in this run (the full run's "
        f"default: {BenchConfig().failover_trials}). Findings (and Debian bookworm's "
        "Patroni 3.0.2 split-brain defect): docs/reliability.md, Failover.",
        "",
    ]
    rows = []
    for name, run in fo["runs"].items():
        t = run["timings"]
        timing = f"{t['ttl']}/{t['loop_wait']}/{t['retry_timeout']}"
        for kind, k in run["kinds"].items():
            rows.append([
                name, timing, f"`{kind}`", f"{k['whole_again']}/{k['trials']}",
                _cell(k["seconds"]), _cell(k["longest_gap_seconds"]),
                ", ".join(map(str, k["lost_per_trial"])), str(k["split_brain_trials"]),
                ", ".join(map(str, k["probe_lost_per_trial"])),
            ])  # fmt: skip
    lines += [
        "| profile/mode | ttl/loop_wait/retry | fault | whole again | gap p50/p95/max (s) "
        "| longest gap p50/p95/max (s) | writes lost per trial | split-brain trials "
        "| probe rows lost per trial |",
        "|" + "---|" * 9,
        *["| " + " | ".join(r) + " |" for r in rows],
        "",
    ]
    for name, run in fo["runs"].items():
        load = run["load"]
        lines.append(
            f"- {name}: {run['minutes']} min, load {' / '.join(map(str, load['start']))} at "
            f"the start, {' / '.join(map(str, load['end']))} at the end (1/5/15 min, 2 CPUs)."
        )
        if run.get("error"):
            lines.append(f"- {name} stopped early: {run['error'].splitlines()[0][:300]}")
    lines.append("")
    lines += [f"- {line}" for line in verdicts(fo)]
    lines += ["", "Faults: " + "; ".join(f"`{k}`: {v}" for k, v in figures.KINDS.items()) + "."]
    return lines + [""]


def verdicts(fo: Results) -> list[str]:
    """Each goal of issue 15 met or missed, by how much."""

    def verdict(value: float | None, goal: float, what: str) -> str:
        if value is None:
            return f"{what}: not measured"
        state = "met" if value <= goal else f"missed by {value - goal:.1f} s"
        return f"{what}: p95 {value:.1f} s, goal ≤ {goal:.0f} s: {state}"

    return [
        verdict(fo.get("failover_p95_seconds"), GOAL_DEFAULT, "Lost primary, default timings"),
        verdict(fo.get("failover_tight_p95_seconds"), GOAL_TIGHT, "Lost primary, tight timings")
        + " (the lease floor ttl − loop_wait = 18 s rules it out for lease-expiry faults)",
        verdict(fo.get("switchover_write_gap_seconds"), GOAL_SWITCHOVER, "Switchover write gap"),
    ]


def headline_lines(fo: Results) -> list[str]:
    """The failover lines of the page's Headlines list."""
    return [f"Failover (process cluster): {v}" for v in verdicts(fo)]
