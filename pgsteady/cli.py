"""The ``pgsteady`` command line.

Each subcommand is a pair of functions: ``add_<name>_parser(subparsers)`` declares its
flags and sets ``func``; ``cmd_<name>(args) -> int`` runs it. To add a subcommand, write
the pair and append the ``add_...`` function to ``SUBCOMMANDS``.

Usage errors print exactly one line on stderr and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import NoReturn

from pgsteady.cluster.cli import add_reinit_parser, add_switchover_parser
from pgsteady.cluster.removal_cli import add_remove_member_parser
from pgsteady.postgres.parameters import conf_value
from pgsteady.postgres.tuning import (
    DB_TYPES,
    OS_TYPES,
    PG_VERSIONS,
    STORAGE_TYPES,
    TuningError,
    TuningInput,
    TuningResult,
    tune,
)
from pgsteady.units import format_bytes, parse_size


class UsageError(Exception):
    """Bad command line; its message is the one line printed on stderr."""


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose errors are a single line (no usage dump) and never exit."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: error: {message}")


# --------------------------------------------------------------------------------------
# argument types
# --------------------------------------------------------------------------------------


def _size(text: str) -> int:
    try:
        value = parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
    if value <= 0:
        raise argparse.ArgumentTypeError(f"invalid size {text!r}: must be greater than 0")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: expected a whole number >= 1")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: expected a number > 0")
    return value


def _pg_version(text: str) -> int:
    accepted = ", ".join(map(str, PG_VERSIONS))
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value not in PG_VERSIONS:
        raise argparse.ArgumentTypeError(f"invalid version {text!r}: expected one of {accepted}")
    return value


# --------------------------------------------------------------------------------------
# tune
# --------------------------------------------------------------------------------------


def add_tune_parser(subparsers: argparse._SubParsersAction) -> None:
    """Declare ``pgsteady tune``."""
    p = subparsers.add_parser(
        "tune",
        help="print tuned postgresql.conf settings (PGTune-compatible + container-aware)",
        description="Compute Postgres settings the way PGTune does, then apply pgsteady's "
        "container limits and operator settings.",
    )
    p.add_argument("--pg-version", type=_pg_version, required=True, help="13..18")
    p.add_argument("--db-type", choices=DB_TYPES, default="web", help="workload (default web)")
    p.add_argument("--ram", type=_size, required=True, help="host RAM, e.g. 16GB")
    p.add_argument("--cpus", type=_positive_int, help="host CPUs")
    p.add_argument("--connections", type=_positive_int, help="max_connections (type default)")
    p.add_argument("--storage", choices=STORAGE_TYPES, default="ssd", help="default ssd")
    p.add_argument("--os", choices=OS_TYPES, default="linux", help="default linux")
    p.add_argument("--memory-limit", type=_size, help="container memory limit, e.g. 4GB")
    p.add_argument("--cpu-limit", type=_positive_float, help="container CPU limit, e.g. 1.5")
    p.add_argument("--format", choices=("conf", "json"), default="conf", help="default conf")
    p.set_defaults(func=cmd_tune)


def cmd_tune(args: argparse.Namespace) -> int:
    """Run ``pgsteady tune``."""
    inp = TuningInput(
        pg_version=args.pg_version,
        db_type=args.db_type,
        ram=args.ram,
        cpus=args.cpus,
        connections=args.connections,
        storage=args.storage,
        os=args.os,
        memory_limit=args.memory_limit,
        cpu_limit=args.cpu_limit,
    )
    try:
        result = tune(inp)
    except TuningError as exc:
        raise UsageError(f"pgsteady tune: error: {exc}") from exc
    print(format_json(result) if args.format == "json" else format_conf(result), end="")
    return 0


def format_conf(result: TuningResult) -> str:
    """postgresql.conf lines in PGTune's layout, pgsteady's settings with their reasons."""
    inp = result.inputs
    lines = []
    if result.warnings:
        lines += ["# WARNING", *(f"# {w}" for w in result.warnings), ""]
    if inp is not None:
        facts = [
            ("DB Version", inp.pg_version),
            ("OS Type", inp.os),
            ("DB Type", inp.db_type),
            ("Total Memory (RAM)", format_bytes(inp.ram)),
            ("CPUs num", inp.cpus),
            ("Connections num", inp.connections),
            ("Data Storage", inp.storage),
            ("Container memory limit", inp.memory_limit and format_bytes(inp.memory_limit)),
            ("Container CPU limit", inp.cpu_limit),
        ]
        lines += [f"# {k}: {v}" for k, v in facts if v] + [""]
    lines += [f"{s.name} = {conf_value(s.value)}" for s in result.settings if s.source == "pgtune"]
    extra = [s for s in result.settings if s.source == "pgsteady"]
    if extra:
        lines += ["", "# --- pgsteady: additions to / deviations from PGTune ---"]
        for s in extra:
            lines += [f"# {s.comment}", f"{s.name} = {conf_value(s.value)}"]
    return "\n".join(lines) + "\n"


def format_json(result: TuningResult) -> str:
    """One JSON object: inputs, ordered settings with source/comment, values, warnings."""
    doc = {
        "input": asdict(result.inputs) if result.inputs else None,
        "memory_basis": result.memory_basis,
        "cpu_basis": result.cpu_basis,
        "settings": [asdict(s) for s in result.settings],
        "values": result.as_dict(),
        "warnings": list(result.warnings),
    }
    return json.dumps(doc, indent=2) + "\n"


# --------------------------------------------------------------------------------------
# entry point
# --------------------------------------------------------------------------------------

SUBCOMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    add_tune_parser,
    add_switchover_parser,
    add_reinit_parser,
    add_remove_member_parser,
]


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every registered subcommand."""
    parser = _Parser(prog="pgsteady", description="Production PostgreSQL hosts with pyinfra.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    subparsers.required = True
    for add in SUBCOMMANDS:
        add(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (2 for usage errors, one line on stderr)."""
    try:
        args = build_parser().parse_args(argv)
        return int(args.func(args))
    except UsageError as exc:
        print(str(exc).splitlines()[0], file=sys.stderr)
        return 2
    except SystemExit as exc:  # --help / --version
        return exc.code if isinstance(exc.code, int) else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
