"""``make verify`` on a backup host: its pgBackRest server runs, and every database host
that names it has a stanza with a backup in its repository.

A backup host runs no Postgres, so the testinfra suite does not apply; these checks run
over the same SSH runner and report like the suite's (group ``repository``).
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable, Iterable

from pgsteady.inventory import InventoryHost
from pgsteady.pgbackrest_repository import container_name
from pgsteady.settings import PgBackRestRepo, Settings

Run = Callable[[str], str]


def stanzas_served(backup: str, hosts: Iterable[InventoryHost]) -> list[tuple[str, str]]:
    """(database host, stanza) of every host whose pgbackrest_repos name ``backup``."""
    out = []
    for h in hosts:
        if h.is_backup_host or not h.data.get("pgbackrest_enabled", True):
            continue
        for raw in h.data.get("pgbackrest_repos") or []:
            try:
                repo = PgBackRestRepo.model_validate(raw)
            except ValueError:
                continue
            if repo.kind == "host" and repo.host == backup:
                out.append((h.name, str(h.data.get("pgbackrest_stanza") or "main")))
    return out


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
    and the verdict of each stanza's last scheduled verify (systemd hosts, once it ran)."""
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
    for db, stanza in stanzas_served(h.name, hosts):
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
        unit = f"pgsteady-repository-verify-{stanza}.service"
        shown = run(f"systemctl show -p Result -p ExecMainStartTimestampMonotonic {unit} 2>&1")
        props = dict(line.split("=", 1) for line in shown.splitlines() if "=" in line)
        if props.get("ExecMainStartTimestampMonotonic", "0") not in ("", "0"):
            out.append(
                (
                    f"verify[{stanza}]",
                    props.get("Result") == "success",
                    f"the last pgbackrest verify of {db}'s stanza {stanza!r} found problems "
                    f"(systemd result {props.get('Result')})",
                    f"journalctl -u {unit} -n 40; then take a full backup on the backup host",
                )
            )
    return out
