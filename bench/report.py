"""Render a run's results (the benchmarks.json document) as docs/benchmarks.md. Pure."""

from __future__ import annotations

from typing import Any

from bench import failover as failover_part
from bench import failover_lab as failover_lab_part
from bench import headlines as figures
from bench import host_reboot as host_reboot_part
from bench.config import BenchConfig
from bench.merge import part_config

Results = dict[str, Any]

#: Issue 19: a backup costs at most this much of a bare ``pg_dump -Fc`` (median ratio).
BACKUP_GOAL = 1.15
#: Issue 19: a no-op converge over SSH takes at most this long per host (seconds).
SSH_NOOP_GOAL = 3.0


METHOD_NOTES = (
    "Every stack is an isolated pgsteady deployment on this machine (own app_dir, compose "
    "project, port; tests/support/stack.py), converged by the real `pyinfra` CLI with the "
    "operator defaults (image source auto, healthcheck every 10 s), and destroyed at the end "
    "with its container, volume, cron jobs and files.",
    "Recovery trials wait for a healthy container and more than 10 s of uptime between "
    "kills; Docker's restart backoff would otherwise dominate (back-to-back kills: p50 about "
    "52 s on this machine kind, see FINDINGS). The clock starts just before `kill -9` and "
    "stops when a new TCP connection runs a query on a server with a new start time.",
    "Tuning swaps the data stack's postgresql.conf (mounted read-only from "
    "APP_DIR/config) and restarts the container; the container limits, the data and the "
    "TLS and WAL-archiving lines stay the same. B is `pgtune()` for the container's memory "
    "and CPUs: PGTune for the host's RAM (H, run only in the memory workload) gives "
    "shared_buffers above the container's memory limit. C is the file the deploy wrote "
    "(`tune()`), including pg_stat_statements and connection logging, which cost some "
    "throughput on very short queries.",
    "The worst-case memory workload's clients connect from the host (their memory is "
    "outside the container); its maintenance session runs psql inside the container. The "
    "resident figure samples the cgroup's memory.stat every 0.2-0.5 s, so a spike between "
    "samples is missed; the kill counters are not sampled.",
    "pgbench runs inside the container (its PG17 pgbench over the Unix socket), so client "
    "and server share the same CPU limit in every configuration; the host's PG15 pgbench "
    "is not used. The TPC-B-like runs write, so tables grow a little from round to round; "
    "alternating A B C spreads that evenly.",
    "The bare dump writes to the same directory (same disk) as the tool, without fsync, "
    "verification or checksum: what a hand-written cron line does.",
    "Several hosts in one inventory: every host is this machine, reached over a private "
    "sshd on 127.0.0.1 (started for the run, stopped by PID), so the per-host figure "
    "includes pyinfra's SSH round trips that @local does not have.",
    "The pgBackRest part runs its own two containers of the Debian-built image (not "
    "deployed stacks), 1 CPU and 1 GB each, so the archiving and plain servers differ only "
    "in `archive_mode`; pgbench runs inside each container.",
    "PITR markers: a target lies after one marker's commit returned and before the next "
    "marker's INSERT started (both read from the server's clock), so exactly the markers up "
    "to it were committed at or before it.",
)


def fmt_ratio(r: dict[str, Any]) -> str:
    """``{"median": 1.2, "min": 1.1, "max": 1.3}`` → ``1.20× (1.10–1.30)``."""
    if r["n"] == 1:
        return f"{r['median']:.2f}× (one round)"
    return f"{r['median']:.2f}× ({r['min']:.2f}–{r['max']:.2f})"


def fmt_s(seconds: float) -> str:
    return f"{seconds:.2f} s" if seconds < 10 else f"{seconds:.1f} s"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines + [""]


def commands(config: dict[str, Any], pitr: Results | None = None) -> list[str]:
    """The commands each part runs, with this run's sizes filled in."""
    c, j, t = config["clients"], config["threads"], config["tuning_seconds"]
    tool = "python3 APP_DIR/bin/pgsteady-backup {cmd} --config APP_DIR/etc/backup.json"
    return [
        "pyinfra -y INVENTORY deploy.py   (per stack; timed around the CLI)",
        "kill -9 $(docker inspect -f '{{.State.Pid}}' C)   then psycopg2 connect + "
        "SELECT pg_postmaster_start_time() over TCP every 20 ms",
        f"docker exec -u postgres C pgbench -i -q -s {config['scale']} app",
        f"docker exec -u postgres C pgbench -S -c {c} -j {j} -T {t} app   (read-only)",
        f"docker exec -u postgres C pgbench -c {c} -j {j} -T {t} app   (TPC-B-like)",
        "docker restart -t 60 C   (after swapping APP_DIR/config/postgresql.conf)",
        tool.format(cmd="backup"),
        "docker exec -u postgres C pg_dump -Fc -d app > APP_DIR/backups/bench-bare-gzip.dump",
        "docker exec -u postgres C pg_dump -Fc --compress=zstd -d app > "
        "APP_DIR/backups/bench-bare-zstd.dump   (when the tool writes zstd)",
        tool.format(cmd="restore --jobs N") + "   (new database, dropped afterwards)",
        tool.format(cmd="drill"),
        "python -m pgsteady.verify --inventory INVENTORY   (make verify)",
        *pitr_commands(pitr),
    ]


def pitr_commands(pitr: Results | None) -> list[str]:
    """The pgBackRest part's commands (pgbackrest options: see its section)."""
    if not pitr:
        return []
    return [
        f"docker exec -u postgres C pgbench -n -c {pitr['clients']} -j {pitr['threads']} "
        f"-T {pitr['seconds']} postgres   (each server once per round, alternated)",
        "docker exec -u postgres C pgbackrest backup --type=full",
        "docker run --rm -u postgres IMAGE pgbackrest restore --type=immediate "
        "--target-action=promote   (into an empty volume)",
        "docker run --rm -u postgres IMAGE pgbackrest restore --type=time --target=T "
        "--target-action=promote   (per PITR target)",
    ]


def headlines(res: Results) -> list[str]:
    """One line per headline figure, for the top of the page and the run's summary."""
    out = []
    if rec := res.get("recovery"):
        s = rec["seconds"]
        out.append(
            f"Recovery after kill -9 of the postmaster: p50 {fmt_s(s['p50'])}, p95 "
            f"{fmt_s(s['p95'])}, max {fmt_s(s['max'])} over {s['n']} spaced trials "
            f"(old setup promised < {rec['old_promise_seconds']:.0f} s; "
            f"{rec['within_old_promise']}/{s['n']} within it)"
        )
        if dk := rec.get("docker_kill"):
            out.append(_docker_kill_line(dk))
    if tun := res.get("tuning"):
        for workload, r in tun["results"].items():
            out.append(
                f"pgbench {workload.replace('_', '-')}: PGTune core / stock {fmt_ratio(r['B/A'])}, "
                f"pgsteady / stock {fmt_ratio(r['C/A'])}, pgsteady / PGTune {fmt_ratio(r['C/B'])}"
            )
    if oom := (res.get("tuning") or {}).get("oom_kills"):
        out.append("Worst-case memory workload, OOM kills: " + ", ".join(
            f"{k.replace('_', ' ')} {v}" for k, v in oom.items()))  # fmt: skip
    if bak := res.get("backups"):
        out.append(
            f"Backup of a {bak['database_bytes'] / 1024**3:.2f} GiB database: the tool (dump + "
            f"verify + sha256) takes {fmt_ratio(bak['tool_vs_bare'])} the time of a bare "
            f"pg_dump -Fc ({fmt_s(bak['backup_seconds']['tool']['p50'])} vs "
            f"{fmt_s(bak['backup_seconds']['bare']['p50'])})"
        )
        for key, r in bak["restore_speedup"].items():
            one, many = key.split("/")
            out.append(f"Restore --jobs {many} runs at {fmt_ratio(r)} the speed of --jobs {one}")
        out.append(f"Restore drill: {fmt_s(bak['drill_seconds']['p50'])} (median)")
    if con := res.get("converge"):
        out.append(
            f"Converge: first {fmt_s(con['first_converge']['seconds']['p50'])}, no-op "
            f"{fmt_s(con['noop_converge']['seconds']['p50'])} (medians)"
        )
        if par := con.get("parallel_noop"):
            parts = [f"{n} host(s) {fmt_s(v['seconds']['p50'])}" for n, v in par.items()]
            out.append("No-op converge, one inventory over ssh: " + ", ".join(parts))
    if pit := res.get("pitr"):
        out += pitr_headlines(pit)
    if fo := res.get("failover"):
        out += failover_part.headline_lines(fo)
    if upg := res.get("upgrade"):
        out.append(
            f"Major upgrade {upg['from_version']} -> {upg['to_version']} of a "
            f"{upg['database_bytes'] / 1024**2:.0f} MB database: writes stopped for "
            f"{fmt_s(upg['write_gap_seconds'])} (longest gap between committed writes)"
        )
    return out


def pitr_headlines(pit: Results) -> list[str]:
    """The pgBackRest part's headline figures."""
    tps, p = pit["tps"], pit["pitr"]
    return [
        f"WAL archiving with pgBackRest: pgbench TPC-B-like throughput with archiving / "
        f"without {fmt_ratio(pit['archiving_vs_not'])} ({tps['archiving']['p50']:.0f} vs "
        f"{tps['no_archiving']['p50']:.0f} tps, scale {pit['scale']}, 1 CPU per server)",
        f"pgBackRest restore of a {pit['database_bytes'] / 2**20:.0f} MB database: "
        f"{pit['restore_mb_per_s']:.1f} MB/s ({fmt_s(pit['restore_seconds'])}); restored, "
        f"started and answering in {fmt_s(pit['restore_to_ready_seconds'])}",
        f"PITR to {p['n']} random times: {p['exact']}/{p['n']} exact (every row committed "
        "at or before the target present, none after)",
        *(
            [f"Host lost, restored from the repository: at most "
             f"{fmt_s(loss['max_lost_seconds'])} of acknowledged writes lost over {loss['n']} "
             f"trial(s) (archive_timeout {loss['archive_timeout_seconds']:.0f} s)"]
            if (loss := pit.get("host_loss")) else []
        ),
    ]  # fmt: skip


def _recovery(rec: Results) -> list[str]:
    s = rec["seconds"]
    lines = [
        "## Recovery: kill -9 of the postmaster → first query over TCP",
        "",
        f"{s['n']} trials, each after at least {rec['spacing_seconds']:.0f} s of uptime and a "
        "healthy container (Docker's restart backoff resets only after 10 s of uptime; "
        "back-to-back kills measure that backoff instead: see FINDINGS).",
        "",
    ]
    lines += _table(
        ["", "p50", "p95", "max", "min", "old setup's promise"],
        [["seconds", fmt_s(s["p50"]), fmt_s(s["p95"]), fmt_s(s["max"]), fmt_s(s["min"]),
          f"< {rec['old_promise_seconds']:.0f} s"]],
    )  # fmt: skip
    lines.append(
        f"{rec['within_old_promise']}/{s['n']} trials met the old promise; the slowest took "
        f"{rec['max_vs_promise'] * 100:.1f}% of it. Slow trials (> 5 s, a crash loop "
        f"suspect): {len(rec['slow_trials'])}."
    )
    if dk := rec.get("docker_kill"):
        lines += ["", "### docker kill of the container → first query", ""]
        lines.append(
            "`docker kill` is a manual stop to Docker, so no restart policy applies: "
            "pgsteady's watchdog (`pgsteady-ctl watchdog --watch`, Docker's die events) "
            "starts the container again. Trials are spread over the minute, since the "
            "watchdog's timer fires once a minute."
        )
        lines.append("")
        d = dk["seconds"]
        lines += _table(
            ["", "p50", "p95", "max", "min", "goal (p95)"],
            [["seconds", fmt_s(d["p50"]), fmt_s(d["p95"]), fmt_s(d["max"]), fmt_s(d["min"]),
              f"≤ {dk['goal_p95_seconds']:.0f} s"]],
        )  # fmt: skip
        lines.append(_docker_kill_line(dk) + ".")
    return lines + [""]


def _docker_kill_line(dk: Results) -> str:
    d = dk["seconds"]
    verdict = "met" if dk["meets_goal"] else f"missed by {fmt_s(d['p95'] - dk['goal_p95_seconds'])}"
    return (
        f"Recovery after docker kill of the container: p50 {fmt_s(d['p50'])}, p95 "
        f"{fmt_s(d['p95'])}, max {fmt_s(d['max'])} over {d['n']} trials "
        f"(goal p95 ≤ {dk['goal_p95_seconds']:.0f} s: {verdict})"
    )


def _tuning(tun: Results) -> list[str]:
    pg = tun["pgbench"]
    lines = [
        "## Tuning: pgbench TPS, same container, same data",
        "",
        f"pgbench {pg['where']}; {pg['clients']} clients, {pg['threads']} threads, "
        f"{pg['seconds']} s per run after a {pg['warmup_seconds']} s read-only warm-up; "
        f"{pg['rounds']} round(s) alternated {' '.join(tun['configs'])}. Ratios are paired "
        "within a round; "
        "the spread is min–max over rounds.",
        "",
    ]
    lines += _settings_table(tun["configs"])
    rows = []
    for workload, r in tun["results"].items():
        tps = r["tps"]
        rows.append(
            [workload.replace("_", "-"), *[f"{tps[k]['p50']:.0f}" for k in ("A", "B", "C")],
             fmt_ratio(r["B/A"]), fmt_ratio(r["C/A"]), fmt_ratio(r["C/B"])]
        )  # fmt: skip
    lines += _table(["workload", "A tps", "B tps", "C tps", "B/A", "C/A", "C/B"], rows)
    lines += _tuning_goal(tun)
    restored = "yes" if tun["deployed_conf_restored"] else "NO"
    lines.append(f"The deployed postgresql.conf was put back afterwards: {restored}.")
    lines.append("")
    if mem := tun.get("memory"):
        lines += _memory(mem)
    return lines


def _tuning_goal(tun: Results) -> list[str]:
    """Issue 19's goal, pgsteady >= 1.00x PGTune core per workload: met, or by how much it
    is missed, with D (no pg_stat_statements) to say how much of that the extension is."""
    lines = []
    for workload, r in tun["results"].items():
        ratio = r["C/B"]["median"]
        name = workload.replace("_", "-")
        line = f"Goal pgsteady ≥ 1.00× PGTune core, {name}: {ratio:.2f}×, " + (
            "met." if ratio >= 1 else f"missed by {1 - ratio:.0%}."
        )
        if ratio >= 1 and r["C/B"]["min"] < 1:
            line += (
                " Met on the median only: the rounds' spread crosses 1.00×, so on this "
                "shared machine the difference is within the noise (see Noise above)."
            )
        if "C/D" in r:
            line += (
                f" D (pgsteady without pg_stat_statements) ran {r['tps']['D']['p50']:.0f} tps: "
                f"with / without pg_stat_statements, C/D = {fmt_ratio(r['C/D'])}; without it "
                f"pgsteady runs at D/B = {fmt_ratio(r['D/B'])} of PGTune core."
            )
        lines.append(line)
    return [*lines, ""] if lines else []


def _settings_table(configs: Results) -> list[str]:
    """The settings each configuration ran with, one column per configuration."""
    names = sorted({n for c in configs.values() for n in c["settings"]})
    return _table(
        ["setting", *[f"{k}: {c['name']}" for k, c in configs.items()]],
        [[n, *[c["settings"].get(n, "") for c in configs.values()]] for n in names],
    )


def _memory(mem: Results) -> list[str]:
    """The worst-case memory workload: OOM kills per configuration."""
    w, limit_mib = mem["workload"], mem["limit_bytes"] / 2**20
    lines = [
        "### Worst-case memory workload: OOM kills per configuration",
        "",
        f"Same container ({limit_mib:.0f} MiB limit), same data. Every connection the "
        "application role may open runs one query that sorts, hash-aggregates and "
        "hash-joins (" + w["query_units"] + "); an advisory-lock barrier makes every "
        f"backend hold its peak at the same moment for {w['hold_seconds']:g} s, while "
        f"{w['maintenance']} sorts at maintenance_work_mem. {w['rounds']} round(s), the "
        "configurations alternated. OOM kills: the kernel's `oom_kill` counter of the "
        "container's memory cgroup; signal 9: the postmaster's \"terminated by signal 9\" "
        "lines; resident peak: anonymous + shared memory of the cgroup (page cache left out). "
        "A killed run rarely gets every client to the barrier: the kill comes first.",
        "",
    ]
    configs = mem["configs"]
    lines += _settings_table(configs)
    rows = []
    for label, r in mem["results"].items():
        peak = r.get("peak_of_limit")
        rows.append(
            [
                f"{label}: {configs[label]['name']}"
                + (f" ({r['start_failed']} run(s) did not start)" if r.get("start_failed") else ""),
                str(r["runs"]),
                str(r["runs_killed"]),
                str(r["oom_kills"]),
                str(r["signal9"]),
                f"{r.get('all_at_peak', 0)}/{r['runs']}",
                f"{peak['max']:.0%}" if peak else "–",
            ]
        )
    lines += _table(
        ["configuration", "runs", "runs with a kill", "OOM kills", "signal 9",
         "all clients at peak", "resident peak / limit (max)"],
        rows,
    )  # fmt: skip
    lines.append(
        "Runs: " + "; ".join(
            f"{r['config']} {r.get('clients', '?')} clients, work_mem "
            f"{r.get('work_mem_kb', '?')} kB, {r.get('oom_kills', 0)} kill(s)"
            + (", postmaster restarted by Docker" if r.get("container_restarts") else "")
            for r in mem["runs"] if "start_failed" not in r
        ) + "."
    )  # fmt: skip
    return lines + [""]


def _backups(bak: Results) -> list[str]:
    gib = bak["database_bytes"] / 1024**3
    b = bak["backup_seconds"]
    method = bak.get("compression", {}).get("tool", "gzip")
    sizes = bak["dump_bytes"]
    dump = f"{sizes['tool'] / 1024**2:.0f} MiB"
    if method != "gzip":
        dump += f" ({method}; the bare pg_dump -Fc's, gzip: {sizes['bare'] / 1024**2:.0f} MiB)"
    lines = ["## Backups", "", f"Database: {gib:.2f} GiB (pg_database_size); dump: {dump}.", ""]
    rows = [
        ["tool backup (dump + verify + sha256)", fmt_s(b["tool"]["p50"]),
         f"{fmt_s(b['tool']['min'])}–{fmt_s(b['tool']['max'])}", str(b["tool"]["n"])],
        ["bare pg_dump -Fc via docker exec", fmt_s(b["bare"]["p50"]),
         f"{fmt_s(b['bare']['min'])}–{fmt_s(b['bare']['max'])}", str(b["bare"]["n"])],
    ]  # fmt: skip
    if same := b.get("bare_same"):
        rows.append(
            [f"bare pg_dump -Fc --compress={method} via docker exec", fmt_s(same["p50"]),
             f"{fmt_s(same['min'])}–{fmt_s(same['max'])}", str(same["n"])]
        )  # fmt: skip
    for jobs, s in bak["restore_seconds"].items():
        rows.append(
            [f"restore --jobs {jobs}", fmt_s(s["p50"]),
             f"{fmt_s(s['min'])}–{fmt_s(s['max'])}", str(s["n"])]
        )  # fmt: skip
    d = bak["drill_seconds"]
    rows.append(
        ["drill (restore + row counts)", fmt_s(d["p50"]),
         f"{fmt_s(d['min'])}–{fmt_s(d['max'])}", str(d["n"])]
    )  # fmt: skip
    lines += _table(["", "median", "range", "runs"], rows)
    lines.append(
        "The tool reads the dump's bytes once, as they stream: to the file, into sha256 and "
        "into `pg_restore -f /dev/null` (every block decompressed), with the manifest's row "
        "counts taken meanwhile in the dump's snapshot; then one fsync, `pg_dumpall -g`, the "
        "tier links and retention."
        + (
            f" It compresses with {method} (the server's build has it); the bare line keeps "
            "pg_dump's default gzip, as a hand-written cron line does."
            if method != "gzip"
            else ""
        )
    )
    lines.append("")
    ratio = bak["tool_vs_bare"]["median"]
    verdict = (
        "met"
        if ratio <= BACKUP_GOAL
        else f"missed by {ratio - BACKUP_GOAL:.2f}×: the verification's decompression and the "
        "row counts run beside the dump on the same CPUs, which other work also used"
    )
    lines.append(
        f"Tool / bare dump: {fmt_ratio(bak['tool_vs_bare'])}; goal ≤ {BACKUP_GOAL:.2f}× "
        f"(issue 19): {verdict}."
    )
    if same_ratio := bak.get("tool_vs_bare_same"):
        lines.append(
            f"Tool / bare dump with the same compression ({method}): {fmt_ratio(same_ratio)}: "
            "what the verification, the row counts and the bookkeeping cost by themselves."
        )
    for key, r in bak["restore_speedup"].items():
        one, many = key.split("/")
        lines.append(f"Restore speed-up --jobs {many} over --jobs {one}: {fmt_ratio(r)}.")
    if any(r["median"] < 1 for r in bak["restore_speedup"].values()):
        lines.append(
            "More jobs were slower here: pg_restore runs one job per table or index, and "
            "pgbench's data is almost all one table (pgbench_accounts) and its primary key, "
            "which load one after the other, so the extra jobs have little to overlap and "
            "share the container's CPUs."
        )
    return lines + [""]


def _pooler(poo: Results) -> list[str]:
    def ms(s: Results) -> str:
        return f"{s['p50']:.2f} ms ({s['min']:.2f}–{s['max']:.2f}, {s['n']} runs)"

    lat, con, tps = (
        poo["select_only_latency_ms"],
        poo["connect_ms"],
        poo["connect_per_transaction_tps"],
    )
    lines = [
        "## Connection pooling (PgBouncer)",
        "",
        "One stack with the pooler on (the default), both paths over TLS with verify-full as "
        "the app role; the rounds alternate direct and pooled.",
        "",
    ]
    rows = [
        ["`pgbench -S`, 8 clients held: latency", ms(lat["direct"]), ms(lat["pooler"])],
        ["`pgbench -S -C` (a connection per transaction): connect time",
         ms(con["direct"]), ms(con["pooler"])],
        ["`pgbench -S -C`: transactions/s", f"{tps['direct']['p50']:.0f}",
         f"{tps['pooler']['p50']:.0f}"],
    ]  # fmt: skip
    lines += _table(["", "direct", "through PgBouncer"], rows)
    lines.append(
        f"Pooled / direct latency: {fmt_ratio(poo['select_only_latency_ratio_pooler_to_direct'])}"
        f"; added latency (medians): {poo['added_latency_ms_p50']:+.3f} ms."
    )
    lines.append(
        f"{poo['pooler_clients_served']} clients held at once through the pooler, each running "
        f"queries: {poo['errors']} errors, at most {poo['peak_server_connections']} server "
        f"connections (default_pool_size {poo['default_pool_size']}), in {poo['seconds']:.1f} s."
    )
    return lines + [""]


def _upgrade(upg: Results) -> list[str]:
    phases = upg["phases_seconds"]
    rows = [
        ["verified backup of the old major (pgsteady-backup)", fmt_s(phases["backup"])],
        ["restore into the new volume by the new image", fmt_s(phases["restore"])],
        ["row counts checked, ANALYZE (in stages)", fmt_s(phases["verify_analyze"])],
        ["stack started on the new volume, seen healthy", fmt_s(phases["start"])],
        [
            "stack stopped → seen healthy (pgsteady-ctl's clock)",
            fmt_s(upg["ctl_write_downtime_seconds"]),
        ],
        ["longest gap between committed writes (app view)", fmt_s(upg["write_gap_seconds"])],
        ["the whole upgrade deploy (`make upgrade-major`)", fmt_s(upg["deploy_seconds"])],
    ]
    load = upg.get("load", {})
    return [
        "## Major version upgrade",
        "",
        f"A stack on Postgres {upg['from_version']} (1 CPU, 1 GB) holding {upg['rows']:,} rows "
        f"({upg['database_bytes'] / 1024**2:.0f} MB) upgraded to {upg['to_version']} by the "
        "deploy (dump by the old image, restore by the new one into a new volume; "
        "docs/operations.md) while a writer inserted every 20 ms over TLS; "
        f"{upg['writes_committed']} writes committed, none lost.",
        "",
        *_table(["phase", "seconds"], rows),
        "pgsteady-ctl's clock also counts stopping the stack and starting the old major on "
        "no network, and ends when Docker's health check (every 10 s here) reports the new "
        "server healthy; the app's writes resume as soon as it accepts them.",
        "",
        f"Load average {' / '.join(map(str, load.get('start', [])))} at the upgrade's start, "
        f"{' / '.join(map(str, load.get('end', [])))} at its end (1/5/15 min): the machine is "
        "shared. The downtime grows with the data (dump, restore and index builds).",
        "",
    ]


def _ssh_goal(parallel: dict[str, Any]) -> list[str]:
    """Issue 19's goal for a no-op converge over SSH, judged on the largest inventory, with
    the control machine's CPU per host projected to a fleet."""
    if not parallel:
        return []
    n = max(parallel, key=int)
    per_host, cpu = parallel[n]["per_host_seconds"], parallel[n].get("per_host_cpu_seconds")
    verdict = "met" if per_host <= SSH_NOOP_GOAL else f"missed by {fmt_s(per_host - SSH_NOOP_GOAL)}"
    line = (
        f"Goal ≤ {SSH_NOOP_GOAL:.0f} s per host for a no-op converge over SSH (issue 19): "
        f"{verdict} ({fmt_s(per_host)} per host with {n} host{'' if n == '1' else 's'} in one "
        "inventory)."
    )
    if cpu:
        line += (
            f" The control machine spent {fmt_s(cpu)} of CPU per host: one of its CPUs "
            f"keeps up with about {60 / cpu:.0f} hosts' no-op converges a minute."
        )
    return [line, ""]


def _converge(con: Results) -> list[str]:
    first, noop = con["first_converge"], con["noop_converge"]
    lines = ["## Converge", ""]
    lines += _table(
        ["", "median", "range", "runs", "changed operations"],
        [
            ["first converge (image present)", fmt_s(first["seconds"]["p50"]),
             f"{fmt_s(first['seconds']['min'])}–{fmt_s(first['seconds']['max'])}",
             str(first["seconds"]["n"]), ", ".join(str(r["changed"]) for r in first["runs"])],
            ["no-op re-converge", fmt_s(noop["seconds"]["p50"]),
             f"{fmt_s(noop['seconds']['min'])}–{fmt_s(noop['seconds']['max'])}",
             str(noop["seconds"]["n"]), ", ".join(str(r["changed"]) for r in noop["runs"])],
        ],
    )  # fmt: skip
    if first.get("image_present") is False:
        lines += ["The image was not on the machine yet: the first converge built it.", ""]
    changed = sorted({op for r in noop["runs"] for op in r["changed_operations"]})
    if changed:
        lines += [f"Operations a re-converge still changed: {', '.join(changed)}.", ""]
    if par := con.get("parallel_first_converge"):
        lines += [
            f"First converge of {par['hosts']} more hosts in one inventory (over ssh, in "
            f"parallel): {fmt_s(par['seconds'])}.",
            "",
        ]
    rows = []
    serial, parallel = con.get("serial_local_noop", {}), con.get("parallel_noop", {})
    for n in serial:
        p = parallel.get(n)
        rows.append(
            [n, fmt_s(serial[n]["p50"]),
             fmt_s(p["seconds"]["p50"]) if p else "not measured",
             fmt_s(p["per_host_seconds"]) if p else "",
             fmt_s(p["per_host_cpu_seconds"]) if p and "per_host_cpu_seconds" in p else "",
             ", ".join(map(str, p["changed"])) if p else ""]
        )  # fmt: skip
    lines.append("No-op converge of N stacks on this machine:")
    lines.append("")
    lines += _table(
        ["hosts", "N separate @local runs, serial", "one inventory over ssh",
         "per host", "control-machine CPU per host", "changed"],
        rows,
    )  # fmt: skip
    lines += _ssh_goal(parallel)
    ver = con.get("verify", {})
    if not ver.get("available"):
        lines.append(f"make verify: not measured ({ver.get('note', 'not run')}).")
    else:
        for key, v in ver.items():
            if key != "available":
                lines.append(f"make verify ({key}): {fmt_s(v['seconds'])}, exit {v['returncode']}.")
    return lines + [""]


def _pitr(pit: Results, config: Results) -> list[str]:
    tps, p, mb = pit["tps"], pit["pitr"], pit["database_bytes"] / 2**20
    lines = [
        "## pgBackRest: cost of WAL archiving, restore rate, PITR correctness",
        "",
        f"{pit['pgbackrest']}, Postgres {pit['postgres']} on the Debian-built image "
        f"(`{pit['image']}`), pgsteady's rendered pgbackrest.conf (async archive-push, zstd, "
        f"encrypted posix repository on the same disk), `archive_timeout = "
        f"{pit['archive_settings'].get('archive_timeout', '?')}`. Two servers with the same "
        f"data (pgbench scale {pit['scale']}, {mb:.0f} MB) and settings, 1 CPU and 1 GB each; "
        "one archives, the other runs with `archive_mode = off`.",
        "",
    ]
    if config.get("quick"):
        full = BenchConfig()
        lines += [
            f"A `--quick` run (small sizes); the full `make bench` runs scale "
            f"{full.pitr_scale}, {full.pitr_rounds} rounds of {full.pitr_seconds} s.",
            "",
        ]
    spread = {k: f"{tps[k]['min']:.0f}–{tps[k]['max']:.0f}" for k in tps}
    lines += _table(
        ["pgbench TPC-B-like", "with archiving", "without", "with / without, paired per round"],
        [[f"tps, median (range), {pit['rounds']} × {pit['seconds']} s alternated, "
          f"{pit['clients']} clients",
          f"{tps['archiving']['p50']:.0f} ({spread['archiving']})",
          f"{tps['no_archiving']['p50']:.0f} ({spread['no_archiving']})",
          fmt_ratio(pit["archiving_vs_not"])]],
    )  # fmt: skip
    if order := pit.get("order"):
        lines += [f"Order: {order}.", ""]
    lines += _table(
        ["restore of the bench database", ""],
        [["full backup", fmt_s(pit["backup_seconds"])],
         ["`pgbackrest restore` into an empty volume",
          f"{fmt_s(pit['restore_seconds'])} ({pit['restore_mb_per_s']:.1f} MB/s)"],
         ["restore + start + promote until the pgbench rows are counted",
          f"{fmt_s(pit['restore_to_ready_seconds'])} "
          f"({pit['restored_accounts']} pgbench_accounts rows, as in the source)"]],
    )  # fmt: skip
    lines += [
        f"PITR: {p['markers']} marker rows committed one per transaction, "
        f"{p['marker_gap_seconds']} s apart, while {p['background_load']} wrote beside them; "
        f"{p['n']} targets at random times between two markers (seed {p['seed']}), each "
        "restored into an empty volume, started and promoted.",
        "",
    ]
    lines += _table(
        ["target (UTC)", "markers committed by then", "markers found", "exact",
         "restore + replay + start"],
        [[t["target"], str(t["expected"]), str(len(t["found"])),
          "yes" if t["exact"] else "NO", fmt_s(t["seconds"])] for t in p["targets"]],
    )  # fmt: skip
    lines.append(f"{p['exact']}/{p['n']} targets exact.")
    return lines + [""] + _host_loss(pit.get("host_loss"))


def _host_loss(loss: Results | None) -> list[str]:
    """The host-loss trials of the pitr part (bench.pitr_loss), when it ran them."""
    if not loss:
        return []
    lines = [
        f"Host loss: a writer commits a numbered row every {loss['writer_gap_seconds']} s; "
        "after a random time the server's container is killed and removed with its volume "
        "(data and archive-push spool gone, the repository kept), the newest backup and the "
        "archived WAL restored into an empty volume and started (replay to the end of the "
        "archive, promotion). Lost = from the newest restored row to the last row the "
        "writer saw acknowledged; every row up to the newest restored one was present. "
        "The restored server checkpoints as soon as it is out of recovery, as pgsteady-ctl "
        "does after every start (on a host: at wait-healthy or the watchdog's next check, "
        "within a minute), and is the next trial's source. `archive_timeout` = "
        f"{loss['archive_timeout_seconds']:.0f} s bounds the loss, plus the push's latency.",
        "",
    ]
    lines += _table(
        ["trial", "written for", "rows acknowledged", "rows restored", "lost",
         "restore + replay + start"],
        [[str(k), fmt_s(t["written_seconds"]), str(t["acknowledged"]), str(t["restored"]),
          fmt_s(t["lost_seconds"]), fmt_s(t["restore_to_ready_seconds"])]
         for k, t in enumerate(loss["trials"], 1)],
    )  # fmt: skip
    lines.append(
        f"Worst loss over {loss['n']} trial(s): {fmt_s(loss['max_lost_seconds'])} "
        f"(median {fmt_s(loss['lost_seconds']['p50'])})."
    )
    return lines + [""]


def fmt_figure(key: str, value: Any) -> str:
    """A headline value: seconds, a ratio or a count, as the key's suffix says."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if key.endswith("_s"):
        return fmt_s(value)
    if key.startswith(("oom_kills", "pooler_clients")):
        return f"{value:.0f}"
    return f"{value:.2f}×"


def headline_table(res: Results) -> list[str]:
    """The ``headlines`` object of benchmarks.json as a table: value and where it comes from."""
    rows = []
    for key, what, _, _ in figures.FIGURES:
        value = figures.compute(res)[key]
        part = figures.PART.get(key)
        if value is None:
            source = f"null: {figures.why_missing(res, key)}"
        elif part and part in res.get("carried", {}):
            source = f"{part}, carried from {res['carried'][part].get('started', '?')}"
        else:
            source = f"{part}, this run"
        rows.append([f"`{key}`", "null" if value is None else fmt_figure(key, value), what,
                     source])  # fmt: skip
    return [
        "## Headline figures",
        "",
        "The `headlines` object of benchmarks.json (issue 19), refreshed by every run from the "
        "parts' figures; a part this run did not measure contributes its carried figure.",
        "",
        *_table(["key", "value", "figure", "measured by"], rows),
    ]


def provenance(res: Results, part: str) -> list[str]:
    """For a section kept from an earlier run: when and how it was measured."""
    run = res.get("carried", {}).get(part)
    if not run:
        return []
    load = " / ".join(map(str, run.get("load", {}).get("start", []))) or "?"
    argv = f"python -m bench{' ' + run['argv'] if run.get('argv') else ''}"
    then, now = run.get("machine", {}), res.get("machine", {})
    changed = [f"{k.replace('_', ' ')} {then[k]}" for k in sorted(then)
               if k != "disk_free_gib" and then[k] != now.get(k)]  # fmt: skip
    machine = f"; the machine then: {', '.join(changed)}" if changed else ""
    return [
        f"Measured by an earlier run (`{argv}`, {run.get('started', '?')}, load {load} at "
        f"its start{machine}); not re-run on {res['started']}.",
        "",
    ]


def render(res: Results) -> str:
    """The whole of docs/benchmarks.md."""
    m, v = res["machine"], res["versions"]
    lines = [
        "# pgsteady benchmarks",
        "",
        f"Written by `make bench` (`python -m bench{' ' + res['argv'] if res['argv'] else ''}`) "
        f"on {res['started']}; the "
        f"run took {res['total_seconds'] / 60:.1f} minutes. Re-run it to refresh this page.",
        *(
            [
                f"Parts this run did not measure keep their earlier figures and say when they "
                f"were measured: {', '.join(res['carried'])}."
            ]
            if res.get("carried")
            else []
        ),
        "",
        *headline_table(res),
        "**Noise.** The machine is shared: other work ran during the run (load average "
        f"{' / '.join(map(str, res['load']['start']))} at the start, "
        f"{' / '.join(map(str, res['load']['end']))} at the end, 1/5/15 min, on "
        f"{m['cpus']} CPUs). Comparisons are therefore alternated runs in one session, "
        "reported as ratios with their spread; absolute numbers are this machine's only.",
        "",
        "## Headlines",
        "",
        *[f"- {h}" for h in headlines(res)],
        "",
        *[
            f"Retried once after a failure (e.g. dockerd restarted by other work): {name}: "
            f"{msg.splitlines()[0]}\n"
            for name, msg in res.get("retried", {}).items()
        ],
        "## Machine and versions",
        "",
    ]
    rows = [[k.replace("_", " "), str(val)] for k, val in {**m, **v}.items()]
    lines += _table(["", ""], rows)
    data = next((p for p in ("recovery", "tuning", "backups") if p in res), None)
    if data:
        dcfg = part_config(res, data)
        lines += [
            f"Stacks: converged by the real pyinfra CLI with operator defaults; the data stack "
            f"runs with a {dcfg['memory_limit']} memory limit and {dcfg['cpus']} CPUs and "
            f"holds pgbench scale {dcfg['scale']}.",
            "",
        ]
    for key, part in (
        ("recovery", _recovery),
        ("tuning", _tuning),
        ("backups", _backups),
        ("converge", _converge),
        ("pitr", lambda r: _pitr(r, part_config(res, "pitr"))),
        ("host_reboot", host_reboot_part.section),
        ("pooler", _pooler),
        ("failover", failover_part.section),
        ("failover_lab", failover_lab_part.section),
        ("upgrade", _upgrade),
    ):
        if key in res:
            body = part(res[key])
            lines += body[:2] + provenance(res, key) + body[2:]
        elif key in res.get("errors", {}):
            lines += [f"## {key.title()}", "", *provenance(res, key)]
            lines += [f"Failed: {res['errors'][key]}", ""]
    lines += ["## Method notes", "", *[f"- {n}" for n in METHOD_NOTES], ""]
    cmds = commands(part_config(res, data or "converge"), res.get("pitr"))
    lines += ["## Commands", "", *[f"    {c}" for c in cmds], ""]
    lines += [
        "## Reproduce",
        "",
        "    make deploy            # once: venv, Docker, image",
        "    make bench             # full run, about 3 hours on 2 CPUs (failover: 80 min, "
        "lab: 50 min)",
        '    make bench BENCH_ARGS="--failover-trials 3 --failover-lab-minutes 18"  # every '
        "part with fewer failover trials, about 95 minutes",
        '    make bench BENCH_ARGS="--quick"                 # a few minutes',
        '    make bench BENCH_ARGS="--only recovery,tuning"  # some parts; the others '
        "keep their figures",
        '    make bench BENCH_ARGS="--only pitr"             # pgBackRest only, about 9 minutes',
        '    make bench BENCH_ARGS="--only failover"         # the process cluster\'s failover '
        "trials, about 75 minutes",
        "",
    ]
    return "\n".join(lines)
