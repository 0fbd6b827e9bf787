"""The pooler's line in ``make status`` / ``make monitor``: pool usage and waiting clients.

The monitor's collect script runs SHOW POOLS on PgBouncer's admin console inside its
container (pgbouncer.admin_script: the admin password stays in the container), section
``pooler``; :func:`parse` turns it into :class:`PoolerStatus`, :func:`summary` into one
line. Pure: Settings in, script values out; section in, status out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pgsteady.settings import Settings
from pgsteady.stack import pgbouncer

SCRIPT = r"""
pooler() {
    [ -n "$POOLER" ] || { echo disabled; return 0; }
    d exec -u "$POOLER_UID:$POOLER_UID" "$POOLER" sh -c "$POOLER_ADMIN" sh 'SHOW POOLS'
}
section pooler pooler
"""

#: A client waiting this long for a server connection makes the host WARNING.
WAIT_WARNING_S = 10


def script_values(s: Settings) -> dict[str, str]:
    """The collect script's variables for the pooler section (empty POOLER: none)."""
    if not s.pgbouncer_enabled:
        return {"POOLER": "", "POOLER_UID": "", "POOLER_ADMIN": ""}
    return {
        "POOLER": pgbouncer.container_name(s),
        "POOLER_UID": str(s.pgbouncer_uid),
        "POOLER_ADMIN": pgbouncer.admin_script(),
    }


@dataclass
class Pool:
    database: str
    user: str
    mode: str
    clients_active: int
    clients_waiting: int
    servers: int
    max_wait_seconds: int


@dataclass
class PoolerStatus:
    enabled: bool = False
    error: str | None = None
    pools: list[Pool] = field(default_factory=list)

    @property
    def waiting(self) -> int:
        return sum(p.clients_waiting for p in self.pools)

    @property
    def max_wait_seconds(self) -> int:
        return max((p.max_wait_seconds for p in self.pools), default=0)


def parse(section: dict[str, Any]) -> PoolerStatus:
    """The ``pooler`` section (SHOW POOLS, header first) -> PoolerStatus; the admin
    console's own pool ``pgbouncer`` and the auth role's pools are left out."""
    out = section.get("out", "")
    if section.get("rc") is None or out.strip() == "disabled":
        return PoolerStatus()  # not collected (an older collect script), or no pooler
    st = PoolerStatus(enabled=True)
    if section.get("rc") != 0:
        err = [x for x in section.get("err", "").splitlines() if x.strip()]
        st.error = err[-1].strip() if err else f"exit code {section.get('rc')}"
        return st
    for row in pgbouncer.parse_show(out):
        if row.get("database") == "pgbouncer" or row.get("user") == pgbouncer.AUTH_USER:
            continue
        st.pools.append(
            Pool(
                database=row.get("database", ""),
                user=row.get("user", ""),
                mode=row.get("pool_mode", ""),
                clients_active=int(row.get("cl_active") or 0),
                clients_waiting=int(row.get("cl_waiting") or 0),
                servers=pgbouncer.server_connections(row),
                max_wait_seconds=int(row.get("maxwait") or 0),
            )
        )
    return st


def summary(st: PoolerStatus) -> str:
    """One line: each pool's clients and server connections, the waiting clients."""
    if st.error:
        return f"admin console unreachable: {st.error}"
    pools = ", ".join(
        f"{p.database}/{p.user} {p.clients_active} clients on {p.servers} servers" for p in st.pools
    )
    wait = f", longest {st.max_wait_seconds}s" if st.waiting else ""
    return f"{pools or 'no pool in use'}; {st.waiting} waiting{wait}"


def problem(st: PoolerStatus) -> str | None:
    """A WARNING for the host, or None."""
    if st.error:
        return f"pooler: admin console unreachable ({st.error})"
    if st.max_wait_seconds > WAIT_WARNING_S:
        return (
            f"pooler: {st.waiting} clients wait for a server connection, the longest "
            f"{st.max_wait_seconds}s (raise pgbouncer_default_pool_size within max_connections)"
        )
    return None
