"""The health routes as a Flask blueprint (``pip install pgsteady[flask]``).

::

    from flask import Flask
    from pgsteady.client import get_pool
    from pgsteady.client.flask import health_blueprint

    app = Flask(__name__)
    app.register_blueprint(health_blueprint())          # /api/health, /api/health/ready ...

The blueprint probes ``get_pool()`` unless given a pool (or a callable returning one); see
:mod:`pgsteady.client.health` for the routes, the details opt-in and the bounded probes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, request

from .health import HealthChecks, PoolLike, encode, normalize_prefix
from .process_pool import get_pool

_ROUTES = {"": "basic", "/": "basic_slash", "/detailed": "detailed", "/ready": "ready",
           "/live": "live"}  # fmt: skip


def health_blueprint(
    pool: PoolLike | Callable[[], PoolLike] | None = None,
    *,
    prefix: str = "/api/health",
    name: str = "pgsteady_health",
    **options: Any,
) -> Blueprint:
    """A blueprint serving the four health routes under ``prefix``.

    ``options`` go to :class:`~pgsteady.client.health.HealthChecks` (``timeout``,
    ``ready_timeout``, ``details``).
    """
    checks = HealthChecks(get_pool if pool is None else pool, **options)
    prefix = normalize_prefix(prefix)
    bp = Blueprint(name, __name__)

    def make_view(sub: str) -> Callable[[], Response]:
        def view() -> Response:
            status, body, extra = checks.respond(sub, request.method, request.args.to_dict())
            payload, headers = encode(status, body, extra)
            return Response(payload, status=status, headers=headers)

        return view

    for sub, endpoint in _ROUTES.items():
        rule = (prefix + sub) or "/"
        bp.add_url_rule(
            rule, endpoint, make_view(sub), methods=["GET", "HEAD"], strict_slashes=True
        )
    bp.health_checks = checks  # type: ignore[attr-defined]
    return bp
