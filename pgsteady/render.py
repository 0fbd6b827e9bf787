"""Render the templates under templates/ with one strict jinja2 environment.

Templates only format and quote; every decision is made in Python before rendering.
The filters here are the quoting rules each target format needs.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import jinja2

from pgsteady.postgres.parameters import conf_value

#: The first comment line of every file pgsteady renders onto a host.
MANAGED = "Managed by pgsteady: the next converge overwrites local edits."
TEMPLATE_DIR = Path(__file__).resolve().parent.parent / "templates"


def yaml_str(value: Any) -> str:
    """A compose-file scalar that parses back to the same string.

    JSON strings are valid YAML; ``$`` is doubled because compose interpolates it.
    """
    return json.dumps(str(value).replace("$", "$$"))


def sql_literal(value: Any) -> str:
    """A standard-conforming SQL string literal."""
    return "'" + str(value).replace("'", "''") + "'"


def sql_ident(value: Any) -> str:
    """A quoted SQL identifier."""
    return '"' + str(value).replace('"', '""') + '"'


def psql_arg(value: Any) -> str:
    """A psql meta-command argument (e.g. of ``\\i``): single-quoted, ``'`` doubled, and
    backslash, newline and carriage return written as psql's backslash escapes."""
    text = str(value).replace("\\", "\\\\").replace("'", "''")
    return "'" + text.replace("\n", "\\n").replace("\r", "\\r") + "'"


def sh_quote(value: Any) -> str:
    """A POSIX shell word."""
    return shlex.quote(str(value))


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    env.filters.update(yaml=yaml_str, sql_literal=sql_literal, sql_ident=sql_ident, sh=sh_quote)
    env.filters["psql_arg"] = psql_arg
    env.filters["conf_value"] = conf_value
    env.globals["managed"] = MANAGED
    return env


_ENV = _environment()


def render(name: str, **context: Any) -> str:
    """Render ``templates/<name>`` with ``context``."""
    return _ENV.get_template(name).render(**context)
