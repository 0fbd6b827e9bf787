"""Rich rendering of HostStatus: a summary table of every host and a panel per host."""

from __future__ import annotations

from rich import box
from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from pgsteady.cluster import status as cluster_status
from pgsteady.monitor import archiving, performance
from pgsteady.monitor.model import CRITICAL, OK, UNREACHABLE, WARNING, Disk, HostStatus, cluster_of
from pgsteady.stack import pooler_status
from pgsteady.units import human_duration, human_size

STYLE = {OK: "green", WARNING: "yellow", CRITICAL: "bold red", UNREACHABLE: "bold magenta"}
DASH = "-"


#: Durations as verify prints them (pgsteady.units.human_duration).
duration = human_duration


def badge(status: str) -> Text:
    return Text(status.upper(), style=STYLE.get(status, ""))


def _disk(disk: Disk | None) -> str:
    if disk is None:
        return DASH
    return f"{human_size(disk.free_bytes)} free ({disk.used_percent:.0f}% used)"


def _health(h: HostStatus) -> str:
    c = h.container
    if not c.exists:
        return "missing"
    return c.state if c.health == "none" else f"{c.state}, {c.health}"


def _short_state(h: HostStatus) -> str:
    c = h.container
    if not c.exists:
        return "missing"
    return c.health if c.state == "running" and c.health != "none" else c.state


def _conns(h: HostStatus) -> str:
    c = h.postgres.connections
    return f"{c.used}/{c.max}" if c else DASH


def _cache(h: HostStatus) -> str:
    r = h.postgres.cache_hit_ratio
    return f"{r:.1%}" if r is not None else DASH


def _last_backup(h: HostStatus) -> str:
    b = h.backup
    if not b.enabled:
        return "disabled"
    if b.last_run_ok is False:
        return "FAILED"
    if b.last_success_age_seconds is None:
        return "never"
    return f"{duration(b.last_success_age_seconds)} ago"


def _used(disk: Disk | None) -> str:
    return f"{disk.used_percent:.0f}%" if disk else DASH


def summary(hosts: list[HostStatus], selected: int | None = None) -> Table:
    """One row per host (the panels carry the rest)."""
    table = Table(
        title="pgsteady status",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        padding=0,
        show_edge=False,
    )
    for col in (
        "#", "host", "status", "state", "up", "restarts", "pg", "conns",
        "data fs", "bkp fs", "last backup",
    ):  # fmt: skip
        table.add_column(col, overflow="fold", no_wrap=col == "status")
    for i, h in enumerate(hosts):
        pg = h.postgres
        row_style = "reverse" if selected == i and len(hosts) > 1 else ""
        if h.error:
            table.add_row(str(i + 1), h.host, badge(h.status), *[DASH] * 8, style=row_style)
            continue
        table.add_row(
            str(i + 1),
            h.host,
            badge(h.status),
            _short_state(h),
            duration(h.container.uptime_seconds),
            DASH if h.container.restart_count is None else str(h.container.restart_count),
            pg.version or "down",
            _conns(h),
            _used(h.disks.get("data")),
            _used(h.disks.get("backup")),
            _last_backup(h),
            style=row_style,
        )
    return table


def _ms(value: float) -> str:
    """Milliseconds as a statement's time: 12.3 ms, 2.40 s, then minutes and more."""
    if value < 1000:
        return f"{value:.1f} ms"
    return f"{value / 1000:.2f} s" if value < 60_000 else duration(value / 1000)


def _performance_rows(h: HostStatus) -> list[tuple[str, str | Text]]:
    """Two lines of the performance view for the host panel (the rest: --performance)."""
    p = h.performance
    if not p.available:
        return [("performance", f"unavailable: {p.error}")]
    ratio = f"{p.cache_hit_ratio:.1%}" if p.cache_hit_ratio is not None else DASH
    temp = f"{p.temp_files} temp files ({human_size(p.temp_bytes or 0)})"
    rows: list[tuple[str, str | Text]] = [
        ("app db", f"{p.database}: cache hit {ratio} of {p.block_accesses} accesses, {temp}")
    ]
    if not p.statements_available:
        rows.append(("top query", "pg_stat_statements not readable (pgsteady.statements)"))
    elif p.by_total_time:
        top = p.by_total_time[0]
        rows.append(
            ("top query", Text(f"{_ms(top.total_ms)} in {top.calls} calls: {top.query[:80]}"))
        )
    return rows


def performance_panel(h: HostStatus) -> Panel:
    """The full performance view of one host: every ranking of pg_stat_statements."""
    p = h.performance
    parts: list[RenderableType] = [
        Text.assemble(*(f"{label}: {value}  " for label, value in _performance_rows(h)[:1]))
    ]
    for key, title in performance.RANKINGS.items():
        rows = getattr(p, key)
        table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
        for col in ("total", "calls", "mean", "rows", "temp blks", "user", "query"):
            table.add_column(col, overflow="fold", justify="left" if col in ("user", "query")
                             else "right")  # fmt: skip
        for s in rows:
            table.add_row(
                _ms(s.total_ms), str(s.calls), _ms(s.mean_ms), str(s.rows),
                str(s.temp_blks_written), Text(s.user or DASH), Text(s.query),
            )  # fmt: skip
        parts.append(table if rows else Text(f"{title}: none", style="dim"))
    if not p.statements_available:
        parts = parts[:1] + [Text("pg_stat_statements not readable", style="yellow")]
    title = Text.assemble(h.host, " performance")
    return Panel(Group(*parts), title=title, title_align="left")


def _detail_rows(h: HostStatus) -> list[tuple[str, str | Text]]:
    c, pg, b = h.container, h.postgres, h.backup
    info = h.hostinfo
    load = " ".join(f"{x:.2f}" for x in info.get("load") or []) or DASH
    rows: list[tuple[str, str | Text]] = [
        (
            "host",
            f"{info.get('hostname') or DASH}: {info.get('cpus') or '?'} CPUs, "
            f"{human_size((info.get('ram_mb') or 0) << 20)} RAM, load {load}",
        ),
        ("container", f"{h.settings.get('container', DASH)}: {_health(h)}"),
        ("uptime", f"{duration(c.uptime_seconds)}, {c.restart_count or 0} restart(s)"),
    ]
    if pg.up:
        role = "replica" if pg.in_recovery else "primary"
        rows.append(("postgres", f"{pg.version} ({role}), up {duration(pg.uptime_seconds)}"))
        cn = pg.connections
        if cn:
            rows.append(
                (
                    "connections",
                    f"{cn.used}/{cn.max} ({cn.percent:.0f}%): {cn.active} active, {cn.idle} idle,"
                    f" {cn.idle_in_transaction} idle in transaction",
                )
            )
        sizes = ", ".join(f"{k} {human_size(v)}" for k, v in pg.databases.items())
        rows.append(("databases", sizes or DASH))
        rows.append(("cache hit", f"{_cache(h)} of {pg.block_accesses} block accesses"))
        tx = pg.longest_transaction
        rows.append(
            (
                "longest tx",
                f"{duration(tx['seconds'])} pid {tx.get('pid')} {tx.get('user')}@"
                f"{tx.get('database')} ({tx.get('state')}): {tx.get('query', '')[:80]}"
                if tx
                else "none open",
            )
        )
        wait = pg.longest_lock_wait_seconds
        longest = f", longest {duration(wait)}" if wait is not None else ""
        rows.append(("waiting locks", f"{pg.waiting_locks}{longest}"))
        rows.extend(_performance_rows(h))
    else:
        rows.append(("postgres", f"down: {pg.error}"))
    for name in ("data", "backup"):
        disk = h.disks.get(name)
        where = f" on {disk.mount} ({disk.path})" if disk else ""
        size = f" of {human_size(disk.size_bytes)}" if disk else ""
        rows.append((f"{name} fs", _disk(disk).replace(" free", f" free{size}") + where))
    last = _last_backup(h)
    if b.last_success_size_bytes:
        last += f", {human_size(b.last_success_size_bytes)}"
    if b.last_run_ok is False:
        last += f": {b.last_error}"
    if b.drill_ok is not None:
        last += f"; drill {'ok' if b.drill_ok else 'FAILED'} {b.drill_time or ''}"
    rows.append(("last backup", last))
    if h.pooler.enabled:
        rows.append(("pooler", pooler_status.summary(h.pooler)))
    if h.archiving.enabled:
        repo = h.disks.get("repo")
        rows.append(("archiving", archiving.summary(h.archiving)))
        rows.append(("repo fs", _disk(repo) + (f" on {repo.mount} ({repo.path})" if repo else "")))
    return rows


def host_panel(h: HostStatus, log_lines: int = 5) -> Panel:
    """Every value of one host, its problems and its recent log errors."""
    title = Text.assemble(h.host, " ", badge(h.status))
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column(overflow="fold")
    if h.error:  # unreachable or invalid settings: the error is all there is
        grid.add_row("error", Text(h.error, style="magenta"))
        return Panel(grid, title=title, title_align="left", border_style=STYLE[h.status])
    for label, value in _detail_rows(h):
        grid.add_row(label, value)
    parts: list[RenderableType] = [grid]
    for problem in h.problems:
        level = problem.split(":", 1)[0]
        parts.append(Text(f"• {problem}", style=STYLE.get(level, "")))
    if h.log_errors:
        parts.append(Text(f"recent log errors ({len(h.log_errors)}):", style="bold"))
        parts += [Text(line[:200], style="dim") for line in h.log_errors[-log_lines:]]
    return Panel(Group(*parts), title=title, title_align="left", border_style=STYLE[h.status])


def render_status(
    hosts: list[HostStatus], selected: int | None = None, performance: bool = False
) -> RenderableType:
    """``make status``: the summary and a panel per host (only the selected one if given),
    with ``performance`` each host's full performance view after its panel."""
    panels: list[RenderableType] = []
    for i, h in enumerate(hosts):
        if selected in (None, i):
            panels.append(host_panel(h))
            if performance and not h.error:
                panels.append(performance_panel(h))
    if cluster := cluster_of(hosts):
        lines = "\n".join(cluster_status.render_lines(cluster))
        border = STYLE[CRITICAL] if cluster.error or not cluster.leader else STYLE[OK]
        panels.insert(
            0, Panel(Text(lines), title="cluster", title_align="left", border_style=border)
        )
    return Group(summary(hosts, selected), *panels)
