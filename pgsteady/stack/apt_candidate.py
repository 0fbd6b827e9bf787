"""The newest postgresql-N that a running image's own apt sources offer, looked up beside
the verify suite.

``apt-get update`` in a throwaway container of the running image downloads the sources'
package indexes (about 57 MB unpacked for Debian main and security, 4-10 s) on every
``make verify``: most of its time when the check ran it in line. The verify driver
(:mod:`pgsteady.verify`) starts :class:`Lookup` before the suite and the check
(``tests/verify/test_image.py``) collects the answer, so the download overlaps the other
checks. Translations are not fetched: the candidate version does not need them.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import threading
import time
from pathlib import Path

from pgsteady.stack.hostfacts import DOCKER_PATH_COMMAND

#: The throwaway container's bound on the host (``timeout``); the driver waits a little
#: longer for the host's answer.
TIMEOUT_S = 180


def command(container: str, version: int) -> str:
    """Shell command for the host: the image ID of container ``container`` on the first
    line, then the candidate of ``postgresql-<version>`` in a throwaway container of it.

    ``docker run`` passes SIGTERM to the container's PID 1, a shell that ignores it, so
    the bound is inside the container too (``timeout`` is coreutils, in every Debian)."""
    script = (
        f"timeout {TIMEOUT_S - 10} apt-get -qq -o Acquire::Languages=none update "
        ">/dev/null 2>&1 || { echo 'apt-get update failed' >&2; exit 3; }; "
        f"apt-cache policy postgresql-{int(version)} | sed -n 's/^ *Candidate: //p'"
    )
    name = shlex.quote(container)
    return (
        f'd=$({DOCKER_PATH_COMMAND}); img=$("$d" container inspect -f "{{{{.Image}}}}" {name}) '
        f"|| {{ echo no container {name} >&2; exit 4; }}; "
        'echo "$img"; '
        f'timeout -k 10 {TIMEOUT_S} "$d" run --rm --user 0 --entrypoint /bin/sh "$img" '
        f"-c {shlex.quote(script)}"
    )


def answer(returncode: int, stdout: str, stderr: str, version: int) -> dict[str, str]:
    """``{"image": ..., "candidate": ..., "error": ...}``: a candidate or an error, and
    the image the answer is about when the container was found."""
    image, _, rest = stdout.strip().partition("\n")
    candidate = rest.strip()
    if returncode != 0 or not candidate or candidate == "(none)":
        error = stderr.strip() or f"no candidate for postgresql-{version}"
        return {"image": image, "candidate": "", "error": error[:160]}
    return {"image": image, "candidate": candidate, "error": ""}


class Lookup:
    """:func:`command` run on a host (``argv`` runs it) in a thread; the answer is written
    to ``path`` as JSON once known (renamed into place, so a reader never sees half)."""

    def __init__(self, argv: list[str], version: int, path: Path) -> None:
        self.argv, self.version, self.path = argv, version, path
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Lookup:
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            proc = subprocess.run(
                self.argv, capture_output=True, text=True, errors="replace",
                stdin=subprocess.DEVNULL, timeout=TIMEOUT_S + 30, check=False,
            )  # fmt: skip
            body = answer(proc.returncode, proc.stdout, proc.stderr, self.version)
        except Exception as exc:  # noqa: BLE001 - the check reports it, never a silent wait
            body = {"image": "", "candidate": "", "error": f"{type(exc).__name__}: {exc}"[:160]}
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(body))
        os.replace(tmp, self.path)

    def join(self) -> None:
        """Until the answer is written (the host bounds the command)."""
        self._thread.join(TIMEOUT_S + 60)


def collect(path: str, timeout: float = TIMEOUT_S + 60) -> dict[str, str]:
    """The answer a :class:`Lookup` writes to ``path``, waiting for it up to ``timeout``."""
    if not path:
        return {"image": "", "candidate": "", "error": "the driver started no lookup"}
    deadline = time.monotonic() + timeout
    file = Path(path)
    while True:
        try:
            body = json.loads(file.read_text())
            break
        except (FileNotFoundError, json.JSONDecodeError):
            if time.monotonic() > deadline:
                return {"image": "", "candidate": "", "error": f"no answer within {timeout:.0f} s"}
            time.sleep(0.2)
    return {k: str(body.get(k, "")) for k in ("image", "candidate", "error")}
