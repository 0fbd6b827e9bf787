"""Whether a member's running containers were made from its compose file as it is on
disk (review R9 M2): pure parsing, the command is run by a fact (tasks/cluster_roll.py).

The rolling recreate used to key on "the compose file changed in THIS run". A run that
wrote a new compose file and then stopped before the roll (a refused roll: "pg3 is 20MB
behind"; a deploy that died) left the file on disk and the old containers running, and
the next run found nothing changed: the change was never applied. Compose labels each
container with ``com.docker.compose.config-hash``, the hash of the service's
configuration it was created from, and ``compose config --hash='*'`` prints that hash
for the file as it is now (both compose v1 and v2); a running container whose label
differs is one ``up`` would recreate, so the roll takes its member whatever run wrote
the file.
"""

from __future__ import annotations

import shlex

WANTED = "#pgsteady-wanted"
RUNNING = "#pgsteady-running"
LABEL = "com.docker.compose.config-hash"


def drift_command(compose: str, project: str) -> str:
    """A host shell command printing the wanted hashes (``compose``: the compose CLI with
    its ``-p``/``-f`` flags) then the running containers' service and hash labels."""
    fmt = '{{.Label "com.docker.compose.service"}} {{.Label "' + LABEL + '"}}'
    running = shlex.join(
        ["docker", "ps", "--filter", f"label=com.docker.compose.project={project}", "--format", fmt]
    )
    return (
        f"echo {shlex.quote(WANTED)}; {compose} config --hash='*' 2>/dev/null; "
        f"echo {shlex.quote(RUNNING)}; {running} 2>/dev/null; true"
    )


def _pairs(lines: list[str]) -> dict[str, str]:
    out = {}
    for line in lines:
        service, _, digest = line.strip().partition(" ")
        if service and digest.strip():
            out[service] = digest.strip()
    return out


def parse(output: str) -> tuple[dict[str, str], dict[str, str]]:
    """(service -> the compose file's hash, service -> the running container's label)."""
    wanted: list[str] = []
    running: list[str] = []
    section: list[str] | None = None
    for line in output.splitlines():
        if line.strip() == WANTED:
            section = wanted
        elif line.strip() == RUNNING:
            section = running
        elif section is not None:
            section.append(line)
    return _pairs(wanted), _pairs(running)


def drifted(output: str) -> list[str]:
    """The services whose running container's hash differs from the compose file's (a
    service with no hash on either side, or an unreadable compose file, is none)."""
    want, have = parse(output)
    return sorted(s for s, digest in have.items() if s in want and want[s] != digest)
