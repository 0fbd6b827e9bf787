"""Settings that bypass pgsteady, lose acknowledged data, or cannot work: refusals and warnings.

Pure checks over a validated :class:`~pgsteady.settings.Settings`, called by
``build_settings`` (errors) and by the deploy (warnings). Every error names the key, the
bad value and what is accepted.

Memory a container needs (measured on PostgreSQL 15, Debian 12, ``/proc/PID/smaps_rollup``
of 100 idle backends that had read the catalog, and ``postgres -C shared_memory_size``):

* shared memory is ``1.085 x shared_buffers + 3.7 MB + 45 kB x max_connections``
  (+2 MB with pg_stat_statements preloaded); it lives in an anonymous mapping, not in
  ``/dev/shm``, and the pages are charged to the container once;
* each backend dirties about 1.4 MB of private memory (median; 1.5 MB max) before it
  runs a single sort or hash (work_mem comes on top, per operation);

so the smallest container limit that starts the server and holds every allowed
connection is::

    minimum = 64 MiB + 9/8 x shared_buffers + 2 MiB x max_connections

(64 MiB: postmaster, background processes, the fixed part of shared memory, the
entrypoint; 2 MiB per connection: the private memory above plus its share of shared
memory and page tables). The tuner keeps the same reserve (``pgsteady.postgres.tuning``).
Checked in a container (tests/integration/test_memory_minimum.py): with 100 connections
and shared_buffers 38 MB the minimum is 308 MB and the cgroup peaked at 242 MB with every
backend busy; at 160 MB the OOM killer took the postmaster.
``/dev/shm`` (``postgres_shm_size``) only holds dynamic shared memory for parallel
queries; the server starts with any size, so it is not part of the minimum.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import TYPE_CHECKING

from pgsteady.postgres.parameters import MANAGED, Param, conf_text, parse_bool, to_number
from pgsteady.postgres.tuning import (
    CONTAINER_BASE_RESERVE,
    CONTAINER_PER_CONNECTION,
    TuningError,
    max_connections,
    tune,
)
from pgsteady.units import MIB, parse_size

if TYPE_CHECKING:
    from pgsteady.settings import Settings

#: postgresql.conf keys pgsteady owns for every major version, with the reason.
MANAGED_KEYS: dict[str, str] = {
    **MANAGED,
    "include": "an include directive would load a file pgsteady does not manage",
    "include_dir": "an include directive would load files pgsteady does not manage",
    "include_if_exists": "an include directive would load a file pgsteady does not manage",
    "ssl": "pgsteady turns TLS on and manages its certificate files",
    "ssl_cert_file": "pgsteady manages the server certificate",
    "ssl_key_file": "pgsteady manages the server key",
    "ssl_ca_file": "pgsteady manages the CA file",
}

#: Booleans that must stay on: off loses data the server already acknowledged.
DURABLE_BOOLEANS = {
    "fsync": "off lets a crash or power loss corrupt the database and lose committed data",
    "full_page_writes": "off lets a crash during a page write leave torn pages "
    "that recovery cannot repair",
}

#: ``log_statement`` values that log ALTER ROLE ... PASSWORD in clear text.
LOGS_PASSWORDS = ("ddl", "mod", "all")
#: Debug settings that log every statement's parse tree, literals (passwords) included.
LOGS_PARSE_TREES = ("debug_print_parse", "debug_print_rewritten", "debug_print_plan")

_SHARED_BUFFERS = Param("shared_buffers", "postmaster", "integer", "8kB")
_MAX_CONNECTIONS = Param("max_connections", "postmaster", "integer")


def managed_key_errors(s: Settings) -> list[str]:
    """``postgres_settings`` keys that would bypass the files pgsteady renders."""
    errors = []
    for key, value in s.postgres_settings.items():
        reason = MANAGED_KEYS.get(key.strip().lower())
        if reason:
            errors.append(
                f"postgres_settings[{key!r}] = {value!r}: cannot be overridden - {reason} "
                "(accepted: any other server parameter)"
            )
    return errors


def durability_errors(s: Settings) -> list[str]:
    """Overrides that lose acknowledged commits (synchronous_commit off needs the opt-in)."""
    errors = []
    for key, value in s.postgres_settings.items():
        name = key.strip().lower()
        text = conf_text(value)
        if name in DURABLE_BOOLEANS and parse_bool(text) is False:
            errors.append(
                f"postgres_settings[{key!r}] = {value!r}: refused - {DURABLE_BOOLEANS[name]} "
                "(accepted: on, or leave it out)"
            )
        accepted = s.postgres_accept_async_commit_loss
        if name == "synchronous_commit" and _is_async(text) and not accepted:
            errors.append(
                f"postgres_settings[{key!r}] = {value!r}: a crash loses the last commits the "
                "server already acknowledged (up to 3 x wal_writer_delay); accepted: on, "
                "local, remote_write, remote_apply, or set "
                "postgres_accept_async_commit_loss = True to accept that loss"
            )
    return errors


def _is_async(text: str) -> bool:
    # off and every boolean spelling of false (false, no, 0 ...); local/remote_* are not
    return parse_bool(text) is False


def async_commit_in_use(s: Settings) -> bool:
    """True when the settings turn synchronous_commit off (acknowledged or not)."""
    value = s.postgres_settings.get("synchronous_commit")
    return value is not None and _is_async(conf_text(value))


# --------------------------------------------------------------------------------------
# Memory: the smallest container limit that starts the server and serves max_connections
# --------------------------------------------------------------------------------------


def _override_number(s: Settings, param: Param) -> float | None:
    value = s.postgres_settings.get(param.name)
    if value is None or isinstance(value, bool):
        return None
    number = to_number(conf_text(value), param)
    return None if isinstance(number, str) else number


def _tuned(s: Settings, limit: int) -> dict[str, str]:
    from pgsteady.postgres.conf_files import tuning_input

    try:
        return tune(replace(tuning_input(s), memory_limit=limit)).as_dict()
    except TuningError:  # a limit under 1MB: nothing is tuned for it
        return {}


def connections(s: Settings) -> int:
    """max_connections the server will run with (override, setting or workload default)."""
    override = _override_number(s, _MAX_CONNECTIONS)
    if override is not None:
        return max(1, round(override))
    return max_connections(s.postgres_db_type, s.postgres_max_connections)


def shared_buffers_bytes(s: Settings, limit: int) -> int:
    """shared_buffers the server will run with inside a container limited to ``limit``."""
    override = _override_number(s, _SHARED_BUFFERS)
    if override is not None:
        return max(0, round(override)) * 8192
    tuned = _tuned(s, limit).get("shared_buffers")
    return to_bytes(tuned) if tuned else 0


def to_bytes(conf_size: str) -> int:
    """A tuned size such as ``"512MB"`` or ``"40329kB"`` in bytes."""
    number = to_number(conf_size, Param("x", "", "integer", "B"))
    if isinstance(number, str):
        raise ValueError(f"{conf_size!r}: {number}")
    return int(number)


def memory_needed(shared_buffers: int, conns: int) -> int:
    """Bytes: 64 MiB + 9/8 x shared_buffers + 2 MiB x max_connections (module doc)."""
    raw = CONTAINER_BASE_RESERVE + shared_buffers * 9 / 8 + CONTAINER_PER_CONNECTION * conns
    return math.ceil(raw / MIB) * MIB


def memory_minimum(s: Settings) -> int:
    """The smallest container limit that holds the server.

    Tuned shared_buffers grows with the limit, so this is the least fixed point of
    ``limit -> memory_needed(shared_buffers at limit)``, reached by iterating from below.
    """
    conns = connections(s)
    limit = memory_needed(0, conns)
    for _ in range(200):
        need = memory_needed(shared_buffers_bytes(s, limit), conns)
        if need <= limit:
            break
        limit = need
    return limit


def memory_errors(s: Settings) -> list[str]:
    """The container limit is below what the server needs (see the module doc)."""
    if s.host_ram_mb <= 0:  # no host facts: the auto limit and the tuning are unknown
        return []
    small_host = s.host_ram_mb * MIB < parse_size(s.preflight_min_ram)
    if s.postgres_memory_limit == "auto" and small_host:
        return []  # the preflight check reports the host's RAM itself
    limit = s.memory_limit_bytes
    conns = connections(s)
    sb = shared_buffers_bytes(s, limit)
    if limit >= memory_needed(sb, conns):
        return []
    minimum = memory_minimum(s)
    shown = repr(s.postgres_memory_limit)
    if s.postgres_memory_limit == "auto":
        shown += f" (75% of the host's RAM: {limit // MIB} MB)"
    return [
        f"postgres_memory_limit = {shown}: below the {minimum // MIB}MB the server needs "
        f"to start and serve max_connections = {conns} with shared_buffers = {sb // MIB}MB "
        "(64MB + 9/8 x shared_buffers + 2MB per connection); accepted: at least "
        f"{minimum // MIB}MB, or fewer connections (postgres_max_connections)"
        + (" or a smaller shared_buffers" if "shared_buffers" in s.postgres_settings else "")
    ]


def warnings(s: Settings) -> list[str]:
    """Valid but risky settings the operator should know about (shown by the deploy)."""
    out = []
    value = s.postgres_settings.get("log_statement")
    if value is not None and conf_text(value).strip().lower() in LOGS_PASSWORDS:
        out.append(
            f"postgres_settings['log_statement'] = {value!r}: the server log will hold "
            "every ALTER ROLE ... PASSWORD in clear text (pgsteady switches logging off "
            "for its own password changes, not for yours); use 'none', or set passwords "
            "with psql's \\password (it sends only a SCRAM verifier)"
        )
    for name in LOGS_PARSE_TREES:
        tree = s.postgres_settings.get(name)
        if tree is not None and parse_bool(conf_text(tree)) is True:
            out.append(
                f"postgres_settings[{name!r}] = {tree!r}: the server log will hold every "
                "statement's parse tree, password literals of your own ALTER ROLE included; "
                "use it only while debugging"
            )
    if async_commit_in_use(s):
        out.append(
            f"postgres_settings['synchronous_commit'] = "
            f"{s.postgres_settings['synchronous_commit']!r}: accepted by "
            "postgres_accept_async_commit_loss; a crash loses the last acknowledged commits"
        )
    return out


def errors(s: Settings) -> list[str]:
    """Every refusal of this module, in a stable order."""
    return [*managed_key_errors(s), *durability_errors(s), *memory_errors(s)]
