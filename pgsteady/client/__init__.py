"""App-side resilience kit for applications using a pgsteady database.

* :class:`Pool` -- thread-safe psycopg2 pool: health-checked checkout, bounded waits,
  connect retries with backoff, and :meth:`Pool.run` / :meth:`Pool.transaction` with a precise
  retry contract (:class:`ConnectionLost` vs :class:`CommitOutcomeUnknown`).
* :func:`get_pool` -- the process-wide pool from a DSN or the environment, fork-safe.
* :class:`HealthApp` -- WSGI app serving ``/health``, ``/health/ready`` and ``/health/live``
  (status only), plus ``/health/detailed`` with ``details=True`` / ``PGSTEADY_HEALTH_DETAILS``;
  the same routes as a Flask blueprint (:mod:`pgsteady.client.flask`) and Starlette/FastAPI
  routes (:mod:`pgsteady.client.asgi`) under ``/api/health``.
* :class:`AuthenticationFailed` -- a refused login, raised at once instead of retried.
* :class:`Backoff` / :func:`retry_call` -- the exponential backoff used by both.
* :func:`dsn` -- the connection string: ``sslmode=verify-full`` with app_dir/tls/ca.crt.
"""

from .conninfo import dsn
from .errors import (
    AuthenticationFailed,
    ClientError,
    CommitOutcomeUnknown,
    ConnectFailed,
    ConnectionLost,
    PoolClosed,
    PoolExhausted,
    commit_outcome_unknown,
    is_auth_failure,
    is_connection_broken,
)
from .health import HealthApp
from .pool import Pool, PoolStats
from .process_pool import close_pool, get_pool, redact
from .retry import Backoff, retry_call

__all__ = [
    "AuthenticationFailed",
    "Backoff",
    "ClientError",
    "CommitOutcomeUnknown",
    "ConnectFailed",
    "ConnectionLost",
    "HealthApp",
    "Pool",
    "PoolClosed",
    "PoolExhausted",
    "PoolStats",
    "close_pool",
    "commit_outcome_unknown",
    "dsn",
    "get_pool",
    "is_auth_failure",
    "is_connection_broken",
    "redact",
    "retry_call",
]
