"""The "host reboot" section of docs/reliability.md, written by ``make lab-chaos``.

The section sits between markers that ``make chaos`` keeps when it rewrites the page.
"""

from __future__ import annotations

import os
import platform
import statistics
from pathlib import Path

SECTION = "host-reboot"
BEGIN, END = f"<!-- section:{SECTION} -->", f"<!-- /section:{SECTION} -->"


def section(results: dict[str, list[float]], converges: dict[str, float]) -> str:
    """Markdown for the measured reboots and power losses of one lab host."""
    rows = [
        f"| {kind} | {len(v)} | {statistics.median(v):.1f} s | {max(v):.1f} s | "
        + ", ".join(f"{x:.1f}" for x in v)
        + " |"
        for kind, v in results.items()
        if v
    ]
    conv = "; ".join(f"{k}: {v:.0f} s" for k, v in converges.items())
    return "\n".join(
        [
            "## Host reboot (lab)",
            "",
            "Written by `make lab-chaos` (`PGSTEADY_CHAOS=full pytest -s tests/lab`). A lab",
            "host (docs/lab.md: a container with systemd, sshd and its own dockerd) is",
            "converged over SSH with `make deploy` (Postgres 17 image built on the host from",
            "Debian packages, WAL archiving on), then rebooted with `docker restart` (systemd",
            "shuts down cleanly and boots again) or power-cycled with `docker kill` + `docker",
            "start` (no shutdown: Postgres does crash recovery). Recovery runs from the command",
            "to the first successful query through `pgsteady-ctl psql` on the host; the row",
            "written before the first fault is read back after the last, and the postmaster's",
            "start time must have changed. Nothing but the host's own boot brings Postgres",
            "back: `docker.service` is enabled by the deploy, the container has",
            "`restart: always`.",
            "",
            "| fault | trials | median | max | each (s) |",
            "|---|---|---|---|---|",
            *rows,
            "",
            f"Converge of the same host: {conv}. {os.cpu_count()} CPUs shared with other jobs,",
            f"kernel {platform.release()}. The database is tiny: on a real host, add the",
            "machine's own boot (firmware, kernel, fsck) and the WAL replay of a crash, which",
            "grows with the write rate and `max_wal_size`.",
        ]
    )


def write_section(path: Path, body: str) -> None:
    """Replace the section in ``path`` (or put it before the machine table)."""
    block = f"{BEGIN}\n{body.rstrip()}\n{END}\n"
    text = path.read_text() if path.exists() else ""
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        tail = rest.split(END, 1)[1].lstrip("\n")
        text = head + block + ("\n" + tail if tail else "")
    elif "## Machine and versions" in text:
        head, tail = text.split("## Machine and versions", 1)
        text = head + block + "\n## Machine and versions" + tail
    else:
        text = text.rstrip("\n") + ("\n\n" if text else "") + block
    path.write_text(text)
