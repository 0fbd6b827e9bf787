"""``make monitor``: the status, refreshed every few seconds, with keys acting on a host.

Keys: ``1``-``9`` or Tab select a host; ``b`` back up now; ``l`` show/hide recent logs;
``p`` show/hide the selected host's performance view (top statements); ``r`` restart
(asks for ``y``); ``q`` quit. On a terminal, keys are read one at a time
(cbreak mode) with select, between refreshes; Ctrl-C also quits. When stdin is not a
terminal, each input line is a key (its first character: ``q`` + Enter quits) and at
the end of input the view simply keeps refreshing until interrupted. When stdout is
not a terminal, every refresh is printed in full, one after the other (a log of frames).
Backups, restarts and log reads run in the background; quitting does not cancel them.
"""

from __future__ import annotations

import contextlib
import os
import select
import sys
import termios
import threading
import time
import tty
from collections.abc import Callable
from datetime import datetime
from typing import IO

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.text import Text

from pgsteady.monitor import collect, snapshot, view
from pgsteady.monitor.model import HostStatus

HELP = "[1-9]/Tab select host   b back up now   l logs   p performance   r restart   q quit"
LOG_TAIL = 40


class Keys:
    """Keys from a stream without blocking: cbreak on a terminal, else whole lines."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        stream = stream if stream is not None else sys.stdin
        try:
            self.fd: int | None = stream.fileno()
        except (AttributeError, OSError, ValueError):
            self.fd = None
        self.tty = self.fd is not None and os.isatty(self.fd)
        self._saved: list | None = None

    def __enter__(self) -> Keys:
        if self.tty and self.fd is not None:
            self._saved = termios.tcgetattr(self.fd)
            tty.setcbreak(self.fd)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._saved is not None and self.fd is not None:
            termios.tcsetattr(self.fd, termios.TCSADRAIN, self._saved)
            self._saved = None

    def read(self, timeout: float) -> list[str]:
        """Keys typed within ``timeout`` seconds (possibly none)."""
        if self.fd is None:
            time.sleep(timeout)
            return []
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return []
        data = os.read(self.fd, 1024).decode(errors="replace")
        if not data:  # end of input: no more keys, keep refreshing
            self.fd = None
            return []
        if self.tty:
            return [] if data.startswith("\x1b") else list(data)
        return [line.strip()[0] for line in data.splitlines() if line.strip()]


class Monitor:
    """State of the live view: hosts, selection, pending confirmation, messages."""

    def __init__(self, targets: list[collect.Target], timeout: float) -> None:
        self.targets = targets
        self.timeout = timeout
        self.hosts: list[HostStatus] = []
        self.selected = 0
        self.refreshes = 0
        self.message = ""
        self.overlay: RenderableType | None = None
        self.confirm_restart: int | None = None
        self.performance = False
        self.busy: set[str] = set()
        self.dirty = threading.Event()

    def refresh(self) -> None:
        self.hosts = snapshot(self.targets, self.timeout)
        self.refreshes += 1

    # --- keys -------------------------------------------------------------------------
    def handle(self, key: str) -> bool:
        """Act on one key; False means quit."""
        if self.confirm_restart is not None:
            index, self.confirm_restart = self.confirm_restart, None
            if key in "yY":
                self._restart(index)
            else:
                self.message = "restart cancelled"
            return True
        if key in "qQ":
            return False
        if key == "\t":
            self.selected = (self.selected + 1) % len(self.targets)
        elif key.isdigit() and 1 <= int(key) <= len(self.targets):
            self.selected = int(key) - 1
        elif key in "bB":
            self._backup(self.selected)
        elif key in "lL":
            self._logs(self.selected)
        elif key in "pP":
            self.performance = not self.performance
        elif key in "rR":
            self._ask_restart(self.selected)
        return True

    def _usable(self, index: int, action: str) -> collect.Target | None:
        target = self.targets[index]
        if target.settings is None:
            self.message = f"{target.name}: invalid settings, cannot {action}"
            return None
        if target.name in self.busy:
            self.message = f"{target.name}: another action is still running"
            return None
        return target

    def _background(self, target: collect.Target, what: str, run: Callable[[], str]) -> None:
        self.busy.add(target.name)
        self.message = f"{what} on {target.name} ..."

        def work() -> None:
            try:
                self.message = run()
            finally:
                self.busy.discard(target.name)
                self.dirty.set()

        threading.Thread(target=work, daemon=True).start()

    def _backup(self, index: int) -> None:
        target = self._usable(index, "back up")
        if target is None or target.settings is None:
            return
        s = target.settings
        argv = ["python3", f"{s.layout.bin}/pgsteady-backup", "backup"]
        argv += ["--config", s.layout.backup_config]

        def run() -> str:
            started = time.monotonic()
            proc = collect.run_on_host(target.host, argv, timeout=6 * 3600)
            took = time.monotonic() - started
            if proc.returncode == 0:
                return f"backup on {target.name} succeeded in {took:.0f} s"
            return f"backup on {target.name} FAILED: {_tail(proc.stderr, proc.returncode)}"

        self._background(target, "backing up", run)

    def _logs(self, index: int) -> None:
        if self.overlay is not None:
            self.overlay = None
            return
        target = self._usable(index, "read logs")
        if target is None or target.settings is None:
            return
        container = target.settings.container_name
        shell = f"docker logs --tail {LOG_TAIL} {container} 2>&1"

        def run() -> str:
            proc = collect.run_on_host(target.host, ["sh", "-c", shell], self.timeout)
            text = proc.stdout or proc.stderr or "(no output)"
            self.overlay = Panel(
                Text(text.rstrip()[-6000:], overflow="fold"),
                title=f"{target.name}: docker logs --tail {LOG_TAIL} {container}  (l hides)",
                title_align="left",
            )
            return f"logs of {container} on {target.name}"

        self._background(target, "reading logs", run)

    def _ask_restart(self, index: int) -> None:
        target = self._usable(index, "restart")
        if target is None or target.settings is None:
            return
        self.confirm_restart = index
        self.message = (
            f"Restart {target.settings.container_name} on {target.name}? "
            "y confirms, any other key cancels"
        )

    def _restart(self, index: int) -> None:
        target = self._usable(index, "restart")
        if target is None or target.settings is None:
            return
        s = target.settings
        grace = int(s.seconds("postgres_stop_grace_period"))
        argv = ["docker", "restart", "-t", str(grace), s.container_name]

        def run() -> str:
            proc = collect.run_on_host(target.host, argv, timeout=grace + 120)
            if proc.returncode == 0:
                return f"restarted {s.container_name} on {target.name}"
            return f"restart on {target.name} FAILED: {_tail(proc.stderr, proc.returncode)}"

        self._background(target, f"restarting {s.container_name}", run)

    # --- rendering ----------------------------------------------------------------------
    def frame(self) -> RenderableType:
        """Header, message and keys first (a full screen crops the bottom), then hosts."""
        clock = datetime.now().strftime("%H:%M:%S")
        parts: list[RenderableType] = [
            Text(f"pgsteady monitor · refresh #{self.refreshes} · {clock}", style="bold"),
            Text(HELP, style="dim"),
        ]
        if self.message:
            parts.append(Text(self.message, style="bold cyan"))
        parts.append(view.render_status(self.hosts, self.selected, self.performance))
        if self.overlay is not None:
            parts.append(self.overlay)
        return Group(*parts)


def _tail(stderr: str, rc: int) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    return lines[-1].strip() if lines else f"exit code {rc}"


def run_live(
    targets: list[collect.Target],
    interval: float = 5.0,
    iterations: int | None = None,
    timeout: float = collect.DEFAULT_TIMEOUT,
    console: Console | None = None,
    stdin: IO[str] | None = None,
) -> int:
    """Refresh every ``interval`` seconds until ``q`` (0), Ctrl-C (130) or ``iterations``."""
    console = console or Console()
    monitor = Monitor(targets, timeout)
    live = Live(console=console, auto_refresh=False, screen=True) if console.is_terminal else None

    def show() -> None:
        if live is not None:
            live.update(monitor.frame(), refresh=True)
        else:
            console.print(monitor.frame())

    try:
        with Keys(stdin) as keys, live if live is not None else contextlib.nullcontext():
            while True:
                monitor.refresh()
                show()
                if iterations is not None and monitor.refreshes >= iterations:
                    return 0
                deadline = time.monotonic() + interval
                while (left := deadline - time.monotonic()) > 0:
                    for key in keys.read(min(left, 0.25)):
                        if not monitor.handle(key):
                            return 0
                        monitor.dirty.set()
                    if monitor.dirty.is_set():
                        monitor.dirty.clear()
                        if live is not None:
                            show()
    except KeyboardInterrupt:
        return 130
