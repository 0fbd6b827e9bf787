"""The "host reboot" section of docs/reliability.md, written by ``make lab-chaos``.

The section sits between markers that ``make chaos`` keeps when it rewrites the page.
"""

from __future__ import annotations

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
            "converged over SSH with `make deploy`, then rebooted with `docker restart` (systemd",
            "shuts down cleanly and boots again) or power-cycled with `docker kill` + `docker",
            "start` (no shutdown). Recovery runs from the command to the first successful query",
            "through `pgsteady-ctl psql` on the host; the row written before the first fault is",
            "read back after the last. Nothing but systemd brings Postgres back:",
            "`docker.service` is enabled by the deploy and the container has `restart: always`.",
            "",
            "| fault | trials | median | max | each (s) |",
            "|---|---|---|---|---|",
            *rows,
            "",
            f"Converge of the same host: {conv}. Machine: {platform.node() and 'this VM'},"
            f" kernel {platform.release()}.",
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
