"""Commands run in a cluster member's Postgres container, whose Patroni reads its
configuration from the private tmpfs ms.PATRONI_DIR: the docker exec prefix, the wait
for a leader, and the reading of ``patronictl list``."""

from __future__ import annotations

import json
import shlex

from pgsteady.cluster import member_service as ms
from pgsteady.settings import Settings

PATRONICTL = ["patronictl", "-c", ms.PATRONI_DIR]


def exec_in(s: Settings, argv: list[str], stdin: bool = False) -> str:
    """``argv`` as the postgres user in the member's Postgres container."""
    flags = ["-i"] if stdin else []
    return shlex.join(["docker", "exec", *flags, "-u", "postgres", s.container_name, *argv])


def wait_leader(s: Settings, name: str) -> str:
    """A shell loop: until the member's Patroni lists a leader (300 s at most)."""
    check = (
        "import json, sys; m = json.load(sys.stdin); "
        "sys.exit(0 if any(x.get('Role') == 'Leader' for x in m) else 1)"
    )
    listing = shlex.join([*PATRONICTL, "list", "-f", "json"])
    inner = f"{listing} | {shlex.join(['python3', '-c', check])}"
    probe = exec_in(s, ["sh", "-c", inner])
    return (
        f"i=0; until {probe} 2>/dev/null; do i=$((i+1)); "
        f"[ $i -lt 300 ] || {{ echo 'Patroni on {name}: no leader after 300 s' >&2; "
        "exit 1; }; "
        "sleep 1; done"
    )


def has_leader(listing: str) -> bool:
    """``patronictl list -f json``'s output names a leader (Patroni's view of the DCS)."""
    text = listing.strip()
    try:
        members = json.loads(text) if text.startswith("[") else []
    except ValueError:
        return False
    return any(isinstance(m, dict) and m.get("Role") == "Leader" for m in members)
