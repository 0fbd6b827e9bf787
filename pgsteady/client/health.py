"""Health endpoints as a plain WSGI application (no framework needed).

Routes (``GET`` or ``HEAD``; other methods get 405, other paths 404; bodies are JSON):

* ``/health``          -- 200 ``{"status": "ok"}`` if ``SELECT 1`` succeeds, else 503
  ``{"status": "unavailable"}``.
* ``/health/ready``    -- like ``/health`` with a shorter timeout: can we serve a query *now*?
* ``/health/live``     -- always 200 ``{"status": "ok"}``; never touches the database.
* ``/health/detailed`` -- only with details on (below): round-trip latency (ms), pool stats,
  server version, recovery role (``primary``/``replica`` from ``pg_is_in_recovery()``) and
  database size; 503 on failure (still with pool stats and the error).

Public by default: the bodies carry the status only.  Health routes are usually reachable
without authentication (load balancers, orchestrators), and a process id, the exact server
version, the database name and size, pool figures or the text of a libpq error help an
attacker more than an operator.  Details are an explicit opt-in, for routes that only
trusted callers reach: ``HealthApp(pool, details=True)``, or the environment variable
``PGSTEADY_HEALTH_DETAILS=1`` when ``details`` is not given.  With details on, ``/health/live``
adds ``pid`` and ``uptime_s`` and a 503 adds ``error``.  Either way the error of a failed
probe is logged (logger ``pgsteady.client.health``).

Every database probe is bounded: it runs in a helper thread and the request waits at most the
route's timeout (the connection also gets ``statement_timeout``, and a new connection gets a
single attempt).  A probe that overruns is left to finish in the background, and until it does,
further probes of that route answer 503 at once, so a hung server cannot pile up threads.

Mount it anywhere WSGI goes, e.g. in Flask::

    app.wsgi_app = DispatcherMiddleware(app.wsgi_app, {"/ops": HealthApp(pool)})
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from typing import Any, Protocol

StartResponse = Callable[..., Any]
Body = dict[str, Any]

_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}
#: Set to 1/true/yes to turn details on when the constructor does not say.
DETAILS_ENV = "PGSTEADY_HEALTH_DETAILS"

log = logging.getLogger("pgsteady.client.health")


class PoolLike(Protocol):
    """What the health app needs from a pool (:class:`pgsteady.client.Pool` fits)."""

    def connection(
        self, timeout: float | None = None, *, connect_retry: bool = True
    ) -> AbstractContextManager[Any]: ...

    def stats(self) -> Any: ...


class ProbeTimeout(Exception):
    """A probe did not finish within its timeout (or an earlier one is still running)."""


class _BoundedProbe:
    """Run a callable in a daemon thread, waiting at most ``timeout``; one in flight at most."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._busy = threading.Lock()

    def __call__(self, fn: Callable[[], Body], timeout: float) -> Body:
        if not self._busy.acquire(blocking=False):
            raise ProbeTimeout(f"previous {self._name} probe still running")
        result: dict[str, Any] = {}
        done = threading.Event()

        def work() -> None:
            try:
                result["value"] = fn()
            except BaseException as exc:  # handed to the waiting request
                result["error"] = exc
            finally:
                done.set()
                self._busy.release()

        threading.Thread(target=work, name=f"health-{self._name}", daemon=True).start()
        if not done.wait(timeout):
            raise ProbeTimeout(f"{self._name} probe exceeded {timeout:g}s")
        if "error" in result:
            raise result["error"]
        return result["value"]


class HealthApp:
    """WSGI app serving the health routes for ``pool``.

    ``timeout`` bounds ``/health`` and ``/health/detailed``; ``ready_timeout`` bounds
    ``/health/ready``.  ``details`` serves ``/health/detailed`` and adds pid, uptime and
    error texts (default: the ``PGSTEADY_HEALTH_DETAILS`` environment variable, else off).
    ``clock`` is injectable for tests.
    """

    def __init__(
        self,
        pool: PoolLike,
        *,
        timeout: float = 5.0,
        ready_timeout: float = 2.0,
        details: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.pool = pool
        if details is None:
            details = os.environ.get(DETAILS_ENV, "").strip().lower() in ("1", "true", "yes")
        self.details = details
        self.timeout = timeout
        self.ready_timeout = ready_timeout
        self._clock = clock
        self._started = clock()
        self._probes = {name: _BoundedProbe(name) for name in ("basic", "detailed", "ready")}
        self._routes: dict[str, Callable[[], tuple[int, Body]]] = {
            "/health": self.basic,
            "/health/detailed": self.detailed,
            "/health/ready": self.ready,
            "/health/live": self.live,
        }
        if not details:
            del self._routes["/health/detailed"]

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or "/"
        if len(path) > 1:
            path = path.rstrip("/")
        method = environ.get("REQUEST_METHOD", "GET").upper()
        handler = self._routes.get(path)
        extra: list[tuple[str, str]] = []
        if handler is None:
            status, body = 404, {"status": "error", "error": "not found"}
        elif method not in ("GET", "HEAD"):
            status, body = 405, {"status": "error", "error": f"method {method} not allowed"}
            extra.append(("Allow", "GET, HEAD"))
        else:
            status, body = handler()
        payload = json.dumps(body, sort_keys=True).encode()
        headers = [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(payload))),
            ("Cache-Control", "no-store"),
            *extra,
        ]
        start_response(f"{status} {_REASONS[status]}", headers)
        return [b""] if method == "HEAD" else [payload]

    # -- route handlers: (HTTP status, JSON body) --------------------------------------------

    def live(self) -> tuple[int, Body]:
        if not self.details:
            return 200, {"status": "ok"}
        return 200, {"status": "ok", "pid": os.getpid(), "uptime_s": self._uptime()}

    def basic(self) -> tuple[int, Body]:
        return self._simple("basic", self.timeout)

    def ready(self) -> tuple[int, Body]:
        return self._simple("ready", self.ready_timeout)

    def detailed(self) -> tuple[int, Body]:
        try:
            db = self._probes["detailed"](lambda: self._query_details(self.timeout), self.timeout)
        except Exception as exc:
            log.warning("health probe detailed failed: %s", _describe(exc))
            return 503, {"status": "unavailable", "error": _describe(exc), "pool": self._stats()}
        return 200, {"status": "ok", "database": db, "pool": self._stats()}

    # -- internals ---------------------------------------------------------------------------

    def _simple(self, name: str, timeout: float) -> tuple[int, Body]:
        try:
            self._probes[name](lambda: self._query_details(timeout, details=False), timeout)
        except Exception as exc:
            log.warning("health probe %s failed: %s", name, _describe(exc))
            if self.details:
                return 503, {"status": "unavailable", "error": _describe(exc)}
            return 503, {"status": "unavailable"}
        return 200, {"status": "ok"}

    def _query_details(self, timeout: float, *, details: bool = True) -> Body:
        with self.pool.connection(timeout, connect_retry=False) as conn, conn.cursor() as cur:
            cur.execute("SET LOCAL statement_timeout = %s", (max(1, int(timeout * 1000)),))
            start = self._clock()
            cur.execute("SELECT 1")
            cur.fetchone()
            latency_ms = (self._clock() - start) * 1000.0
            if not details:
                return {}
            cur.execute(
                "SELECT current_setting('server_version'), pg_is_in_recovery(),"
                " current_database(), pg_database_size(current_database())"
            )
            version, in_recovery, dbname, size = cur.fetchone()
            return {
                "latency_ms": round(latency_ms, 3),
                "server_version": version,
                "in_recovery": bool(in_recovery),
                "role": "replica" if in_recovery else "primary",
                "database": dbname,
                "size_bytes": int(size),
            }

    def _stats(self) -> dict[str, Any]:
        stats = self.pool.stats()
        return stats.as_dict() if hasattr(stats, "as_dict") else dict(stats)

    def _uptime(self) -> float:
        return round(self._clock() - self._started, 3)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
