"""One :class:`~pgsteady.client.Pool` per process, built from the environment, fork-safe.

:func:`get_pool` returns the process-wide pool, creating it on first use from a DSN argument
or the environment:

* ``DATABASE_URL`` -- a libpq URI or ``key=value`` string (multi-host too:
  ``host=a,b port=5432,5432 target_session_attrs=read-write``).  Unset: libpq's own ``PG*``
  variables (``PGHOST``, ``PGPORT``, ``PGUSER``, ``PGDATABASE``, ``PGSSLROOTCERT`` ...) apply.
* ``DATABASE_PASSWORD_FILE`` -- a file holding the password (e.g. pgsteady's
  ``app_dir/secrets/app_password`` copied to the application host, or a mounted secret);
  libpq's ``PGPASSFILE`` works as well.  The password never appears in a log line: the DSN is
  logged with it removed (:func:`redact`).
* ``PGSTEADY_POOL_MIN`` / ``PGSTEADY_POOL_MAX`` -- pool bounds, default 2 and 20.

TLS: without an ``sslmode`` in the DSN or ``PGSSLMODE``, ``sslmode=verify-full`` is added; an
``sslmode`` that skips verification is refused (libpq ignores it over Unix sockets).
Connects retry with :data:`CONNECT_BACKOFF`: waits of 1, 2 and 4 s (+-20% jitter).

Fork safety: a pre-forking server (gunicorn, uwsgi) may create the pool in the master and
fork workers.  A child must never use the parent's sockets: an ``os.register_at_fork`` hook
(and a pid check in :func:`get_pool` as a second line) drops the inherited pool in the child
with :meth:`Pool.abandon_after_fork` -- the parent's sessions stay intact -- and the next
:func:`get_pool` builds a fresh pool in the child.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from psycopg2.extensions import make_dsn, parse_dsn

from .pool import Pool
from .retry import Backoff

log = logging.getLogger("pgsteady.client")

URL_ENV = "DATABASE_URL"
PASSWORD_FILE_ENV = "DATABASE_PASSWORD_FILE"
MIN_ENV, MAX_ENV = "PGSTEADY_POOL_MIN", "PGSTEADY_POOL_MAX"
DEFAULT_MIN, DEFAULT_MAX = 2, 20
#: The old setup's connect retries: 1 s, 2 s, 4 s between four attempts.
CONNECT_BACKOFF = Backoff(base=1.0, factor=2.0, cap=4.0, max_attempts=4, deadline=None)
_VERIFYING = ("verify-full", "verify-ca")

_lock = threading.Lock()
_pool: Pool | None = None
_pid: int | None = None
#: The arguments the singleton was built with: a forked child rebuilds with the same.
_spec: tuple[str | None, dict[str, Any]] | None = None


#: Connection parameters that hold a secret: never logged.
SECRET_KEYS = ("password", "sslpassword")


def redact(dsn: str) -> str:
    """``dsn`` as a ``key=value`` string without its secrets (safe to log): the password
    and the client key's passphrase (``sslpassword``)."""
    try:
        params = parse_dsn(dsn)
    except Exception:
        return "<unparsable DSN>"
    for secret in SECRET_KEYS:
        params.pop(secret, None)
    return make_dsn(**params)


def settings_from_env(
    dsn: str | None = None, environ: Mapping[str, str] | None = None
) -> tuple[str, dict[str, Any], int, int]:
    """(dsn, connect kwargs, minconn, maxconn) from ``dsn`` or the environment; validated.

    Raises ``ValueError`` naming the variable and the bad value.
    """
    env = os.environ if environ is None else environ
    dsn = env.get(URL_ENV, "") if dsn is None else dsn
    try:
        params = parse_dsn(dsn)
    except Exception as exc:
        raise ValueError(f"{URL_ENV}: not a libpq connection string or URI ({exc})") from None
    sslmode = params.get("sslmode") or env.get("PGSSLMODE")
    if sslmode is None:
        dsn = make_dsn(dsn, sslmode="verify-full")
    elif sslmode not in _VERIFYING:
        raise ValueError(
            f"sslmode={sslmode!r}: use verify-full (or verify-ca); pgsteady serves TLS"
        )
    kwargs: dict[str, Any] = {}
    pw_file = env.get(PASSWORD_FILE_ENV)
    if pw_file:
        try:
            kwargs["password"] = Path(pw_file).read_text().rstrip("\r\n")
        except OSError as exc:
            raise ValueError(f"{PASSWORD_FILE_ENV}={pw_file!r}: {exc.strerror}") from None
    elif "password" in params:
        log.warning("%s carries a password; prefer %s", URL_ENV, PASSWORD_FILE_ENV)
    minconn = _int_env(env, MIN_ENV, DEFAULT_MIN)
    maxconn = _int_env(env, MAX_ENV, DEFAULT_MAX)
    if not 0 <= minconn <= maxconn or maxconn < 1:
        raise ValueError(
            f"{MIN_ENV}={minconn}, {MAX_ENV}={maxconn}: need 0 <= min <= max and max >= 1"
        )
    return dsn, kwargs, minconn, maxconn


def _int_env(env: Mapping[str, str], key: str, default: int) -> int:
    raw = env.get(key)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{key}={raw!r}: expected a whole number") from None


def get_pool(dsn: str | None = None, **options: Any) -> Pool:
    """The process-wide pool; built on first call in this process (see the module doc).

    ``dsn`` overrides ``DATABASE_URL``; ``options`` go to :class:`Pool` (e.g.
    ``acquire_timeout``, ``prefill=False``) and override the environment's bounds.  Later
    calls return the same pool and ignore their arguments; in a forked child the first call
    builds a fresh pool with the parent's arguments.
    """
    global _pool, _pid, _spec
    with _lock:
        if _pool is not None and _pid != os.getpid():
            _forget_inherited()
        if _pool is None or _pool.closed:
            if dsn is None and not options and _spec is not None:
                dsn, options = _spec[0], dict(_spec[1])
            _spec = (dsn, dict(options))
            url, kwargs, minconn, maxconn = settings_from_env(dsn)
            opts: dict[str, Any] = {
                "minconn": minconn,
                "maxconn": maxconn,
                "connect_backoff": CONNECT_BACKOFF,
                **options,
            }
            opts["connect_kwargs"] = {**kwargs, **opts.get("connect_kwargs", {})}
            log.info("connection pool for %s (pid %d)", redact(url), os.getpid())
            _pool, _pid = Pool(url, **opts), os.getpid()
        return _pool


def close_pool() -> None:
    """Close the process-wide pool (the next :func:`get_pool` builds a new one)."""
    global _pool, _pid, _spec
    with _lock:
        if _pool is not None:
            if _pid == os.getpid():
                _pool.close()
            else:
                _forget_inherited()
        _pool, _pid, _spec = None, None, None


def _forget_inherited() -> None:
    """Drop a pool inherited through fork without touching the parent's sessions."""
    global _pool, _pid
    if _pool is not None:
        count = _pool.abandon_after_fork()
        log.info("pid %d: dropped %d connection(s) inherited from pid %s", os.getpid(), count, _pid)
    _pool, _pid = None, None


def _before_fork() -> None:
    _lock.acquire()


def _after_fork_parent() -> None:
    _lock.release()


def _after_fork_child() -> None:
    global _lock
    _lock = threading.Lock()
    if _pool is not None and _pid != os.getpid():
        _forget_inherited()


os.register_at_fork(
    before=_before_fork, after_in_parent=_after_fork_parent, after_in_child=_after_fork_child
)
