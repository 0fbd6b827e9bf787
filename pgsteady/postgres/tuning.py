"""Postgres tuning: PGTune-compatible core plus pgsteady's container-aware additions.

Two layers, kept apart on purpose:

1. **PGTune core** (:func:`pgtune` and the small per-setting functions below it) reproduces
   what PGTune (github.com/le0pard/pgtune, 2026 sources) computes for the same inputs,
   setting by setting, version branches included. PGTune's storage choices are
   ``ssd``, ``hdd``, ``san`` and ``nvme``; its newest "database size vs RAM" question is
   not exposed here and is fixed at its default (database larger than RAM is unknown:
   "mid"), which is what PGTune prints when that question is left alone.
2. **pgsteady** (:func:`tune`) feeds the core a container-aware memory/CPU basis, and adds
   operator settings PGTune does not emit (pg_stat_statements, scram, logging, timeouts,
   autovacuum sizing). Every such setting, and every core setting whose value changed
   because of a container limit, has ``source == "pgsteady"`` and a one-line ``comment``
   saying why; the comment is rendered into postgresql.conf.

All functions are pure. Sizes are bytes on input; memory settings are kB internally.

Above 400 lines because the PGTune core is kept setting by setting, as PGTune
writes it, so that the two can be compared line by line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import Literal

from pgsteady.units import GIB, KIB, MIB, format_kb, human_size

PG_VERSIONS = (13, 14, 15, 16, 17, 18)
DB_TYPES = ("web", "oltp", "dw", "desktop", "mixed")
STORAGE_TYPES = ("ssd", "hdd", "san", "nvme")
OS_TYPES = ("linux", "windows", "mac")
MAX_CONNECTIONS_LIMIT = 262143  # the server's own upper bound for max_connections

Source = Literal["pgtune", "pgsteady"]


class TuningError(ValueError):
    """Invalid tuning input; the message names the parameter, the value and what is accepted."""


@dataclass(frozen=True)
class TuningInput:
    """What the tuner needs to know about the host (sizes in bytes)."""

    pg_version: int
    db_type: str
    ram: int
    cpus: int | None = None
    connections: int | None = None
    storage: str = "ssd"
    os: str = "linux"
    memory_limit: int | None = None
    cpu_limit: float | None = None


@dataclass(frozen=True)
class Setting:
    """One postgresql.conf line: value as written in the file (unquoted), why, and from whom."""

    name: str
    value: str
    comment: str = ""
    source: Source = "pgtune"


@dataclass(frozen=True)
class TuningResult:
    """Ordered settings (PGTune's order first, then pgsteady's) and warnings for the operator."""

    settings: tuple[Setting, ...]
    warnings: tuple[str, ...] = ()
    memory_basis: int = 0
    cpu_basis: int | None = None
    inputs: TuningInput | None = field(default=None, compare=False)

    def as_dict(self) -> dict[str, str]:
        """Plain ``{name: value}`` (later entries win), for the deploy."""
        return {s.name: s.value for s in self.settings}

    def get(self, name: str) -> str | None:
        """The value of ``name``, or None when the tuner leaves it at the server default."""
        return self.as_dict().get(name)


# --------------------------------------------------------------------------------------
# Input validation
# --------------------------------------------------------------------------------------


def _fail(param: str, value: object, accepted: str) -> TuningError:
    return TuningError(f"{param}: invalid value {value!r}; expected {accepted}")


def validate_input(inp: TuningInput) -> None:
    """Raise TuningError for the first invalid field of ``inp``."""
    if isinstance(inp.pg_version, bool) or inp.pg_version not in PG_VERSIONS:
        raise _fail("pg_version", inp.pg_version, f"one of {', '.join(map(str, PG_VERSIONS))}")
    if inp.db_type not in DB_TYPES:
        raise _fail("db_type", inp.db_type, f"one of {', '.join(DB_TYPES)}")
    if not _is_int(inp.ram) or inp.ram < MIB:
        raise _fail("ram", inp.ram, "a size of at least 1MB (in bytes, e.g. 16GB)")
    if inp.cpus is not None and (not _is_int(inp.cpus) or inp.cpus < 1):
        raise _fail("cpus", inp.cpus, "a whole number of CPUs >= 1")
    if inp.connections is not None and (
        not _is_int(inp.connections) or not 1 <= inp.connections <= MAX_CONNECTIONS_LIMIT
    ):
        raise _fail("connections", inp.connections, f"a whole number 1..{MAX_CONNECTIONS_LIMIT}")
    if inp.storage not in STORAGE_TYPES:
        raise _fail("storage", inp.storage, f"one of {', '.join(STORAGE_TYPES)}")
    if inp.os not in OS_TYPES:
        raise _fail("os", inp.os, f"one of {', '.join(OS_TYPES)}")
    if inp.memory_limit is not None and (not _is_int(inp.memory_limit) or inp.memory_limit < MIB):
        raise _fail("memory_limit", inp.memory_limit, "a size of at least 1MB, or none")
    if inp.cpu_limit is not None and (
        isinstance(inp.cpu_limit, bool)
        or not isinstance(inp.cpu_limit, int | float)
        or not math.isfinite(inp.cpu_limit)
        or inp.cpu_limit <= 0
    ):
        raise _fail("cpu_limit", inp.cpu_limit, "a number of CPUs > 0 (e.g. 1.5), or none")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# --------------------------------------------------------------------------------------
# PGTune core: one function per PGTune rule. Memory values are kB (ints).
# --------------------------------------------------------------------------------------

_KB_PER_MB = 1024
_KB_PER_GB = 1024 * 1024


def _total_kb(ram: int) -> Fraction:
    return Fraction(ram, KIB)


def max_connections(db_type: str, connections: int | None) -> int:
    """Explicit connection count, else PGTune's default for the workload."""
    if connections:
        return connections
    return {"web": 200, "oltp": 300, "dw": 40, "desktop": 20, "mixed": 100}[db_type]


def shared_buffers_kb(ram: int, db_type: str) -> int:
    """A quarter of RAM (a sixteenth on desktops)."""
    divisor = 16 if db_type == "desktop" else 4
    return math.floor(_total_kb(ram) / divisor)


def huge_pages(shared_buffers: int, os: str) -> str:
    """'try' once shared_buffers reaches 2GB; never on macOS."""
    if os == "mac":
        return "off"
    return "try" if shared_buffers >= 2 * _KB_PER_GB else "off"


def effective_cache_size_kb(ram: int, db_type: str) -> int:
    """Three quarters of RAM (a quarter on desktops)."""
    total = _total_kb(ram)
    return math.floor(total / 4) if db_type == "desktop" else math.floor(total * 3 / 4)


def maintenance_work_mem_kb(ram: int, db_type: str, os: str, pg_version: int) -> int:
    """RAM/16 (RAM/8 for dw), capped at 8GB; Windows up to PG17 caps at 2GB minus 1MB."""
    divisor = 8 if db_type == "dw" else 16
    value = math.floor(_total_kb(ram) / divisor)
    windows_small = os == "windows" and pg_version <= 17
    cap = 2 * _KB_PER_GB if windows_small else 8 * _KB_PER_GB
    if value >= cap:
        value = cap - _KB_PER_MB if windows_small else cap
    return value


def wal_sizes_kb(db_type: str) -> tuple[int, int]:
    """(min_wal_size, max_wal_size) per workload."""
    mb = {
        "web": (1024, 4096),
        "oltp": (2048, 8192),
        "dw": (4096, 16384),
        "desktop": (100, 2048),
        "mixed": (1024, 4096),
    }[db_type]
    return mb[0] * _KB_PER_MB, mb[1] * _KB_PER_MB


CHECKPOINT_COMPLETION_TARGET = "0.9"


def wal_buffers_kb(shared_buffers: int) -> int:
    """3% of shared_buffers, at most 16MB, rounded up to 16MB above 14MB, at least 32kB."""
    value = math.floor(3 * shared_buffers / 100)
    top = 16 * _KB_PER_MB
    value = min(value, top)
    if 14 * _KB_PER_MB < value < top:
        value = top
    return max(value, 32)


def default_statistics_target(db_type: str) -> int:
    """500 for data warehouses, else 100."""
    return 500 if db_type == "dw" else 100


def random_page_cost(storage: str, db_type: str) -> str:
    """4 on spinning disks and for data warehouses (PGTune's default db-size answer), else 1.1."""
    if storage == "hdd" or db_type == "dw":
        return "4"
    return "1.1"


def effective_io_concurrency(os: str, storage: str) -> int | None:
    """Only on Linux: hdd 2, ssd 200, san 300, nvme 1000."""
    if os != "linux":
        return None
    return {"hdd": 2, "ssd": 200, "san": 300, "nvme": 1000}[storage]


def parallel_settings(pg_version: int, db_type: str, cpus: int | None) -> list[tuple[str, int]]:
    """Worker settings from 4 CPUs up; per-gather capped at 4 except for dw."""
    if not cpus or cpus < 4:
        return []
    per_gather = math.ceil(cpus / 2)
    if db_type != "dw":
        per_gather = min(per_gather, 4)
    result = [("max_worker_processes", cpus), ("max_parallel_workers_per_gather", per_gather)]
    if pg_version >= 10:
        result.append(("max_parallel_workers", cpus))
    if pg_version >= 11:
        result.append(("max_parallel_maintenance_workers", min(math.ceil(cpus / 2), 4)))
    return result


_DEFAULT_MAX_WORKER_PROCESSES = 8


def work_mem_kb(
    ram: int,
    shared_buffers: int,
    connections: int,
    cpus: int | None,
    db_type: str,
    os: str,
    pg_version: int,
) -> int:
    """(RAM - shared_buffers) / ((connections + worker processes) * 3), per-type divisor.

    Floor 4MB; Windows up to PG17 caps at 2GB minus 1MB.
    """
    workers = dict(parallel_settings(pg_version, db_type, cpus)).get(
        "max_worker_processes", _DEFAULT_MAX_WORKER_PROCESSES
    )
    base = (_total_kb(ram) - shared_buffers) / ((connections + workers) * 3)
    divisor = {"web": 1, "oltp": 1, "dw": 2, "desktop": 6, "mixed": 2}[db_type]
    value = max(math.floor(base / divisor), 4 * _KB_PER_MB)
    if os == "windows" and pg_version <= 17:
        value = min(value, 2 * _KB_PER_GB - _KB_PER_MB)
    return value


def wal_level_settings(db_type: str) -> list[tuple[str, str]]:
    """Desktops get wal_level=minimal, which needs max_wal_senders=0."""
    if db_type == "desktop":
        return [("wal_level", "minimal"), ("max_wal_senders", "0")]
    return []


def jit(pg_version: int, db_type: str) -> str | None:
    """JIT off for short-query workloads (web, oltp, mixed) on PG12+."""
    if pg_version >= 12 and db_type in ("web", "oltp", "mixed"):
        return "off"
    return None


def wal_compression(pg_version: int) -> str | None:
    """lz4 from PG15, 'on' (pglz) for PG10-14."""
    if pg_version >= 15:
        return "lz4"
    if pg_version >= 10:
        return "on"
    return None


def autovacuum_max_workers(cpus: int | None) -> int | None:
    """5 from 32 CPUs, 4 from 16 CPUs, else the server default (3)."""
    if not cpus:
        return None
    if cpus >= 32:
        return 5
    if cpus >= 16:
        return 4
    return None


def autovacuum_work_mem_kb(maintenance_work_mem: int, os: str, pg_version: int) -> int | None:
    """2GB once maintenance_work_mem reaches 2GB (Windows up to PG17: 2GB minus 1MB)."""
    threshold = 2 * _KB_PER_GB
    if maintenance_work_mem < threshold:
        return None
    value = threshold
    if os == "windows" and pg_version <= 17:
        value = min(value, 2 * _KB_PER_GB - _KB_PER_MB)
    return value


def io_workers(pg_version: int, cpus: int | None) -> int | None:
    """PG18+: a quarter of the CPUs (3..32), only when above the default of 3."""
    if pg_version < 18 or not cpus:
        return None
    value = min(32, max(3, cpus // 4))
    return value if value > 3 else None


def io_method(pg_version: int, os: str) -> str | None:
    """PG18+: io_uring on Linux, worker elsewhere."""
    if pg_version < 18:
        return None
    return "io_uring" if os == "linux" else "worker"


_STORAGE_NAMES = {"ssd": "SSDs", "nvme": "NVMe drives", "san": "SAN storage"}


def pgtune_warnings(ram: int, pg_version: int, os: str, db_type: str, storage: str) -> list[str]:
    """PGTune's warnings, one sentence each."""
    warnings = []
    if ram < 256 * MIB:
        warnings.append("this tool not being optimal for low memory systems")
    elif ram > 100 * GIB:
        warnings.append("this tool not being optimal for very high memory systems")
    if wal_compression(pg_version) == "lz4":
        warnings.append("wal_compression = lz4 requires PostgreSQL to be compiled with --with-lz4")
    if io_method(pg_version, os) == "io_uring":
        warnings.append(
            "io_method = io_uring requires PostgreSQL to be compiled with --with-liburing"
        )
    if db_type == "dw" and storage != "hdd":
        warnings.append(
            f"Cost parameters for Data Warehouses on {_STORAGE_NAMES[storage]} are left at "
            "defaults to avoid catastrophic index scan selections; monitor query planner "
            "behavior and adjust random_page_cost if necessary"
        )
    return warnings


def pgtune(inp: TuningInput) -> TuningResult:
    """Exactly PGTune's output for ``inp.ram``/``inp.cpus`` (container limits are ignored)."""
    validate_input(inp)
    v, t, ram, cpus, os = inp.pg_version, inp.db_type, inp.ram, inp.cpus, inp.os
    conns = max_connections(t, inp.connections)
    sb = shared_buffers_kb(ram, t)
    mwm = maintenance_work_mem_kb(ram, t, os, v)
    min_wal, max_wal = wal_sizes_kb(t)
    items: list[tuple[str, str | int | None]] = [
        ("max_connections", conns),
        ("shared_buffers", format_kb(sb)),
        ("effective_cache_size", format_kb(effective_cache_size_kb(ram, t))),
        ("maintenance_work_mem", format_kb(mwm)),
        ("checkpoint_completion_target", CHECKPOINT_COMPLETION_TARGET),
        ("wal_buffers", format_kb(wal_buffers_kb(sb))),
        ("default_statistics_target", default_statistics_target(t)),
        ("random_page_cost", random_page_cost(inp.storage, t)),
        ("effective_io_concurrency", effective_io_concurrency(os, inp.storage)),
        ("work_mem", format_kb(work_mem_kb(ram, sb, conns, cpus, t, os, v))),
        ("huge_pages", huge_pages(sb, os)),
        ("min_wal_size", format_kb(min_wal)),
        ("max_wal_size", format_kb(max_wal)),
        *wal_level_settings(t),
        *parallel_settings(v, t, cpus),
        ("jit", jit(v, t)),
        ("wal_compression", wal_compression(v)),
        ("autovacuum_max_workers", autovacuum_max_workers(cpus)),
        ("autovacuum_work_mem", _opt_kb(autovacuum_work_mem_kb(mwm, os, v))),
        ("io_method", io_method(v, os)),
        ("io_workers", io_workers(v, cpus)),
    ]
    settings = tuple(Setting(name, str(value)) for name, value in items if value is not None)
    warnings = tuple(pgtune_warnings(ram, v, os, t, inp.storage))
    return TuningResult(settings, warnings, memory_basis=ram, cpu_basis=cpus, inputs=inp)


def _opt_kb(kb: int | None) -> str | None:
    return None if kb is None else format_kb(kb)


# --------------------------------------------------------------------------------------
# pgsteady: container awareness and operator settings (beyond PGTune)
# --------------------------------------------------------------------------------------

#: Fixed reserve inside a memory-limited container: postmaster, background processes
#: (checkpointer, walwriter, autovacuum launcher, stats), the entrypoint and shell tools.
CONTAINER_BASE_RESERVE = 64 * MIB
#: Per allowed connection: a backend's own baseline memory (catalog and plan caches, stack)
#: that work_mem does not cover. PGTune's "RAM" excludes it; a cgroup limit does not.
CONTAINER_PER_CONNECTION = 2 * MIB
_BASIS_STEP = 16 * MIB
#: work_mem units one connection (or parallel worker) may hold at once in the worst case
#: pgsteady sizes for: a sort (1) plus a hash join's and a hash aggregate's hash tables
#: (hash_mem_multiplier, 2.0, each). Postgres frees a node's memory only when the query
#: ends, so they add up (bench/memory.py runs exactly that query on every connection).
WORK_MEM_UNITS = 5
#: The server's floor for work_mem.
MIN_WORK_MEM_KB = 64
#: Share of the shared_buffers size that shared memory takes in all (buffer descriptors,
#: locks, the rest: pgsteady.postgres.safety's measurement).
SHARED_MEMORY_FACTOR = Fraction(9, 8)


def memory_basis(inp: TuningInput) -> tuple[int, list[str]]:
    """Bytes of memory the PGTune formulas should be sized for, plus warnings.

    Without a container memory limit, or with one at or above host RAM, this is host RAM
    (so the output is PGTune's). With a lower limit the whole of Postgres - shared memory
    and every backend - must fit in the cgroup, which PGTune's notion of "RAM" does not
    account for, so the basis is::

        limit - (64MiB + 2MiB * max_connections)

    (no share is kept for the page cache: the kernel reclaims it before it kills, and the
    worst-case memory workload of bench/memory.py peaked at 56% of a 2GB limit with it;
    work memory is fitted separately, :func:`container_work_mem_kb`)

    rounded down to a multiple of 16MiB (so the derived sizes print as whole MB; 1MiB
    below 256MiB), and never below half the limit (then a warning says the connection
    count is too large for it).
    """
    warnings: list[str] = []
    limit = inp.memory_limit
    if limit is None or limit >= inp.ram:
        if limit is not None and limit > inp.ram:
            warnings.append(
                f"memory_limit {human_size(limit)} is above host RAM {human_size(inp.ram)}; "
                "tuning for host RAM"
            )
        return inp.ram, warnings
    conns = max_connections(inp.db_type, inp.connections)
    reserve = CONTAINER_BASE_RESERVE + CONTAINER_PER_CONNECTION * conns
    basis = limit - reserve
    if basis < limit // 2:
        warnings.append(
            f"max_connections {conns} leaves little memory under the {human_size(limit)} "
            "container limit; sizing for half the limit - consider fewer connections "
            "(or a pooler) or a larger limit"
        )
        basis = limit // 2
    step = _BASIS_STEP if basis >= 16 * _BASIS_STEP else MIB
    return max(MIB, (basis // step) * step), warnings


def cpu_basis(inp: TuningInput) -> tuple[int | None, list[str]]:
    """CPUs the tuner may use: min(cpus, ceil(cpu_limit)); warns when the limit is higher."""
    if inp.cpu_limit is None:
        return inp.cpus, []
    ceiling = math.ceil(inp.cpu_limit)
    if inp.cpus is None:
        return ceiling, []
    if ceiling > inp.cpus:
        return inp.cpus, [f"cpu_limit {inp.cpu_limit:g} is above the host's {inp.cpus} CPUs"]
    return min(inp.cpus, ceiling), []


_SLOW_QUERY_MS = {"web": 500, "oltp": 250, "mixed": 1000, "dw": 10000, "desktop": 2000}


def _duration_ms(ms: int) -> str:
    """Milliseconds the way the server shows them ("500ms", "1s", "10s")."""
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


def autovacuum_budget(inp: TuningInput, values: dict[str, str], basis: int) -> tuple[int, int]:
    """(workers, autovacuum_work_mem in kB): all workers together take at most 1/8 of the
    memory basis, each at most maintenance_work_mem."""
    workers = int(values.get("autovacuum_max_workers", "3"))
    mwm_kb = maintenance_work_mem_kb(basis, inp.db_type, inp.os, inp.pg_version)
    av_kb = min(mwm_kb, basis // KIB // (8 * workers))
    return workers, max((av_kb // 1024) * 1024, 1024)


def container_work_mem_kb(inp: TuningInput, values: dict[str, str], basis: int) -> int:
    """work_mem under a container memory limit: what is left of the limit after the fixed
    reserve, shared memory, one maintenance_work_mem and every autovacuum worker's memory,
    shared by every connection and parallel worker at :data:`WORK_MEM_UNITS` each.

    PGTune's own formula assumes 3 units per connection and floors the result at 4MB,
    which does not fit a container: 200 connections at 5 x 4MB need 4GB on top of
    shared_buffers. Never above PGTune's value for the basis; never below 64kB.
    """
    limit = inp.memory_limit or inp.ram
    conns = int(values["max_connections"])
    reserve = CONTAINER_BASE_RESERVE + CONTAINER_PER_CONNECTION * conns
    shared = SHARED_MEMORY_FACTOR * _setting_kb(values["shared_buffers"]) * KIB
    maintenance = _setting_kb(values["maintenance_work_mem"]) * KIB
    workers, av_kb = autovacuum_budget(inp, values, basis)
    if "autovacuum_work_mem" in values:  # PGTune's own (2GB) wins over the budget
        av_kb = _setting_kb(values["autovacuum_work_mem"])
    parallel = int(values.get("max_parallel_workers", _DEFAULT_MAX_WORKER_PROCESSES))
    left = limit - reserve - shared - maintenance - workers * av_kb * KIB
    per_unit = math.floor(left / ((conns + parallel) * WORK_MEM_UNITS * KIB))
    return max(MIN_WORK_MEM_KB, min(per_unit, _setting_kb(values["work_mem"])))


def _setting_kb(value: str) -> int:
    """A size :func:`format_kb` wrote (``4MB``, ``862kB``, ``1GB``) in kB."""
    units = {"kB": 1, "MB": _KB_PER_MB, "GB": _KB_PER_GB, "TB": _KB_PER_GB * 1024}
    for suffix, factor in units.items():
        if value.endswith(suffix):
            return int(value[: -len(suffix)]) * factor
    raise ValueError(f"{value!r}: not a size in kB, MB, GB or TB")


def pgsteady_settings(inp: TuningInput, core: TuningResult) -> list[Setting]:
    """Settings PGTune does not emit, each with the reason it is set."""
    values = core.as_dict()
    out: list[Setting] = []

    def add(name: str, value: object, comment: str) -> None:
        if name not in values:
            out.append(Setting(name, str(value), comment, "pgsteady"))

    add(
        "shared_preload_libraries",
        "pg_stat_statements",
        "per-query statistics for monitoring (CREATE EXTENSION pg_stat_statements)",
    )
    add(
        "password_encryption",
        "scram-sha-256",
        "store only SCRAM verifiers; pg_hba.conf accepts scram-sha-256 and nothing weaker",
    )
    add(
        "idle_in_transaction_session_timeout",
        "10min",
        "end sessions left idle inside a transaction: they hold locks and stall vacuum",
    )
    add(
        "log_min_duration_statement",
        _duration_ms(_SLOW_QUERY_MS[inp.db_type]),
        f"log statements slower than this ({inp.db_type} workload threshold)",
    )
    add("log_checkpoints", "on", "checkpoint timing and volume in the log (explicit for PG13/14)")
    add("log_connections", "on", "audit trail: who connected, from where")
    add("log_disconnections", "on", "session length for every connection")
    add("log_lock_waits", "on", "log waits longer than deadlock_timeout (1s)")
    add(
        "log_temp_files",
        "10MB",
        "spills of 10MB and more show where work_mem is too small; smaller ones are the "
        "price of a container's work_mem budget and would flood the log",
    )
    add(
        "log_autovacuum_min_duration",
        "1s",
        "show autovacuum runs that take long enough to matter",
    )
    add(
        "log_line_prefix",
        "%m [%p] %q%u@%d app=%a client=%h ",
        "timestamp, pid, user@db, application and client on every line",
    )
    # Autovacuum: bound the memory all workers can take at once to 1/8 of the basis.
    workers, av_kb = autovacuum_budget(inp, values, core.memory_basis)
    mwm_kb = maintenance_work_mem_kb(core.memory_basis, inp.db_type, inp.os, inp.pg_version)
    if av_kb < mwm_kb:
        add(
            "autovacuum_work_mem",
            format_kb(av_kb),
            f"{workers} autovacuum workers together use at most 1/8 of memory "
            "instead of maintenance_work_mem each",
        )
    if inp.storage != "hdd":
        add(
            "autovacuum_vacuum_cost_limit",
            "1000",
            f"{inp.storage} absorbs more vacuum I/O than the default budget (200) assumes",
        )
    return out


def tune(inp: TuningInput) -> TuningResult:
    """PGTune for the container-aware basis, then pgsteady's additions; see module doc."""
    validate_input(inp)
    host = pgtune(inp)
    mem, mem_warnings = memory_basis(inp)
    cpus, cpu_warnings = cpu_basis(inp)
    limited = mem != inp.ram or cpus != inp.cpus
    core = pgtune(replace(inp, ram=mem, cpus=cpus)) if limited else host
    host_values = host.as_dict()
    settings = [
        s
        if host_values.get(s.name) == s.value
        else replace(
            s,
            source="pgsteady",
            comment=f"PGTune gives {host_values.get(s.name, 'the server default')} for the "
            f"host; {_limit_reason(inp, s.name, mem, cpus)}",
        )
        for s in core.settings
    ]
    if mem != inp.ram:
        settings = _budget_work_mem(inp, settings, mem, host_values, mem_warnings)
    warnings = [*core.warnings, *mem_warnings, *cpu_warnings]
    if inp.db_type == "desktop":
        warnings.append(
            "db_type desktop sets wal_level = minimal: no streaming replication, "
            "pg_basebackup or point-in-time recovery"
        )
    settings += pgsteady_settings(inp, replace(core, settings=tuple(settings)))
    return TuningResult(tuple(settings), tuple(warnings), mem, cpus, inp)


def _budget_work_mem(
    inp: TuningInput,
    settings: list[Setting],
    basis: int,
    host_values: dict[str, str],
    warnings: list[str],
) -> list[Setting]:
    """``settings`` with work_mem fitted into the container limit (see
    :func:`container_work_mem_kb`); a warning when it reaches the server's floor."""
    values = {s.name: s.value for s in settings}
    kb = container_work_mem_kb(inp, values, basis)
    if kb >= _setting_kb(values["work_mem"]):
        return settings
    if kb <= MIN_WORK_MEM_KB:
        warnings.append(
            f"max_connections {values['max_connections']} leaves no work memory under the "
            f"{human_size(inp.memory_limit or 0)} container limit (work_mem at the 64kB "
            "floor); use fewer connections (or the pooler) or a larger limit"
        )
    comment = (
        f"PGTune gives {host_values.get('work_mem')} for the host; every connection and "
        f"parallel worker may sort and hash ({WORK_MEM_UNITS} x work_mem) at once inside "
        f"the {human_size(inp.memory_limit or 0)} container limit without an OOM kill"
    )
    return [
        replace(s, value=format_kb(kb), source="pgsteady", comment=comment)
        if s.name == "work_mem"
        else s
        for s in settings
    ]


_CPU_DERIVED = {
    "max_worker_processes",
    "max_parallel_workers_per_gather",
    "max_parallel_workers",
    "max_parallel_maintenance_workers",
    "autovacuum_max_workers",
    "io_workers",
}


def _limit_reason(inp: TuningInput, name: str, mem: int, cpus: int | None) -> str:
    parts = []
    if mem != inp.ram and name not in _CPU_DERIVED:
        parts.append(
            f"sized for the {human_size(inp.memory_limit or 0)} container memory limit "
            f"({human_size(mem)} after headroom)"
        )
    if cpus != inp.cpus and (name in _CPU_DERIVED or name == "work_mem"):
        parts.append(f"sized for the container CPU limit {inp.cpu_limit:g} ({cpus} CPUs)")
    return "; ".join(parts)


def tuned_settings(**kwargs: object) -> dict[str, str]:
    """Shortcut for the deploy: ``tune(TuningInput(**kwargs)).as_dict()``."""
    return tune(TuningInput(**kwargs)).as_dict()  # type: ignore[arg-type]
