"""Postgres parameters: the per-version catalog, override validation and conf quoting.

The catalog (``pgsteady/postgres/catalog/pg<major>.tsv``) is generated from a real server binary
by ``scripts/gen-param-catalog``: ``postgres --describe-config`` gives every parameter's
name, context, group, type and bounds; since that output carries neither units nor enum
values, the generator also reads ``pg_settings`` from a throw-away cluster (single-user
mode, with pg_stat_statements and auto_explain preloaded so their parameters are known).

Catalog columns (tab-separated, one header line)::

    name  context  vartype  unit  min  max  enumvals  group  short_desc

``vartype`` is bool|integer|real|string|enum; ``enumvals`` is comma-separated.

Above 400 lines because the catalog, the override validation against it and the
pg_hba rules use the same quoting and naming rules.
"""

from __future__ import annotations

import csv
import difflib
import io
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources

CATALOG_COLUMNS = (
    "name",
    "context",
    "vartype",
    "unit",
    "min",
    "max",
    "enumvals",
    "group",
    "short_desc",
)

#: Parameters pgsteady renders itself; an override would break the container layout.
MANAGED = {
    "data_directory": "the data directory is fixed by the container image",
    "config_file": "pgsteady renders postgresql.conf itself",
    "hba_file": "pgsteady renders pg_hba.conf (see postgres_allowed_networks)",
    "ident_file": "pgsteady does not manage pg_ident.conf",
    "listen_addresses": "set through pgsteady's listen settings",
    "port": "set through pgsteady's port setting",
    "unix_socket_directories": "the container's socket directory is fixed",
}


@dataclass(frozen=True)
class Param:
    """One server parameter as the catalog describes it."""

    name: str
    context: str
    vartype: str
    unit: str = ""
    min: str = ""
    max: str = ""
    enumvals: tuple[str, ...] = ()
    group: str = ""
    short_desc: str = ""


# --------------------------------------------------------------------------------------
# Quoting for postgresql.conf
# --------------------------------------------------------------------------------------

_BARE_NUMBER = re.compile(r"^-?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?[A-Za-z]*$")
_BARE_WORD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def conf_value(value: str | int | float | bool) -> str:
    """A value as written on the right of ``name = `` in postgresql.conf.

    Numbers with an optional unit (``4GB``, ``0.9``, ``-1``, ``250ms``) and plain words
    (``on``, ``try``, ``lz4``) stay bare; anything else is single-quoted, with ``'``
    doubled and ``\\`` doubled (the conf lexer treats backslash as an escape). Python
    booleans become ``on``/``off``. A newline or NUL cannot be written and raises
    ValueError.
    """
    if isinstance(value, bool):
        return "on" if value else "off"
    text = str(value)
    if "\n" in text or "\r" in text or "\0" in text:
        raise ValueError(f"value {text!r} cannot be written to postgresql.conf (line break/NUL)")
    if _BARE_NUMBER.fullmatch(text) or _BARE_WORD.fullmatch(text):
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "''") + "'"


# --------------------------------------------------------------------------------------
# Catalog: parsing generator inputs, reading and writing the TSV
# --------------------------------------------------------------------------------------


def parse_describe_config(text: str) -> list[Param]:
    """Parse ``postgres --describe-config``: tab-separated name, context, group, type,
    reset value, min, max, short and extra description (no units or enum values)."""
    params = []
    for line in text.splitlines():
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 4:
            raise ValueError(f"unexpected --describe-config line: {line!r}")
        fields += [""] * (9 - len(fields))
        name, context, group, vartype, _reset, lo, hi, short = fields[:8]
        vartype = vartype.lower().replace("boolean", "bool")
        params.append(Param(name, context, vartype, "", lo, hi, (), group, short))
    return params


def parse_pg_settings_csv(text: str) -> list[Param]:
    """Parse the generator's CSV dump of pg_settings (columns as CATALOG_COLUMNS)."""
    rows = csv.reader(io.StringIO(text))
    params = []
    for row in rows:
        if not row:
            continue
        name, context, vartype, unit, lo, hi, enumvals, group, short = row
        enums = tuple(v for v in enumvals.split(",") if v)
        params.append(Param(name, context, vartype, unit, lo, hi, enums, group, short))
    return params


def merge_catalog(described: Iterable[Param], settings: Iterable[Param]) -> list[Param]:
    """describe-config rows completed with units/enum values from pg_settings, plus the
    parameters only pg_settings knows (preloaded extensions); sorted by name."""
    from_settings = {p.name: p for p in settings}
    merged = {}
    for p in described:
        extra = from_settings.get(p.name)
        if extra is not None:
            p = Param(
                p.name,
                p.context,
                p.vartype,
                extra.unit,
                extra.min or p.min,
                extra.max or p.max,
                extra.enumvals,
                p.group,
                p.short_desc,
            )
        merged[p.name] = p
    for name, p in from_settings.items():
        merged.setdefault(name, p)
    return [merged[n] for n in sorted(merged)]


def _clean(text: str) -> str:
    return " ".join(text.split())


def format_catalog(params: Iterable[Param]) -> str:
    """The TSV text of a catalog file."""
    lines = ["\t".join(CATALOG_COLUMNS)]
    for p in params:
        fields = [p.name, p.context, p.vartype, p.unit, p.min, p.max, ",".join(p.enumvals)]
        lines.append("\t".join([*map(_clean, fields), _clean(p.group), _clean(p.short_desc)]))
    return "\n".join(lines) + "\n"


def parse_catalog(text: str) -> dict[str, Param]:
    """Read a catalog TSV into ``{name: Param}``."""
    lines = text.splitlines()
    if not lines or tuple(lines[0].split("\t")) != CATALOG_COLUMNS:
        raise ValueError("not a pgsteady parameter catalog (bad header)")
    out = {}
    for line in lines[1:]:
        if not line:
            continue
        f = line.split("\t")
        enums = tuple(v for v in f[6].split(",") if v)
        out[f[0]] = Param(f[0], f[1], f[2], f[3], f[4], f[5], enums, f[7], f[8])
    return out


def available_versions() -> list[int]:
    """Postgres major versions that have a shipped catalog."""
    names = [p.name for p in resources.files("pgsteady.postgres.catalog").iterdir()]
    return sorted(int(m[1]) for n in names if (m := re.fullmatch(r"pg(\d+)\.tsv", n)))


@cache
def load_catalog(version: int) -> dict[str, Param]:
    """The catalog for a Postgres major version; ValueError if none is shipped."""
    path = resources.files("pgsteady.postgres.catalog") / f"pg{version}.tsv"
    if not path.is_file():
        have = ", ".join(map(str, available_versions())) or "none"
        raise ValueError(
            f"no parameter catalog for PostgreSQL {version} (shipped: {have}); "
            "generate one with scripts/gen-param-catalog"
        )
    return parse_catalog(path.read_text(encoding="utf-8"))


def param_context(version: int, name: str) -> str | None:
    """The parameter's context (postmaster = restart; sighup/superuser/user... = reload)."""
    param = load_catalog(version).get(name.lower())
    return param.context if param else None


def needs_restart(version: int, name: str) -> bool:
    """True when changing ``name`` takes a server restart (context ``postmaster``)."""
    return param_context(version, name) == "postmaster"


# --------------------------------------------------------------------------------------
# Value checks, following the server's own parsing rules (guc.c)
# --------------------------------------------------------------------------------------

_BOOL_WORDS = ("true", "false", "yes", "no", "on", "off", "1", "0")
_MEMORY_UNITS = {"B": 1, "kB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}
_TIME_UNITS = {"us": 0.001, "ms": 1, "s": 1000, "min": 60_000, "h": 3_600_000, "d": 86_400_000}
_NUMBER = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*([A-Za-z]*)\s*$")
_HEX = re.compile(r"^\s*[-+]?0[xX][0-9a-fA-F]+\s*$")


def parse_bool(text: str) -> bool | None:
    """The server's boolean parsing: unique prefixes of true/false/yes/no, on/off, 1/0."""
    t = text.strip().lower()
    if not t:
        return None
    if t in ("1", "0"):
        return t == "1"
    if t in ("on", "off", "of"):
        return None if t == "of" else t == "on"
    for word, val in (("true", True), ("false", False), ("yes", True), ("no", False)):
        if word.startswith(t):
            return val
    return None


def _unit_scale(unit: str) -> tuple[dict[str, float], float] | None:
    """(accepted units in a common base, size of one ``unit``) for a parameter unit."""
    m = re.fullmatch(r"(\d*)(B|kB|MB|GB|TB)", unit)
    if m:
        return _MEMORY_UNITS, int(m[1] or 1) * _MEMORY_UNITS[m[2]]
    if unit in _TIME_UNITS:
        return _TIME_UNITS, _TIME_UNITS[unit]
    return None


def to_number(text: str, param: Param) -> float | str:
    """The value in the parameter's own unit, or an error string."""
    if param.vartype == "integer" and _HEX.match(text):
        return float(int(text.strip(), 16))
    m = _NUMBER.match(text)
    if not m:
        return "not a number"
    number, unit = float(m[1]), m[2]
    if not unit:
        return number
    scale = _unit_scale(param.unit)
    if scale is None:
        return f"unit {unit!r} not allowed (this parameter takes a plain number)"
    units, own = scale
    if unit not in units:
        return f"unknown unit {unit!r} (valid: {', '.join(units)})"
    return number * units[unit] / own


def _bound(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _range_text(param: Param) -> str:
    unit = f" (in {param.unit})" if param.unit else ""
    return f"{param.min}..{param.max}{unit}"


def check_value(param: Param, value: str | int | float | bool) -> str | None:
    """None when ``value`` is acceptable for ``param``, else what is wrong and accepted."""
    text = conf_text(value)
    if "\n" in text or "\r" in text or "\0" in text:
        return "contains a line break or NUL, which postgresql.conf cannot hold"
    if param.vartype == "bool":
        if parse_bool(text) is None:
            return "expected a boolean: on/off, true/false, yes/no, 1/0"
        return None
    if param.vartype == "enum":
        allowed = list(param.enumvals)
        if text.strip().lower() in (v.lower() for v in allowed):
            return None
        if {"on", "off"} <= set(allowed) and parse_bool(text) is not None:
            return None
        return f"expected one of: {', '.join(allowed)}"
    if param.vartype in ("integer", "real"):
        number = to_number(text, param)
        if isinstance(number, str):
            return f"{number}; expected a number in {_range_text(param)}"
        if not math.isfinite(number):
            return f"expected a finite number in {_range_text(param)}"
        if param.vartype == "integer":
            number = float(round(number))  # the server rounds to the nearest integer
        lo, hi = _bound(param.min), _bound(param.max)
        if (lo is not None and number < lo) or (hi is not None and number > hi):
            return f"out of range; expected {_range_text(param)}"
        return None
    return None  # string: anything that fits on one line


def conf_text(value: str | int | float | bool) -> str:
    """An override value as text (Python bools become on/off)."""
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


def validate_overrides(version: int, overrides: Mapping[str, object]) -> list[str]:
    """Every problem with operator ``postgres_settings`` for this Postgres version.

    Names must be parameters of that server version (case-insensitive), not managed by
    pgsteady and not read-only; values must parse as the server would parse them and
    lie within its bounds. An empty list means all overrides are acceptable.
    """
    try:
        catalog = load_catalog(version)
    except ValueError as exc:
        return [f"postgres_settings: {exc}"]
    errors = []
    for key, value in overrides.items():
        name = str(key).strip().lower()
        where = f"postgres_settings[{key!r}] = {value!r}"
        if name in MANAGED:
            errors.append(f"{where}: cannot be overridden - {MANAGED[name]}")
            continue
        param = catalog.get(name)
        if param is None:
            hint = difflib.get_close_matches(name, catalog, n=1)
            suggestion = f"; did you mean {hint[0]!r}?" if hint else ""
            errors.append(
                f"{where}: unknown parameter for PostgreSQL {version}{suggestion} "
                "(accepted: the server's own parameter names)"
            )
            continue
        if param.context == "internal":
            errors.append(f"{where}: read-only parameter (compiled into the server)")
            continue
        if isinstance(value, (dict, list, tuple, set)) or value is None:
            errors.append(f"{where}: expected a single value (string, number or boolean)")
            continue
        problem = check_value(param, value)  # type: ignore[arg-type]
        if problem:
            errors.append(f"{where}: {problem}")
    return errors


# --------------------------------------------------------------------------------------
# pg_hba.conf rules
# --------------------------------------------------------------------------------------

HBA_KEYWORDS = ("samenet", "samehost")
_ROLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*$")


@dataclass(frozen=True)
class HbaRule:
    """One pg_hba.conf line: ``database``/``user`` are keywords (``all``) or quoted names;
    ``address`` is empty for ``local`` rules."""

    type: str
    database: str
    user: str
    address: str
    method: str


def normalize_network(entry: str) -> str:
    """A CIDR in canonical form ("10.0.0.0/8"; a bare address gets /32 or /128) or one of
    the keywords samenet/samehost; ValueError naming the entry otherwise."""
    import ipaddress

    text = str(entry).strip()
    if text.lower() == "trust":
        raise ValueError(f"allowed network {entry!r}: 'trust' is never allowed in pg_hba.conf")
    if text.lower() in HBA_KEYWORDS:
        return text.lower()
    accepted = "a CIDR like 10.0.0.0/8 or fd00::/8, or samenet/samehost"
    try:
        return str(ipaddress.ip_network(text, strict=True))
    except ValueError as exc:
        try:
            loose = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise ValueError(f"allowed network {entry!r}: expected {accepted}") from exc
        raise ValueError(
            f"allowed network {entry!r}: host bits set; did you mean {loose}? ({accepted})"
        ) from exc


#: Every address, and the container's own loopback addresses.
ANY_IPV4, ANY_IPV6 = "0.0.0.0/0", "::/0"
LOOPBACK = ("127.0.0.1/32", "::1/128")
#: The NOSUPERUSER role pgsteady-backup's restore and drill load app-owned rows with
#: (pgsteady/backuptool/load.py): socket only, with a password made for one restore.
RESTORE_ROLE = "pgsteady_restore"


def _hba_name(name: str, what: str) -> str:
    """``name`` double-quoted for pg_hba.conf, so that ``all``, ``replication``, ``+x``
    or ``/regex`` are never read as keywords, groups or patterns."""
    if not isinstance(name, str) or not _ROLE_NAME.fullmatch(name):
        raise ValueError(f"{what} {name!r}: expected a plain name (letters, digits, _, $)")
    if "trust" in name.lower() and what == "superuser":
        raise ValueError(f"{what} {name!r}: 'trust' is never allowed in pg_hba.conf")
    return f'"{name}"'


def hba_rules(
    allowed_networks: list[str],
    superuser: str,
    *,
    database: str,
    app_roles: list[str],
    monitor_role: str | None = None,
    require_ssl: bool = False,
    pooler_role: str | None = None,
    pooler_networks: list[str] | tuple[str, ...] = (),
) -> list[HbaRule]:
    """The pg_hba.conf rules pgsteady writes; the first matching rule wins.

    1. ``local all <superuser> peer``: ``docker exec -u postgres psql`` without a password;
       ``local all pgsteady_restore scram-sha-256``: the NOSUPERUSER role restore and drill
       load app-owned rows with (NOLOGIN except during a restore, any database: the
       restore target is a temporary one).
    2. The superuser is rejected over TCP from every address, before any allow rule.
    3. With ``require_ssl`` (a published port that is not loopback): plain TCP is rejected.
    4. On the socket, loopback and each allowed network: ``app_roles`` may log in to
       ``database`` and ``monitor_role`` to ``database`` and ``postgres`` (scram-sha-256;
       ``hostssl`` with ``require_ssl``).
    5. Everything else is rejected: no role reaches ``template1``, and the app roles do not
       reach ``postgres``. There is never a ``trust`` rule.

    With ``pooler_role`` (PgBouncer's auth_query role): ``local <database> <pooler_role>
    scram-sha-256``, before the final rejects; over TCP only from ``pooler_networks`` (a
    cluster's members, whose poolers reach the leader through HAProxy; ``hostssl`` with
    ``require_ssl``), never on a single host.
    """
    if superuser == "all":
        raise ValueError(f"superuser {superuser!r}: expected a plain role name (not 'all')")
    su = _hba_name(superuser, "superuser")
    db = _hba_name(database, "database")
    roles = [_hba_name(r, "role") for r in app_roles]
    if not roles:
        raise ValueError("app_roles: at least the application's role is needed")
    monitor = _hba_name(monitor_role, "monitor role") if monitor_role else None
    host_type = "hostssl" if require_ssl else "host"

    rules = [HbaRule("local", "all", su, "", "peer")]
    rules.append(HbaRule("local", "all", _hba_name(RESTORE_ROLE, "role"), "", "scram-sha-256"))
    rules += [HbaRule("host", "all", su, net, "reject") for net in (ANY_IPV4, ANY_IPV6)]
    if require_ssl:
        rules += [HbaRule("hostnossl", "all", "all", n, "reject") for n in (ANY_IPV4, ANY_IPV6)]
    wanted = [(db, ",".join([*roles, *([monitor] if monitor else [])]))]
    if monitor:
        wanted.append(('"postgres"', monitor))
    places = [("local", "")]
    seen: set[str] = set()
    for net in [*LOOPBACK, *allowed_networks]:
        addr = normalize_network(net)
        if addr not in seen:
            seen.add(addr)
            places.append((host_type, addr))
    for kind, addr in places:
        rules += [HbaRule(kind, d, u, addr, "scram-sha-256") for d, u in wanted]
    if pooler_role:
        pooler = _hba_name(pooler_role, "pooler role")
        rules.append(HbaRule("local", db, pooler, "", "scram-sha-256"))
        nets = dict.fromkeys(normalize_network(n) for n in pooler_networks)
        rules += [HbaRule(host_type, db, pooler, n, "scram-sha-256") for n in nets]
    rules.append(HbaRule("local", "all", "all", "", "reject"))
    rules += [HbaRule("host", "all", "all", net, "reject") for net in (ANY_IPV4, ANY_IPV6)]
    return rules
