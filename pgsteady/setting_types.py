"""The value types of pgsteady's settings: durations, sizes, names, paths, networks.

Each check raises ValueError naming the bad value and what is accepted; the first line
of its docstring is what docs/settings.md lists as the accepted values.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import BeforeValidator

from pgsteady.units import parse_size

IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_DURATION = re.compile(r"^(\d+)(ms|s|m|h)$")
_SAFE_PATH = re.compile(r"^/[A-Za-z0-9._/-]*$")
_DURATION_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}


def duration_seconds(value: str) -> float:
    """``"10s"`` → 10.0; ``"500ms"`` → 0.5."""
    m = _DURATION.fullmatch(value)
    if not m:
        raise ValueError(f"{value!r} is not a duration like 10s, 500ms, 5m or 1h")
    return int(m.group(1)) * _DURATION_SECONDS[m.group(2)]


def _check_duration(value: Any) -> Any:
    """a duration above zero: ms, s, m or h (e.g. "500ms", "10s", "5m", "1h")"""
    if isinstance(value, str):
        if duration_seconds(value) <= 0:
            raise ValueError(f"{value!r} must be longer than zero")
        return value
    raise ValueError(f"{value!r} is not a duration string like '10s', '5m' or '1h'")


def _check_size(value: Any) -> Any:
    """a size above zero: B, kB, MB, GB, TB (powers of 1024; e.g. "512MB")"""
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a size string like '512MB' or '4GB'")
    if parse_size(value) <= 0:
        raise ValueError(f"{value!r} must be larger than zero")
    return value


def _check_size_or_auto(value: Any) -> Any:
    """ "auto", or a size above zero: B, kB, MB, GB, TB (e.g. "2GB")"""
    return value if value == "auto" else _check_size(value)


def _check_name(value: Any) -> Any:
    """a lower-case SQL identifier: a-z, 0-9, _ (at most 63 characters)"""
    if not isinstance(value, str) or not IDENT.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a lower-case SQL identifier "
            "(a-z, 0-9, _; starting with a letter or _; at most 63 characters)"
        )
    return value


def _check_identifier(value: Any) -> Any:
    _check_name(value)
    if value.startswith("pg_"):
        raise ValueError(f"{value!r} starts with pg_, which Postgres reserves")
    return value


#: The roles Patroni makes and manages in a cluster (pgsteady.cluster.patroni's
#: REPLICATION_USER and REWIND_USER; a unit test keeps them equal): an app, read-only or
#: monitor role of that name would get the replication or pg_rewind role's password and
#: rights (pg_read_binary_file, which reads every SCRAM verifier).
PATRONI_ROLES = ("replicator", "pgsteady_rewind")


def _check_role(value: Any) -> Any:
    """an SQL identifier; not pg_*, public, none, postgres, replicator, pgsteady_restore/_rewind

    (pgsteady_restore is pgsteady's restore role; replicator and pgsteady_rewind Patroni's)"""
    _check_identifier(value)
    if value in ("public", "none"):
        raise ValueError(f"{value!r} is a role name Postgres reserves")
    if value == "pgsteady_restore":
        raise ValueError(f"{value!r} is the role pgsteady reserves for restores (any other name)")
    if value in PATRONI_ROLES:
        raise ValueError(
            f"{value!r} is a role Patroni makes and manages in a cluster (reserved on every "
            f"host); use any name but {' or '.join(PATRONI_ROLES)}"
        )
    return value


def _check_database(value: Any) -> Any:
    """a lower-case SQL identifier, not pg_*, postgres, template0 or template1"""
    _check_identifier(value)
    if value in ("template0", "template1", "postgres"):
        raise ValueError(f"{value!r} is a system database; name the application's own (e.g. 'app')")
    return value


def _check_path(value: Any) -> Any:
    """a normalised absolute path of letters, digits, ".", "_", "-", "/"; no system directory"""
    if not isinstance(value, str) or not _SAFE_PATH.fullmatch(value) or "/../" in f"{value}/":
        raise ValueError(
            f"{value!r} is not an absolute path of letters, digits, '.', '_', '-' and '/'"
        )
    if os.path.normpath(value) != value.rstrip("/") or value.startswith("//"):
        raise ValueError(
            f"{value!r} is not a normalised path (no '.', '..' or '//' parts); "
            f"did you mean {os.path.normpath(value)!r}?"
        )
    if value.rstrip("/") in ("", "/proc", "/sys", "/dev", "/etc", "/usr", "/bin", "/boot"):
        raise ValueError(f"{value!r} is a system directory; use a directory of its own")
    return value.rstrip("/")


def check_cpus(value: Any) -> Any:
    """ "auto", or a number of CPUs above 0 (e.g. 2 or 0.5), at most the host's"""
    if value == "auto":
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{value!r} is not 'auto' or a number of CPUs like 2 or 0.5")
    return value


def check_overrides(value: Any) -> Any:
    """a mapping of server parameter names to single values, checked against the server"""
    if isinstance(value, Mapping):
        for name, item in value.items():
            if item is None or not isinstance(item, str | int | float | bool):
                raise ValueError(
                    f"{name!r} = {item!r} is not a single value (string, number or boolean)"
                )
            if isinstance(item, str) and any(c in item for c in "\n\r\0"):
                raise ValueError(
                    f"{name!r} = {item!r} contains a line break or NUL, which "
                    "postgresql.conf cannot hold"
                )
    return value


def _check_network(value: Any) -> Any:
    """a CIDR network (e.g. "10.0.0.0/8"), "samenet" or "samehost\""""
    if value in ("samenet", "samehost"):
        return value
    try:
        return str(ipaddress.ip_network(value, strict=False))
    except (ValueError, TypeError):
        raise ValueError(
            f"{value!r} is not a network: use a CIDR like 10.0.0.0/8 or samenet/samehost"
        ) from None


#: A host's address in a certificate's common name (at most 64 characters).
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST_NAME = re.compile(rf"{_LABEL}(\.{_LABEL})*")


def check_host_address(value: Any) -> Any:
    """an IP address or a DNS host name (at most 64 characters)"""
    # "%" (an IPv6 scope, where ip_address() takes anything) and any space or control
    # character never reach a configuration line.
    plain = isinstance(value, str) and value.isprintable() and not set(value) & {" ", "%"}
    if plain and len(value) <= 64:
        try:
            ipaddress.ip_address(value)
            return value
        except ValueError:
            if _HOST_NAME.fullmatch(value):
                return value
    raise ValueError(f"{value!r} is not an IP address or a host name of at most 64 characters")


Duration = Annotated[str, BeforeValidator(_check_duration)]
Size = Annotated[str, BeforeValidator(_check_size)]
SizeOrAuto = Annotated[str, BeforeValidator(_check_size_or_auto)]
RoleName = Annotated[str, BeforeValidator(_check_role)]
DatabaseName = Annotated[str, BeforeValidator(_check_database)]
Identifier = Annotated[str, BeforeValidator(_check_name)]
SafePath = Annotated[str, BeforeValidator(_check_path)]
Network = Annotated[str, BeforeValidator(_check_network)]
HostAddress = Annotated[str, BeforeValidator(check_host_address)]
