"""``make verify`` on a backup host: its pgBackRest server runs, and every database host
that names it has a stanza with a backup in its repository.

A backup host runs no Postgres, so the testinfra suite does not apply; these checks run
over the same SSH runner and report like the suite's (group ``repository``).
"""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Callable, Iterable

from pgsteady.backup.repository_host import container_name, verdict_file
from pgsteady.inventory import InventoryHost
from pgsteady.settings import PgBackRestRepo, Settings, defaults
from pgsteady.units import human_duration
from pgsteady.verify import backup_deadline

Run = Callable[[str], str]


def stanzas_served(backup: str, hosts: Iterable[InventoryHost]) -> list[tuple[str, str, str]]:
    """(database host, stanza, verify schedule) of every host whose pgbackrest_repos name
    ``backup`` (settings a host does not give take the validator's default); the members
    of a cluster share one stanza and count once, as ``cluster <name>``."""
    base = defaults()
    out = []
    for h in hosts:
        data = {**base, **{k: v for k, v in h.data.items() if v is not None}}
        if h.is_backup_host or not data["pgbackrest_enabled"]:
            continue
        for raw in data["pgbackrest_repos"] or []:
            try:
                repo = PgBackRestRepo.model_validate(raw)
            except ValueError:
                continue
            cluster = data.get("postgres_cluster_name")
            entry = (f"cluster {cluster}" if cluster else h.name, str(data["pgbackrest_stanza"]),
                     str(data["pgbackrest_verify_schedule"]))  # fmt: skip
            if repo.kind == "host" and repo.host == backup and entry not in out:
                out.append(entry)
    return out


def verdict_problem(text: str | None, schedule: str, now: float) -> str | None:
    """Why the stanza's last judged verify does not vouch for the repository (None: it
    does): missing, not ok, or older than its schedule allows."""
    if not text:
        return "never verified (the deploy verifies after the first full backup)"
    try:
        verdict = json.loads(text)
        finished, ok = float(verdict["finished"]), verdict["ok"]
    except (ValueError, KeyError, TypeError):
        return "its verdict file cannot be read"
    if ok is not True:
        return "the last pgbackrest verify found corrupt or missing files"
    limit = backup_deadline(schedule)
    if limit is not None and now - finished > limit.total_seconds():
        return f"the last verify is {human_duration(now - finished)} old (schedule {schedule!r})"
    return None


def stanza_problem(info_json: str, stanza: str) -> str | None:
    """Why ``pgbackrest info --output=json`` shows the stanza unusable (None: it has a
    backup and status ok)."""
    try:
        doc = json.loads(info_json) if info_json.strip() else None
    except ValueError:
        doc = None
    if doc is None:
        return "pgbackrest info gave no answer (the server's container or its config)"
    for entry in doc if isinstance(doc, list) else []:
        if entry.get("name") != stanza:
            continue
        status = entry.get("status") or {}
        if status.get("code") != 0:
            return f"status {status.get('code')}: {status.get('message', '?')}"
        if not entry.get("backup"):
            return "no backup in the repository yet"
        return None
    return "the stanza is not in the repository"


def check(h: InventoryHost, s: Settings, hosts: list[InventoryHost], run: Run) -> list[tuple]:
    """(name, ok, what, fix) of each check of backup host ``h``: the server, each stanza,
    and each stanza's last judged verify (missing, failed or stale fails)."""
    container = container_name(s)
    deploy = "make deploy INVENTORY=<inventory>"
    health = run(
        f"docker inspect -f '{{{{.State.Health.Status}}}}' {shlex.quote(container)} 2>&1"
    ).strip()
    out: list[tuple] = [
        (
            "server",
            health == "healthy",
            f"the pgBackRest repository server {container} is {health or 'missing'}",
            deploy,
        )
    ]
    served = stanzas_served(h.name, hosts)
    if len(served) > 1:
        out.append(
            (
                "one_database_host",
                False,
                f"it keeps the repository of {', '.join(db for db, _s, _v in served)}: each "
                "could reach the others' backups through pgBackRest's server",
                "give each database host its own backup host in pgbackrest_repos, then "
                "make deploy INVENTORY=<inventory>",
            )
        )
    for db, stanza, schedule in served:
        cmd = (
            f"docker exec -u {s.postgres_uid} {shlex.quote(container)} pgbackrest "
            f"--stanza={shlex.quote(stanza)} info --output=json 2>/dev/null"
        )
        problem = stanza_problem(run(cmd), stanza)
        out.append(
            (
                f"stanza[{stanza}]",
                problem is None,
                f"{db}'s stanza {stanza!r}: {problem}",
                f"make deploy INVENTORY=<inventory> (a first full backup is taken on the "
                f"backup host); or: docker exec -u {s.postgres_uid} {container} pgbackrest "
                f"--stanza={stanza} backup --type=full",
            )
        )
        verdict = run(f"cat {shlex.quote(verdict_file(s, stanza))} 2>/dev/null")
        why = verdict_problem(verdict, schedule, time.time())
        unit = f"pgsteady-repository-verify-{stanza}.service"
        out.append(
            (
                f"verify[{stanza}]",
                why is None,
                f"{db}'s stanza {stanza!r} in this repository: {why}",
                f"journalctl -u {shlex.quote(unit)} -n 40; after a corrupt file, a new full "
                f"backup: docker exec -u {s.postgres_uid} {container} pgbackrest "
                f"--stanza={stanza} backup --type=full; then systemctl start {unit}",
            )
        )
    return out
