"""Gather raw facts from hosts: one shell script per host, one round trip each.

The script runs over the inventory host's ``command_prefix()`` (ssh, or nothing for
``@local``) as ``sh -s`` with the script on stdin. It prints sections delimited by
marker lines; :func:`parse_sections` splits them into ``{name: {rc, out, err}}``.
Interpretation is left to :mod:`pgsteady.monitor.model`.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pgsteady.ca_store import ca_dir
from pgsteady.cluster import adopt
from pgsteady.cluster import status as cluster_status
from pgsteady.inventory import InventoryHost, load_inventory
from pgsteady.monitor import archiving, performance
from pgsteady.postgres.session import SUPERUSER_PGOPTIONS
from pgsteady.settings import HostFacts, Settings, SettingsError, build_settings
from pgsteady.stack import hostfacts, pooler_status
from pgsteady.stack.layout import DATA_MOUNT

#: Seconds one host's whole collection may take (ssh included).
DEFAULT_TIMEOUT = 30.0
#: ssh ConnectTimeout unless the inventory sets ``ssh_connect_timeout``.
DEFAULT_CONNECT_TIMEOUT = 5
#: Seconds any single docker/psql call inside the script may take.
STEP_TIMEOUT = 15
#: Container log lines scanned for ERROR/FATAL/PANIC, and matches kept.
LOG_SCAN_LINES = 2000
LOG_MATCHES = 20
#: Before the round trip the facts are unknown (0 skips the facts' cross-checks); the
#: values the script needs (container, app_dir, backup_dir) do not depend on facts.
UNKNOWN_FACTS = HostFacts(ram_mb=0, cpus=0)
#: Sections that read HostFacts with pgsteady.stack.hostfacts' very commands.
FACT_COMMANDS = {
    "fact_memory": hostfacts.MEMORY_COMMAND,
    "fact_cpus": hostfacts.CPUS_COMMAND,
    "fact_systemd": hostfacts.SYSTEMD_COMMAND,
}

#: The query runs as the superuser: a statement timeout, and a search_path that never
#: resolves a function or operator someone else created (pg_catalog first, no public).
PGOPTIONS_SAFE = f"-c statement_timeout=5000 {SUPERUSER_PGOPTIONS}"

SECTION = "@@pgsteady-section"
STDERR = "@@pgsteady-stderr"
END = "@@pgsteady-end@@"
_MARKER = re.compile(r"^@@pgsteady-(section|stderr) (\S+)(?: (\d+))?@@$")

SQL = """
SELECT json_build_object(
  'version', current_setting('server_version'),
  'version_num', current_setting('server_version_num')::int,
  'started_at', pg_postmaster_start_time(),
  'uptime_seconds', extract(epoch FROM now() - pg_postmaster_start_time()),
  'in_recovery', pg_is_in_recovery(),
  'max_connections', current_setting('max_connections')::int,
  'reserved_connections', current_setting('superuser_reserved_connections')::int,
  'connections', (
    SELECT json_build_object(
      'used', count(*),
      'active', count(*) FILTER (WHERE state = 'active'),
      'idle', count(*) FILTER (WHERE state = 'idle'),
      'idle_in_transaction', count(*) FILTER (WHERE state LIKE 'idle in transaction%'))
    FROM pg_stat_activity
    WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()),
  'databases', (
    SELECT json_object_agg(datname, pg_database_size(oid) ORDER BY datname)
    FROM pg_database WHERE datallowconn AND NOT datistemplate),
  'blocks', (
    SELECT json_build_object('hit', coalesce(sum(blks_hit), 0),
                             'read', coalesce(sum(blks_read), 0))
    FROM pg_stat_database),
  'longest_transaction', (
    SELECT json_build_object(
      'seconds', extract(epoch FROM now() - xact_start), 'pid', pid, 'state', state,
      'database', datname, 'user', usename, 'query', left(query, 200))
    FROM pg_stat_activity
    WHERE xact_start IS NOT NULL AND pid <> pg_backend_pid()
      AND backend_type = 'client backend'
    ORDER BY xact_start LIMIT 1),
  'waiting_locks', (SELECT count(*) FROM pg_locks WHERE NOT granted),
  'longest_lock_wait_seconds', (
    SELECT extract(epoch FROM max(now() - query_start))
    FROM pg_stat_activity WHERE wait_event_type = 'Lock')
)
"""

INSPECT_FORMAT = (
    '{"state":{{json .State}},"restart_count":{{.RestartCount}},'
    '"image":{{json .Config.Image}},"mounts":{{json .Mounts}}}'
)

_SCRIPT_BODY = r"""
if command -v timeout >/dev/null 2>&1; then T="timeout $STEP_TIMEOUT"; else T=""; fi
err=$(mktemp 2>/dev/null || echo "/tmp/pgsteady-monitor.$$")
trap 'rm -f "$err"' EXIT
d() { $T docker "$@"; }
section() {
    name=$1; shift
    printf '\n@@pgsteady-section %s@@\n' "$name"
    "$@" 2>"$err"
    rc=$?
    printf '\n@@pgsteady-stderr %s %s@@\n' "$name" "$rc"
    head -c 4000 "$err"
}
host_info() {
    echo "now $(date +%s)"
    echo "hostname $(hostname 2>/dev/null)"
    echo "load $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null)"
    if [ -e "$APP_DIR/.stopped" ]; then echo "stopped_marker yes"; else echo "stopped_marker no"; fi
    w="$APP_DIR/state/watchdog.json"
    if grep -q '^ *"crash_loop": true' "$w" 2>/dev/null; then
        echo "watchdog_crash_loop yes"
        echo "watchdog_reason $(sed -n 's/^ *"reason": "\(.*\)",$/\1/p' "$w" | head -n 1)"
    fi
}
inspect() { d inspect --format "$INSPECT_FORMAT" "$C"; }
sql() {
    d exec -e PGCONNECT_TIMEOUT=5 -e "PGOPTIONS=$PGOPTIONS_SAFE" -u postgres "$C" \
        psql -XAtq -v ON_ERROR_STOP=1 -d postgres -c "$SQL"
}
df_of() {
    p=$1
    while [ ! -e "$p" ]; do p=$(dirname "$p"); done
    echo "path $p"
    df -Pk "$p" | tail -n 1
}
data_df() {
    src=$(d inspect --format "$MOUNT_FORMAT" "$C") || return 1
    if [ -n "$src" ] && [ -d "$src" ]; then
        df_of "$src"
    else
        echo "path $DATA_MOUNT (in the container)"
        d exec -u postgres "$C" df -Pk "$DATA_MOUNT" | tail -n 1
    fi
}
backup_status() { cat "$BACKUP_DIR/status.json"; }
logs() {
    d logs --tail "$LOG_SCAN_LINES" "$C" 2>&1 | grep -E '(ERROR|FATAL|PANIC):' \
        | tail -n "$LOG_MATCHES"
}
section host host_info
section fact_memory sh -c "$FACT_MEMORY"
section fact_cpus sh -c "$FACT_CPUS"
section fact_systemd sh -c "$FACT_SYSTEMD"
section inspect inspect
section sql sql
section data_df data_df
section backup_df df_of "$BACKUP_DIR"
section backup_status backup_status
section logs logs
"""
_SCRIPT_END = """
printf '\n@@pgsteady-end@@\n'
"""


@dataclass(frozen=True)
class Target:
    """One inventory host with its Settings, or the reason it has none."""

    host: InventoryHost
    settings: Settings | None
    error: str | None = None
    #: The seed make cluster-adopt marked for this host's cluster (deploy machine), or "".
    adopt_seed: str = ""

    @property
    def name(self) -> str:
        return self.host.name


def read_inventory(inventory: str | Path) -> list[InventoryHost]:
    """The inventory's database hosts (read in a child process: see load_inventory);
    backup hosts run no Postgres: `make verify` checks them."""
    return [h for h in load_inventory(inventory) if not h.is_backup_host]


def load_targets(inventory: str | Path) -> list[Target]:
    """Every host of ``inventory`` with Settings built from its data (the single truth),
    and a cluster member's adoption marker from the inventory's CA directory."""
    targets = []
    path = Path(inventory).resolve()
    for host in read_inventory(inventory):
        try:
            settings = build_settings(host.data, UNKNOWN_FACTS, host=host.name)
            name = settings.postgres_cluster_name
            ca = ca_dir(settings.postgres_tls_ca_dir, path)[0]
            seed = adopt.marked_seed(ca, name) if name else ""
            targets.append(Target(host, settings, adopt_seed=seed))
        except SettingsError as exc:
            targets.append(Target(host, None, str(exc)))
    return targets


def collect_script(s: Settings, address: str = "") -> str:
    """The POSIX shell script that prints every raw section for the host of ``s``
    (``address``: the host's own, where a cluster member's REST API listens)."""
    mount_format = (
        "{{range .Mounts}}{{if eq .Destination " + f'"{DATA_MOUNT}"' + "}}{{.Source}}{{end}}{{end}}"
    )
    values = {
        "C": s.container_name,
        "APP_DIR": s.app_dir,
        "BACKUP_DIR": s.backup_path,
        "DATA_MOUNT": DATA_MOUNT,
        "SQL": SQL.strip(),
        "PGOPTIONS_SAFE": PGOPTIONS_SAFE,
        "INSPECT_FORMAT": INSPECT_FORMAT,
        "MOUNT_FORMAT": mount_format,
        "STEP_TIMEOUT": str(STEP_TIMEOUT),
        "LOG_SCAN_LINES": str(LOG_SCAN_LINES),
        "LOG_MATCHES": str(LOG_MATCHES),
        **{name.upper(): command for name, command in FACT_COMMANDS.items()},
        **archiving.script_values(s),
        **performance.script_values(s),
        **pooler_status.script_values(s),
        **cluster_status.script_values(s, address),
    }
    head = "\n".join(f"{k}={shlex.quote(v)}" for k, v in values.items())
    body = (
        f"{_SCRIPT_BODY}{performance.SCRIPT}{archiving.SCRIPT}{pooler_status.SCRIPT}"
        f"{cluster_status.SCRIPT}"
    )
    return f"set +e\n{head}\n{body}{_SCRIPT_END}"


def parse_sections(text: str) -> dict[str, dict[str, Any]]:
    """Split the script's output into ``{name: {"rc": int, "out": str, "err": str}}``."""
    sections: dict[str, dict[str, Any]] = {}
    current: dict[str, Any] | None = None
    key = "out"
    for line in text.splitlines():
        if line == END:
            break
        m = _MARKER.match(line)
        if m and m.group(1) == "section":
            current = sections.setdefault(m.group(2), {"rc": None, "out": "", "err": ""})
            key = "out"
        elif m and current is not None:
            current["rc"] = int(m.group(3) or 0)
            key = "err"
        elif current is not None:
            current[key] += line + "\n"
    for section in sections.values():
        section["out"] = section["out"].strip("\n")
        section["err"] = section["err"].strip()
    return sections


def connect_timeout(host: InventoryHost, timeout: float) -> int:
    """ssh ConnectTimeout: the inventory's ``ssh_connect_timeout``, bounded by ``timeout``."""
    wanted = host.data.get("ssh_connect_timeout") or DEFAULT_CONNECT_TIMEOUT
    return max(1, min(int(wanted), int(timeout)))


def host_argv(host: InventoryHost, argv: list[str], timeout: float = DEFAULT_TIMEOUT) -> list[str]:
    """The argv that runs ``argv`` on ``host``: as is locally, else through ssh (quoted)."""
    prefix = host.command_prefix()
    if not prefix:
        return list(argv)
    if prefix[0] == "ssh":
        prefix = [
            "ssh", "-T",
            "-o", f"ConnectTimeout={connect_timeout(host, timeout)}",
            "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=2",
            *prefix[1:],
        ]  # fmt: skip
    return [*prefix, shlex.join(argv)]


def run_on_host(
    host: InventoryHost, argv: list[str], timeout: float, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` on ``host``; a timeout or a missing program becomes exit code 124/127."""
    cmd = host_argv(host, argv, timeout)
    try:
        return subprocess.run(
            cmd,
            input=stdin,
            stdin=None if stdin is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(cmd, 124, "", f"timed out after {timeout:g} s")
    except OSError as exc:
        return subprocess.CompletedProcess(cmd, 127, "", str(exc))


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def collect(target: Target, timeout: float = DEFAULT_TIMEOUT) -> dict[str, Any]:
    """Raw facts of one host: ``{host, error, seconds, sections}`` (error = unreachable)."""
    started = time.monotonic()
    raw: dict[str, Any] = {"host": target.name, "error": None, "seconds": 0.0, "sections": {}}
    raw["adopt_seed"] = target.adopt_seed
    if target.settings is None:
        raw["settings_error"] = target.error
        return raw
    proc = run_on_host(
        target.host,
        ["sh", "-s"],
        timeout,
        stdin=collect_script(target.settings, target.host.ssh_hostname),
    )
    raw["seconds"] = round(time.monotonic() - started, 3)
    if END not in proc.stdout:
        reason = _last_line(proc.stderr) or f"exit code {proc.returncode}"
        if proc.returncode == 255 and target.host.command_prefix()[:1] == ["ssh"]:
            reason = f"ssh failed: {reason}"
        raw["error"] = reason
    raw["sections"] = parse_sections(proc.stdout)
    if raw["error"] is None:
        _check_facts(target, raw)
    return raw


def _check_facts(target: Target, raw: dict[str, Any]) -> None:
    """Record the host's facts and whether its Settings hold with them (as the deploy sees)."""
    outputs = {
        cmd: raw["sections"].get(name, {}).get("out", "") for name, cmd in FACT_COMMANDS.items()
    }
    facts = hostfacts.read_host_facts(lambda command: outputs[command])
    raw["facts"] = {"ram_mb": facts.ram_mb, "cpus": facts.cpus, "has_systemd": facts.has_systemd}
    try:
        build_settings(target.host.data, facts, host=target.name)
    except SettingsError as exc:
        raw["facts_error"] = "; ".join(exc.errors)


def collect_all(targets: list[Target], timeout: float = DEFAULT_TIMEOUT) -> list[dict[str, Any]]:
    """:func:`collect` on every target in parallel, in inventory order."""
    if not targets:
        return []
    with ThreadPoolExecutor(max_workers=min(16, len(targets))) as pool:
        return list(pool.map(lambda t: collect(t, timeout), targets))
