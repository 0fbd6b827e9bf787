"""hba: who may log in from where (pg_hba.conf as the server reads it, pg_hba_file_rules)."""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

import pytest

from pgsteady.settings import Settings
from pgsteady.stack.compose import SUPERUSER
from pgsteady.verify import check

if TYPE_CHECKING:
    from conftest import Host

FIX = "{deploy} (rewrites pg_hba.conf and reloads)"


def _rules(pg: Host) -> list[tuple[int, str, set[str], set[str], str, str]]:
    """(line, type, databases, users, address/netmask, method) of every TCP rule, in order."""
    rows = pg.psql(
        "SELECT line_number, type, array_to_string(database, ','), "
        "array_to_string(user_name, ','), coalesce(address || '/' || coalesce(netmask, ''), ''),"
        " auth_method FROM pg_hba_file_rules WHERE type LIKE 'host%' ORDER BY line_number"
    )
    return [(int(n), t, set(d.split(",")), set(u.split(",")), a, m) for n, t, d, u, a, m in rows]


def _everywhere(address: str) -> str | None:
    """'4' or '6' when the rule's address/netmask covers every IPv4 or IPv6 address."""
    addr, _, mask = address.partition("/")
    try:
        net, netmask = ipaddress.ip_address(addr), ipaddress.ip_address(mask)
    except ValueError:
        return None
    return str(net.version) if int(netmask) == 0 and netmask.version == net.version else None


@pytest.mark.fix(FIX)
def test_superuser_rejected_over_tcp_first(pg: Host) -> None:
    """The superuser's TCP logins are rejected for every IPv4 and IPv6 address before any
    rule could let it in."""
    rejected: set[str] = set()
    for line, kind, dbs, users, address, method in _rules(pg):
        applies = bool(users & {SUPERUSER, "all"})
        if not applies:
            continue
        family = _everywhere(address)
        if method == "reject" and kind == "host" and "all" in dbs and family:
            rejected.add(family)
            if rejected == {"4", "6"}:
                return
            continue
        check(
            method == "reject",
            f"pg_hba.conf line {line} ({kind} {method}) lets {SUPERUSER} log in over TCP "
            "before a reject rule for every address",
        )
    check(False, f"pg_hba.conf has no reject rule for {SUPERUSER} from 0.0.0.0/0 and ::/0")


@pytest.mark.fix(FIX)
def test_no_all_all_network_rule(pg: Host) -> None:
    """Network rules that let anyone in name the application's database and roles."""
    bad = [
        f"line {line}: {kind} {','.join(sorted(dbs))} {','.join(sorted(users))} {method}"
        for line, kind, dbs, users, _, method in _rules(pg)
        if method != "reject" and ("all" in dbs or "all" in users)
    ]
    check(not bad, f"pg_hba.conf allows any database or role over TCP: {'; '.join(bad)}")


@pytest.mark.fix(FIX)
def test_app_roles_only_reach_their_database(pg: Host, s: Settings) -> None:
    """No rule lets the application's roles into postgres, template0/1 or another database."""
    roles = {r for r in (s.postgres_user, s.postgres_readonly_user) if r}
    rows = pg.psql(
        "SELECT line_number, array_to_string(database, ','), array_to_string(user_name, ',') "
        "FROM pg_hba_file_rules WHERE auth_method <> 'reject' ORDER BY line_number"
    )
    bad = [
        f"line {line}: {dbs} for {users}"
        for line, dbs, users in rows
        if set(users.split(",")) & (roles | {"all"}) and set(dbs.split(",")) - {s.postgres_db}
    ]
    check(not bad, f"pg_hba.conf lets the app roles reach other databases: {'; '.join(bad)}")
