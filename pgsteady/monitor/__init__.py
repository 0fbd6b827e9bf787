"""``make status`` / ``make monitor``: the state of every inventory host at a glance.

collect.py runs one shell script per host (over ssh, or locally for ``@local``) and
returns its raw sections; model.py turns them into a :class:`HostStatus` (pure, with
the thresholds); view.py renders it with rich; live.py is the refreshing view with keys.
See docs/monitoring.md for every value, the thresholds and the JSON schema.
"""

from __future__ import annotations

from pgsteady.monitor import collect, model


def snapshot(targets: list[collect.Target], timeout: float) -> list[model.HostStatus]:
    """Collect every host in parallel and derive its status."""
    raws = collect.collect_all(targets, timeout)
    return [model.derive(raw, t.settings) for raw, t in zip(raws, targets, strict=True)]
