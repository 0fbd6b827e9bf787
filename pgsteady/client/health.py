"""Health checks for a pool, and a plain WSGI app serving them (no framework needed).

Routes below a prefix (``GET`` or ``HEAD``; other methods get 405, other paths 404; JSON):

* ``PREFIX`` (also ``PREFIX/``) -- 200 ``{"status": "ok"}`` if ``SELECT 1`` succeeds, else
  503 ``{"status": "unavailable"}``.
* ``PREFIX/ready``    -- like the above with a shorter timeout: can we serve a query *now*?
  ``?role=primary`` / ``?role=replica&max_lag_s=N`` ask for a writable server / a replica
  within lag (:mod:`pgsteady.client.readiness`); a bad parameter is a 400.
* ``PREFIX/live``     -- always 200 ``{"status": "ok"}``; never touches the database.
* ``PREFIX/detailed`` -- only with details on (below): round-trip latency (ms), pool stats,
  server version, recovery role (``primary``/``replica``) and database size; 503 on failure
  (still with pool stats and the error).

:class:`HealthApp` (WSGI) keeps its historical prefix ``/health``; the Flask blueprint
(:mod:`pgsteady.client.flask`) and the ASGI routes (:mod:`pgsteady.client.asgi`) default to
``/api/health``.  All three answer through one :class:`HealthChecks`.

Public by default: the bodies carry the status only.  Health routes are usually reachable
without authentication (load balancers, orchestrators), and a process id, the exact server
version, the database name and size, pool figures or the text of a libpq error help an
attacker more than an operator.  Details are an explicit opt-in, for routes that only
trusted callers reach: ``details=True``, or the environment variable
``PGSTEADY_HEALTH_DETAILS=1`` when ``details`` is not given.  With details on, ``live``
adds ``pid`` and ``uptime_s`` and a 503 adds ``error``.  Either way the error of a failed
probe is logged (logger ``pgsteady.client.health``).

Every database probe is bounded: it runs in a helper thread and the request waits at most the
route's timeout (the connection also gets ``statement_timeout``, and a new connection gets a
single attempt).  A probe that overruns is left to finish in the background, and until it does,
further probes of that route answer 503 at once, so a hung server cannot pile up threads.

``pool`` may be a pool or a zero-argument callable returning one (such as
:func:`pgsteady.client.get_pool`): the callable is asked on every probe, so a forked worker
probes its own pool, never the parent's.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from typing import Any, Protocol
from urllib.parse import parse_qsl

from .readiness import ROLE_SQL, BadRequest, Want, decide, parse_want, replay_lag_s

StartResponse = Callable[..., Any]
Body = dict[str, Any]
Headers = list[tuple[str, str]]

REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    503: "Service Unavailable",
}
#: Set to 1/true/yes to turn details on when the constructor does not say.
DETAILS_ENV = "PGSTEADY_HEALTH_DETAILS"
#: The sub-routes below the prefix ("" is the prefix itself).
SUBROUTES = ("", "/detailed", "/ready", "/live")

log = logging.getLogger("pgsteady.client.health")


class PoolLike(Protocol):
    """What the health checks need from a pool (:class:`pgsteady.client.Pool` fits)."""

    def connection(
        self, timeout: float | None = None, *, connect_retry: bool = True
    ) -> AbstractContextManager[Any]: ...

    def stats(self) -> Any: ...


class ProbeTimeout(Exception):
    """A probe did not finish within its timeout (or an earlier one is still running)."""


class NotReady(Exception):
    """The server answered but is not what the readiness query asked for."""


class _BoundedProbe:
    """Run a callable in a daemon thread, waiting at most ``timeout``; one in flight at most."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._busy = threading.Lock()
        self._pid = os.getpid()

    def __call__(self, fn: Callable[[], Body], timeout: float) -> Body:
        if self._pid != os.getpid():  # forked: the parent's in-flight probe is not ours
            self._busy, self._pid = threading.Lock(), os.getpid()
        busy = self._busy
        if not busy.acquire(blocking=False):
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
                busy.release()

        threading.Thread(target=work, name=f"health-{self._name}", daemon=True).start()
        if not done.wait(timeout):
            raise ProbeTimeout(f"{self._name} probe exceeded {timeout:g}s")
        if "error" in result:
            raise result["error"]
        return result["value"]


def normalize_prefix(prefix: str) -> str:
    """``/api/health/`` -> ``/api/health``; ``""`` and ``"/"`` -> ``""`` (routes at the root)."""
    prefix = prefix.strip()
    if prefix and not prefix.startswith("/"):
        raise ValueError(f"prefix={prefix!r}: must start with '/'")
    return prefix.rstrip("/")


class HealthChecks:
    """The health routes' logic, independent of any web framework.

    ``timeout`` bounds the basic and detailed probes; ``ready_timeout`` bounds ``ready``.
    ``details`` serves ``detailed`` and adds pid, uptime and error texts (default: the
    ``PGSTEADY_HEALTH_DETAILS`` environment variable, else off).  ``clock`` is injectable.
    """

    def __init__(
        self,
        pool: PoolLike | Callable[[], PoolLike],
        *,
        timeout: float = 5.0,
        ready_timeout: float = 2.0,
        details: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._pool = pool
        if details is None:
            details = os.environ.get(DETAILS_ENV, "").strip().lower() in ("1", "true", "yes")
        self.details = details
        self.timeout = timeout
        self.ready_timeout = ready_timeout
        self._clock = clock
        self._started = clock()
        self._probes = {name: _BoundedProbe(name) for name in ("basic", "detailed", "ready")}

    @property
    def pool(self) -> PoolLike:
        """The pool to probe (asked anew each time when a provider was given)."""
        pool = self._pool
        if callable(pool) and not hasattr(pool, "connection"):
            return pool()
        return pool  # type: ignore[return-value]

    def respond(
        self, sub: str, method: str = "GET", query: Mapping[str, str] | None = None
    ) -> tuple[int, Body, Headers]:
        """(status, JSON body, extra headers) for sub-route ``sub`` ("", "/ready", ...)."""
        sub = sub.rstrip("/")
        routes: dict[str, Callable[[], tuple[int, Body]]] = {
            "": self.basic,
            "/ready": lambda: self.ready(query or {}),
            "/live": self.live,
        }
        if self.details:
            routes["/detailed"] = self.detailed
        handler = routes.get(sub)
        if handler is None:
            return 404, {"status": "error", "error": "not found"}, []
        if method.upper() not in ("GET", "HEAD"):
            body = {"status": "error", "error": f"method {method.upper()} not allowed"}
            return 405, body, [("Allow", "GET, HEAD")]
        status, body = handler()
        return status, body, []

    # -- route handlers: (HTTP status, JSON body) --------------------------------------------

    def live(self) -> tuple[int, Body]:
        if not self.details:
            return 200, {"status": "ok"}
        return 200, {"status": "ok", "pid": os.getpid(), "uptime_s": self._uptime()}

    def basic(self) -> tuple[int, Body]:
        return self._simple("basic", self.timeout, Want())

    def ready(self, query: Mapping[str, str] | None = None) -> tuple[int, Body]:
        try:
            want = parse_want(query or {})
        except BadRequest as exc:
            return 400, {"status": "error", "error": str(exc)}
        return self._simple("ready", self.ready_timeout, want)

    def detailed(self) -> tuple[int, Body]:
        try:
            db = self._probes["detailed"](lambda: self._query_details(self.timeout), self.timeout)
        except Exception as exc:
            log.warning("health probe detailed failed: %s", _describe(exc))
            return 503, {"status": "unavailable", "error": _describe(exc), "pool": self._stats()}
        return 200, {"status": "ok", "database": db, "pool": self._stats()}

    # -- internals ---------------------------------------------------------------------------

    def _simple(self, name: str, timeout: float, want: Want) -> tuple[int, Body]:
        try:
            self._probes[name](lambda: self._query(timeout, want), timeout)
        except Exception as exc:
            log.warning("health probe %s failed: %s", name, _describe(exc))
            if self.details:
                return 503, {"status": "unavailable", "error": _describe(exc)}
            return 503, {"status": "unavailable"}
        return 200, {"status": "ok"}

    def _query(self, timeout: float, want: Want) -> Body:
        with self.pool.connection(timeout, connect_retry=False) as conn, conn.cursor() as cur:
            cur.execute("SET LOCAL statement_timeout = %s", (max(1, int(timeout * 1000)),))
            cur.execute("SELECT 1")
            cur.fetchone()
            if not want.needs_role_query:
                return {}
            cur.execute(ROLE_SQL)
            in_recovery, receiving, caught_up, age = cur.fetchone()
        lag = replay_lag_s(bool(receiving), bool(caught_up), age) if in_recovery else None
        reason = decide(want, bool(in_recovery), lag)
        if reason is not None:
            raise NotReady(reason)
        return {}

    def _query_details(self, timeout: float) -> Body:
        with self.pool.connection(timeout, connect_retry=False) as conn, conn.cursor() as cur:
            cur.execute("SET LOCAL statement_timeout = %s", (max(1, int(timeout * 1000)),))
            start = self._clock()
            cur.execute("SELECT 1")
            cur.fetchone()
            latency_ms = (self._clock() - start) * 1000.0
            cur.execute(
                "SELECT pg_catalog.current_setting('server_version'),"
                " pg_catalog.pg_is_in_recovery(), pg_catalog.current_database(),"
                " pg_catalog.pg_database_size(pg_catalog.current_database())"
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


def encode(status: int, body: Body, extra: Headers) -> tuple[bytes, Headers]:
    """The JSON payload and the response headers every adapter sends."""
    payload = json.dumps(body, sort_keys=True).encode()
    headers = [
        ("Content-Type", "application/json"),
        ("Content-Length", str(len(payload))),
        ("Cache-Control", "no-store"),
        *extra,
    ]
    return payload, headers


class HealthApp(HealthChecks):
    """WSGI app serving the health routes below ``prefix`` (default ``/health``).

    Mount it anywhere WSGI goes, e.g. in Flask (or use :mod:`pgsteady.client.flask`)::

        app.wsgi_app = DispatcherMiddleware(app.wsgi_app, {"/ops": HealthApp(get_pool)})
    """

    def __init__(
        self, pool: PoolLike | Callable[[], PoolLike], *, prefix: str = "/health", **kw: Any
    ) -> None:
        super().__init__(pool, **kw)
        self.prefix = normalize_prefix(prefix)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or "/"
        method = environ.get("REQUEST_METHOD", "GET").upper()
        query = dict(parse_qsl(environ.get("QUERY_STRING", "")))
        trimmed = path.rstrip("/") if len(path) > 1 else path
        if trimmed == self.prefix or (trimmed == "/" and not self.prefix):
            sub: str | None = ""
        elif trimmed.startswith(self.prefix + "/"):
            sub = trimmed[len(self.prefix) :]
        else:
            sub = None
        if sub is None or sub not in SUBROUTES:
            status, body, extra = 404, {"status": "error", "error": "not found"}, []
        else:
            status, body, extra = self.respond(sub, method, query)
        payload, headers = encode(status, body, extra)
        start_response(f"{status} {REASONS[status]}", headers)
        return [b""] if method == "HEAD" else [payload]


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
