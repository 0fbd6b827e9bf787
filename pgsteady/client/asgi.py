"""The health routes for Starlette / FastAPI (``pip install pgsteady[asgi]``).

::

    from starlette.applications import Starlette
    from pgsteady.client.asgi import health_routes

    app = Starlette(routes=[*health_routes()])            # /api/health, /api/health/ready ...
    # FastAPI: app.router.routes.extend(health_routes())

The probes block on psycopg2, so they run in Starlette's thread pool and never stall the
event loop.  They probe ``get_pool()`` unless given a pool (or a callable returning one); see
:mod:`pgsteady.client.health` for the routes, the details opt-in and the bounded probes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .health import HealthChecks, PoolLike, encode, normalize_prefix
from .process_pool import get_pool


def health_routes(
    pool: PoolLike | Callable[[], PoolLike] | None = None,
    *,
    prefix: str = "/api/health",
    **options: Any,
) -> list[Route]:
    """Starlette routes serving the four health routes under ``prefix``.

    ``options`` go to :class:`~pgsteady.client.health.HealthChecks` (``timeout``,
    ``ready_timeout``, ``details``).
    """
    checks = HealthChecks(get_pool if pool is None else pool, **options)
    prefix = normalize_prefix(prefix)

    def make_endpoint(sub: str) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            status, body, extra = await run_in_threadpool(
                checks.respond, sub, request.method, dict(request.query_params)
            )
            payload, headers = encode(status, body, extra)
            return Response(payload, status_code=status, headers=dict(headers))

        return endpoint

    paths = {"": (prefix or "/"), "/": prefix + "/"}
    routes = [
        Route(path, make_endpoint(""), methods=["GET", "HEAD"]) for path in set(paths.values())
    ]
    for sub in ("/detailed", "/ready", "/live"):
        routes.append(Route(prefix + sub, make_endpoint(sub), methods=["GET", "HEAD"]))
    return routes
