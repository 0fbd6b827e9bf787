"""The major upgrade part: a stack on Postgres 15 with ``rows`` rows is upgraded to 17
by the deploy (`make upgrade-major`) while a writer inserts every 20 ms over TLS; the
longest gap between two committed inserts is the write downtime the app sees, beside
the phases pgsteady-ctl upgrade-major timed (docs/operations.md, "Major version upgrade").
"""

from __future__ import annotations

from typing import Any

from bench import env
from bench.stacks import deploy_or_fail, new_stack
from tests.support.major_upgrade import fingerprint, load, upgrade_under_writer
from tests.support.stack import docker


def run(rows: int) -> dict[str, Any]:
    stack = new_stack(
        "upgrade", postgres_image_source="debian", postgres_memory_limit="1GB", postgres_cpus=1
    )
    try:
        stack.data["postgres_version"] = 15  # the upgrade deploy's keys override it
        deploy_or_fail(stack)
        load(stack, rows)
        before = fingerprint(stack)
        size = int(stack.psql("SELECT pg_database_size('app')", db="app"))
        load_start = env.load_average()
        run = upgrade_under_writer(stack)
        if run.result.returncode != 0:
            raise RuntimeError(f"upgrade deploy failed:\n{run.result.output[-4000:]}")
        after = fingerprint(stack)
        if after[:2] != before[:2] or after[2] < run.writes:
            raise RuntimeError(f"data differs after the upgrade: {before} -> {after}")
        return {
            "rows": rows,
            "database_bytes": size,
            "from_version": run.report["from_version"],
            "to_version": run.report["to_version"],
            "write_gap_seconds": round(run.gap_seconds, 2),
            "deploy_seconds": round(run.deploy_seconds, 1),
            "phases_seconds": {
                k.removesuffix("_seconds"): v
                for k, v in run.report.items()
                if k.endswith("_seconds") and k != "write_downtime_seconds"
            },
            "ctl_write_downtime_seconds": run.report["write_downtime_seconds"],
            "writes_committed": run.writes,
            "load": {"start": load_start, "end": env.load_average()},
        }
    finally:  # a retry starts from nothing
        stack.stop_watchdog()
        docker("rm", "-f", "-v", stack.container, check=False)
        docker("volume", "rm", "-f", f"{stack.name}_pgdata17", check=False)
        stack.destroy()
