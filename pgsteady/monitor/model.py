"""Pure interpretation of one host's raw sections: values, thresholds, a verdict.

:func:`derive` takes what :func:`pgsteady.monitor.collect.collect` returned plus the
host's Settings and builds a :class:`HostStatus`; :func:`report` is the JSON document
``make status JSON=1`` prints (schema in docs/monitoring.md; ``SCHEMA_VERSION`` changes
only when a key is removed or changes meaning).

Above 400 lines because every threshold and verdict of the dashboard is here, next to
the values it judges; the collection and the view are elsewhere.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from pgsteady.cluster import health as cluster_health
from pgsteady.cluster import status as cluster_status
from pgsteady.monitor import archiving, performance
from pgsteady.settings import Settings
from pgsteady.stack import pooler_status
from pgsteady.stack.schedule_syntax import max_gap
from pgsteady.units import human_duration

SCHEMA_VERSION = 1
OK, WARNING, CRITICAL, UNREACHABLE = "ok", "warning", "critical", "unreachable"
_RANK = {OK: 0, WARNING: 1, CRITICAL: 2, UNREACHABLE: 3}
HOUR = 3600
DAY = 24 * HOUR


@dataclass(frozen=True)
class Thresholds:
    """Where a value turns into a warning or a critical problem (docs/monitoring.md)."""

    connections_warn: float = 0.80  # used / max_connections
    connections_crit: float = 0.95
    disk_used_warn: float = 85.0  # percent used of the filesystem
    disk_used_crit: float = 95.0
    cache_hit_warn: float = 0.95  # judged only after cache_hit_min_blocks accesses
    cache_hit_min_blocks: int = 10_000
    transaction_warn: float = 5 * 60  # seconds the oldest open transaction has run
    transaction_crit: float = HOUR
    lock_wait_warn: float = 60  # seconds the longest lock wait has lasted
    restart_recent: float = HOUR  # restart_count > 0 and up less than this: warning
    backup_grace: float = HOUR  # added to the schedule's interval before a backup is late


@dataclass
class Container:
    exists: bool = False
    state: str = "missing"
    health: str = "none"
    started_at: str | None = None
    uptime_seconds: float | None = None
    restart_count: int | None = None
    oom_killed: bool = False
    exit_code: int | None = None
    image: str | None = None
    stopped_on_purpose: bool = False
    health_output: str = ""
    watchdog_crash_loop: str | None = None  # the watchdog's reason (state/watchdog.json)


@dataclass
class Connections:
    used: int = 0
    max: int = 0
    reserved: int = 0
    percent: float = 0.0
    active: int = 0
    idle: int = 0
    idle_in_transaction: int = 0


@dataclass
class Postgres:
    up: bool = False
    error: str | None = None
    version: str | None = None
    version_num: int | None = None
    started_at: str | None = None
    uptime_seconds: float | None = None
    in_recovery: bool | None = None
    connections: Connections | None = None
    databases: dict[str, int] = field(default_factory=dict)
    cache_hit_ratio: float | None = None
    longest_transaction: dict[str, Any] | None = None
    block_accesses: int = 0
    waiting_locks: int | None = None
    longest_lock_wait_seconds: float | None = None


@dataclass
class Disk:
    path: str = ""
    mount: str = ""
    size_bytes: int = 0
    free_bytes: int = 0
    used_percent: float = 0.0


@dataclass
class Backup:
    enabled: bool = True
    status_found: bool = False
    last_success_time: str | None = None
    last_success_age_seconds: float | None = None
    last_success_size_bytes: int | None = None
    last_run_time: str | None = None
    last_run_ok: bool | None = None
    #: A cluster member's run that left the dump to a streaming standby: why, and when.
    last_run_skipped: str | None = None
    last_run_age_seconds: float | None = None
    last_error: str | None = None
    drill_time: str | None = None
    drill_ok: bool | None = None
    expected_interval_seconds: int | None = None


@dataclass
class HostStatus:
    """Everything ``make status`` knows about one host."""

    host: str
    status: str = OK
    problems: list[str] = field(default_factory=list)
    error: str | None = None
    collected_in_seconds: float = 0.0
    settings: dict[str, Any] = field(default_factory=dict)
    hostinfo: dict[str, Any] = field(default_factory=dict)
    container: Container = field(default_factory=Container)
    postgres: Postgres = field(default_factory=Postgres)
    disks: dict[str, Disk | None] = field(default_factory=lambda: {"data": None, "backup": None})
    backup: Backup = field(default_factory=Backup)
    archiving: archiving.Archiving = field(default_factory=archiving.Archiving)
    performance: performance.Performance = field(default_factory=performance.Performance)
    pooler: pooler_status.PoolerStatus = field(default_factory=pooler_status.PoolerStatus)
    log_errors: list[str] = field(default_factory=list)
    #: A cluster member's view of its cluster (GET /cluster); None on a single host.
    cluster: cluster_status.ClusterStatus | None = None

    def flag(self, level: str, message: str) -> None:
        """Record a problem; the host's status is its worst problem."""
        self.problems.append(f"{level}: {message}")
        if _RANK[level] > _RANK[self.status]:
            self.status = level

    @property
    def failing(self) -> bool:
        """Critical or unreachable: ``make status`` exits 1."""
        return _RANK[self.status] >= _RANK[CRITICAL]

    def to_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc.pop("cluster")  # the report's own "cluster" section (absent on single hosts)
        return doc


# --- parsing helpers --------------------------------------------------------------------


def parse_time(value: str | None) -> datetime | None:
    """RFC 3339 (Docker's nanoseconds, Postgres' +00:00) → aware datetime; None if unset."""
    if not value or value.startswith("0001-01-01"):
        return None
    text = value.strip().replace("Z", "+00:00")
    if "." in text:
        head, rest = text.split(".", 1)
        digits = len(rest) - len(rest.lstrip("0123456789"))
        text = f"{head}.{rest[:digits][:6].ljust(6, '0')}{rest[digits:]}"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def parse_keyvalues(text: str) -> dict[str, str]:
    """``key value`` lines → dict."""
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key:
            out[key] = value.strip()
    return out


def parse_df(text: str) -> Disk | None:
    """``path P`` plus the last line of ``df -Pk`` → Disk; None when unparsable."""
    lines = [line for line in text.splitlines() if line.strip()]
    path = ""
    if lines and lines[0].startswith("path "):
        path = lines.pop(0)[5:]
    if not lines:
        return None
    fields = lines[-1].split()
    try:
        size, used, free = (int(f) * 1024 for f in fields[1:4])
    except (ValueError, IndexError):
        return None
    percent = round(100.0 * used / (used + free), 1) if used + free else 0.0
    return Disk(path, " ".join(fields[5:]), size, free, percent)


def expected_interval(schedule: str) -> int:
    """The longest gap between two runs of a backup schedule, in seconds."""
    gap = max_gap(schedule)
    return int(gap.total_seconds()) if gap is not None else 366 * DAY


def _section(raw: dict[str, Any], name: str) -> dict[str, Any]:
    return raw.get("sections", {}).get(name) or {"rc": None, "out": "", "err": ""}


def _why(section: dict[str, Any]) -> str:
    lines = [line for line in section.get("err", "").splitlines() if line.strip()]
    if lines:
        return lines[-1].strip()
    return "no output" if section.get("rc") is None else f"exit code {section['rc']}"


def _age(now: datetime | None, when: datetime | None) -> float | None:
    if now is None or when is None:
        return None
    return round(max(0.0, (now - when).total_seconds()), 1)


# --- the sections -------------------------------------------------------------------------


def _container(st: HostStatus, raw: dict[str, Any], now: datetime | None) -> None:
    sec = _section(raw, "inspect")
    c = st.container
    if sec["rc"] != 0:
        return
    try:
        data = json.loads(sec["out"])
    except ValueError:
        return
    state = data.get("state") or {}
    health = state.get("Health") or {}
    c.exists = True
    c.state = state.get("Status", "unknown")
    c.health = health.get("Status", "none")
    c.restart_count = data.get("restart_count")
    c.oom_killed = bool(state.get("OOMKilled"))
    c.exit_code = state.get("ExitCode")
    c.image = data.get("image")
    started = parse_time(state.get("StartedAt"))
    c.started_at = started.isoformat() if started else None
    if c.state == "running":
        c.uptime_seconds = _age(now, started)
    if c.health == "unhealthy" and health.get("Log"):
        c.health_output = str(health["Log"][-1].get("Output", "")).strip()[:300]


def _postgres(st: HostStatus, raw: dict[str, Any]) -> None:
    sec = _section(raw, "sql")
    pg = st.postgres
    if sec["rc"] != 0:
        pg.error = _why(sec)
        return
    try:
        data = json.loads(sec["out"].splitlines()[-1])
    except (ValueError, IndexError):
        pg.error = f"unexpected psql output: {sec['out'][:200]!r}"
        return
    pg.up = True
    pg.version = data.get("version", "").split(" ")[0] or None
    pg.version_num = data.get("version_num")
    started = parse_time(data.get("started_at"))
    pg.started_at = started.isoformat() if started else None
    pg.uptime_seconds = round(float(data.get("uptime_seconds") or 0), 1)
    pg.in_recovery = data.get("in_recovery")
    conns = data.get("connections") or {}
    maximum = int(data.get("max_connections") or 0)
    used = int(conns.get("used") or 0)
    pg.connections = Connections(
        used=used,
        max=maximum,
        reserved=int(data.get("reserved_connections") or 0),
        percent=round(100.0 * used / maximum, 1) if maximum else 0.0,
        active=int(conns.get("active") or 0),
        idle=int(conns.get("idle") or 0),
        idle_in_transaction=int(conns.get("idle_in_transaction") or 0),
    )
    pg.databases = {k: int(v) for k, v in (data.get("databases") or {}).items()}
    blocks = data.get("blocks") or {}
    hit, read = int(blocks.get("hit") or 0), int(blocks.get("read") or 0)
    pg.cache_hit_ratio = round(hit / (hit + read), 4) if hit + read else None
    pg.block_accesses = hit + read
    tx = data.get("longest_transaction")
    if tx:
        tx["seconds"] = round(float(tx.get("seconds") or 0), 1)
    pg.longest_transaction = tx
    pg.waiting_locks = int(data.get("waiting_locks") or 0)
    wait = data.get("longest_lock_wait_seconds")
    pg.longest_lock_wait_seconds = round(float(wait), 1) if wait is not None else None


def _backup(st: HostStatus, raw: dict[str, Any], s: Settings | None, now: datetime | None):
    b = st.backup
    if s is not None:
        b.enabled = s.backup_enabled
        b.expected_interval_seconds = expected_interval(s.backup_schedule)
    sec = _section(raw, "backup_status")
    if sec["rc"] != 0:
        return
    try:
        data = json.loads(sec["out"])
    except ValueError:
        b.last_error = "status.json is not valid JSON"
        return
    b.status_found = True
    success = data.get("last_success") or {}
    when = parse_time(success.get("time"))
    b.last_success_time = when.isoformat() if when else None
    b.last_success_age_seconds = _age(now, when)
    b.last_success_size_bytes = success.get("size_bytes")
    run = data.get("last_run") or {}
    b.last_run_time = run.get("time")
    b.last_run_ok = run.get("ok")
    if run.get("skipped"):
        b.last_run_skipped = str(run["skipped"])
        b.last_run_age_seconds = _age(now, parse_time(run.get("time")))
    if run.get("ok") is False:
        b.last_error = run.get("error") or (data.get("last_error") or {}).get("message")
    drill = data.get("drill") or {}
    b.drill_time = drill.get("time")
    b.drill_ok = drill.get("ok")


# --- verdict --------------------------------------------------------------------------------


def _judge(st: HostStatus, t: Thresholds) -> None:
    c, pg, b = st.container, st.postgres, st.backup
    if not c.exists:
        st.flag(CRITICAL, f"container {st.settings.get('container')} does not exist")
    elif c.state != "running":
        why = " (stopped on purpose: pgsteady-ctl down)" if c.stopped_on_purpose else ""
        oom = ", OOM-killed" if c.oom_killed else ""
        st.flag(CRITICAL, f"container is {c.state} (exit code {c.exit_code}{oom}){why}")
    elif c.health == "unhealthy":
        st.flag(CRITICAL, f"container is unhealthy: {c.health_output or 'healthcheck failing'}")
    elif c.health == "starting":
        st.flag(WARNING, "container health is still starting")
    if c.watchdog_crash_loop:
        st.flag(CRITICAL, f"the watchdog reports a crash loop ({c.watchdog_crash_loop})")
    if c.restart_count and c.uptime_seconds is not None and c.uptime_seconds < t.restart_recent:
        st.flag(WARNING, f"container restarted recently ({c.restart_count} restarts)")
    if c.state == "running" and not pg.up:
        st.flag(CRITICAL, f"Postgres does not answer: {pg.error}")
    if pg.connections and pg.connections.max:
        share = pg.connections.used / pg.connections.max
        text = f"connections {pg.connections.used}/{pg.connections.max}"
        if share >= t.connections_crit:
            st.flag(CRITICAL, text)
        elif share >= t.connections_warn:
            st.flag(WARNING, text)
    ratio = pg.cache_hit_ratio
    enough = pg.block_accesses >= t.cache_hit_min_blocks
    if ratio is not None and enough and ratio < t.cache_hit_warn:
        st.flag(WARNING, f"cache hit ratio {ratio:.1%}")
    tx = pg.longest_transaction
    if tx and tx["seconds"] >= t.transaction_crit:
        st.flag(
            CRITICAL, f"transaction open for {human_duration(tx['seconds'])} (pid {tx.get('pid')})"
        )
    elif tx and tx["seconds"] >= t.transaction_warn:
        st.flag(
            WARNING, f"transaction open for {human_duration(tx['seconds'])} (pid {tx.get('pid')})"
        )
    wait = pg.longest_lock_wait_seconds
    if wait is not None and wait >= t.lock_wait_warn:
        st.flag(WARNING, f"{pg.waiting_locks} waiting lock(s), longest {human_duration(wait)}")
    for name, disk in st.disks.items():
        if disk is None:
            st.flag(WARNING, f"free space of the {name} filesystem unknown")
        elif disk.used_percent >= t.disk_used_crit:
            st.flag(CRITICAL, f"{name} filesystem {disk.used_percent:.0f}% full")
        elif disk.used_percent >= t.disk_used_warn:
            st.flag(WARNING, f"{name} filesystem {disk.used_percent:.0f}% full")
    _judge_backup(st, t)
    for level, message in archiving.problems(st.archiving):
        st.flag(level, message)
    if any("PANIC:" in line for line in st.log_errors):
        st.flag(WARNING, "PANIC in the recent container log")
    if b.drill_ok is False:
        st.flag(WARNING, "the last restore drill failed")


def _judge_backup(st: HostStatus, t: Thresholds) -> None:
    b = st.backup
    if not b.enabled:
        return
    if b.last_run_ok is False:
        st.flag(CRITICAL, f"last backup failed: {b.last_error}")
    age = b.last_success_age_seconds
    interval = b.expected_interval_seconds or DAY
    skipped_age = b.last_run_age_seconds
    if b.last_run_skipped and skipped_age is not None and skipped_age <= interval + t.backup_grace:
        return  # a cluster member whose last run left the dump to a streaming standby
    if age is None:
        st.flag(WARNING, "no successful backup recorded yet")
    elif age > 2 * interval + t.backup_grace:
        st.flag(CRITICAL, f"last successful backup is {human_duration(age)} old")
    elif age > interval + t.backup_grace:
        st.flag(WARNING, f"last successful backup is {human_duration(age)} old")


def settings_summary(s: Settings) -> dict[str, Any]:
    """The Settings values the monitor read for one host."""
    return {
        "compose_project": s.compose_project,
        "container": s.container_name,
        "app_dir": s.app_dir,
        "backup_dir": s.backup_path,
        "port": s.postgres_port,
        "backup_enabled": s.backup_enabled,
        "backup_schedule": s.backup_schedule,
    }


def derive(
    raw: dict[str, Any], s: Settings | None, thresholds: Thresholds | None = None
) -> HostStatus:
    """Raw sections of one host (see collect.py) → HostStatus with its verdict."""
    t = thresholds or Thresholds()
    st = HostStatus(host=raw["host"], collected_in_seconds=raw.get("seconds", 0.0))
    if s is not None:
        st.settings = settings_summary(s)
    if raw.get("settings_error"):
        st.error = raw["settings_error"]
        st.flag(CRITICAL, "invalid settings")
        return st
    if raw.get("error"):
        st.error = raw["error"]
        st.status = UNREACHABLE
        st.problems.append(f"{UNREACHABLE}: {raw['error']}")
        return st
    info = parse_keyvalues(_section(raw, "host")["out"])
    facts = raw.get("facts") or {}
    st.hostinfo = {
        "hostname": info.get("hostname", ""),
        "load": [float(x) for x in info.get("load", "").split()] or None,
        "ram_mb": facts.get("ram_mb"),
        "cpus": facts.get("cpus"),
        "has_systemd": facts.get("has_systemd"),
    }
    stopped = info.get("stopped_marker") == "yes"
    now = datetime.fromtimestamp(int(info["now"]), UTC) if info.get("now", "").isdigit() else None
    _container(st, raw, now)
    st.container.stopped_on_purpose = stopped
    if info.get("watchdog_crash_loop") == "yes":
        st.container.watchdog_crash_loop = info.get("watchdog_reason") or "no reason recorded"
    _postgres(st, raw)
    st.disks = {
        "data": parse_df(_section(raw, "data_df")["out"]),
        "backup": parse_df(_section(raw, "backup_df")["out"]),
    }
    if s is not None and s.pgbackrest_enabled:
        st.disks["repo"] = parse_df(_section(raw, "repo_df")["out"])
    _backup(st, raw, s, now)
    st.archiving = archiving.derive(raw, s, now)
    st.performance = performance.parse(_section(raw, "performance"))
    st.pooler = pooler_status.parse(_section(raw, "pooler"))
    if st.container.state == "running" and (warn := pooler_status.problem(st.pooler)):
        st.flag(WARNING, warn)
    st.log_errors = [line for line in _section(raw, "logs")["out"].splitlines() if line.strip()]
    st.cluster = cluster_status.parse_section(_section(raw, "cluster"))
    if st.cluster is not None:
        st.cluster.rolling = cluster_status.parse_rolling(_section(raw, "cluster_roll"))
        if st.cluster.rolling:
            st.flag(WARNING, f"cluster: rolling change in progress: {st.cluster.rolling}")
        marked = str(raw.get("adopt_seed") or "")
        adoption = cluster_status.parse_adoption(_section(raw, "cluster_adopted"), st.host, marked)
        if adoption:
            st.cluster.adoption = adoption
            st.flag(WARNING, f"cluster: adoption in progress: {adoption}")
        names = [m.name for m in st.cluster.members]
        for problem in cluster_health.leader_problems(st.cluster, names or [st.host]):
            st.flag(CRITICAL, f"cluster: {problem}")
    _judge(st, t)
    if raw.get("facts_error"):
        st.flag(
            WARNING, f"settings do not hold on this host (deploy refuses): {raw['facts_error']}"
        )
    return st


def report(hosts: list[HostStatus], when: datetime | None = None) -> dict[str, Any]:
    """The ``make status JSON=1`` document."""
    doc = {
        "schema": SCHEMA_VERSION,
        "time": (when or datetime.now(UTC)).isoformat(timespec="seconds"),
        "ok": not any(h.failing for h in hosts),
        "hosts": [h.to_dict() for h in hosts],
    }
    if cluster := cluster_of(hosts):
        doc["cluster"] = cluster.to_dict()
    return doc


def cluster_of(hosts: list[HostStatus]) -> cluster_status.ClusterStatus | None:
    """The cluster as the first member that read it sees it; None without cluster hosts."""
    views = [h.cluster for h in hosts if h.cluster is not None]
    view = next((v for v in views if v.error is None), views[0] if views else None)
    if view is not None:  # only the seed's host knows of its adoption
        view.adoption = next((v.adoption for v in views if v.adoption), None)
    return view


def exit_code(hosts: list[HostStatus]) -> int:
    """0 when every host is ok or only warns; 1 when any is critical or unreachable."""
    return 1 if any(h.failing for h in hosts) else 0
