"""Exceptions raised by :mod:`pgsteady.client` and the classification of driver errors.

Two questions are answered here, both from the exception and the connection state only:

* :func:`is_connection_broken` -- did this error kill (or reveal a dead) connection?  Such a
  connection must be discarded, never returned to the pool.
* :func:`commit_outcome_unknown` -- given that ``COMMIT`` raised, can we tell whether the
  transaction committed?  If the server answered with an ordinary error on a live connection,
  the transaction was rolled back (definite failure).  If the connection broke while ``COMMIT``
  was in flight, the server may have committed and died before the answer reached us: the
  outcome is unknown.
"""

from __future__ import annotations

import re
from typing import Any

import psycopg2
import psycopg2.errors

# SQLSTATEs meaning "this session is gone": class 08 (connection exception) and the
# operator-intervention codes that terminate the backend (admin/crash shutdown, cannot connect
# now, database dropped, idle session timeout).
_BROKEN_SQLSTATES = frozenset({"57P01", "57P02", "57P03", "57P04", "57P05"})
_BROKEN_CLASSES: tuple[type[BaseException], ...] = tuple(
    psycopg2.errors.lookup(code)
    for code in ("08000", "08003", "08006", "08001", "08004", *sorted(_BROKEN_SQLSTATES))
)


class ClientError(Exception):
    """Base class of every exception raised by :mod:`pgsteady.client` itself."""


class PoolClosed(ClientError):
    """The pool was closed; no connection can be checked out."""


class PoolExhausted(ClientError):
    """All ``maxconn`` connections stayed in use for the whole acquire timeout."""


class ConnectFailed(ClientError):
    """Opening a connection failed on every attempt within the retry budget.

    ``attempts`` is the number of tries; the last driver error is the ``__cause__``.
    """

    def __init__(self, message: str, attempts: int) -> None:
        super().__init__(message)
        self.attempts = attempts


class AuthenticationFailed(ConnectFailed):
    """The server refused the credentials (wrong password, no pg_hba.conf entry, no such role).

    Raised after the first attempt: retrying cannot fix a wrong password, and every retry
    is one more failed login in the server log.  The driver error is the ``__cause__``.
    """


class ConnectionLost(ClientError):
    """The connection broke *before* ``COMMIT`` was sent.

    Nothing of the transaction was committed (the server rolls back a transaction whose
    session dies), so re-running it is safe as far as the database is concerned.  Whether it is
    safe for the caller (side effects outside the database, non-repeatable input) is the
    caller's call: :meth:`pgsteady.client.Pool.run` retries only with ``idempotent=True``.
    """


class CommitOutcomeUnknown(ClientError):
    """The connection broke while ``COMMIT`` was in flight: it may or may not have committed.

    Never retried automatically.  The caller must reconcile (e.g. look the row up by its key)
    or surface the uncertainty.  The driver error is the ``__cause__``.
    """


#: SQLSTATE class 28 (invalid authorization specification: 28000, 28P01).
_AUTH_SQLSTATE_CLASS = "28"
_AUTH_CLASSES: tuple[type[BaseException], ...] = tuple(
    psycopg2.errors.lookup(code) for code in ("28000", "28P01")
)
#: What the server says when it refuses a login.  libpq reports no SQLSTATE for a failed
#: connection attempt, so the text is all there is (the server's English messages; with
#: another lc_messages the failure falls back to the ordinary connect retry).
_AUTH_MESSAGES = re.compile(
    r"password authentication failed|authentication failed for user|no pg_hba\.conf entry"
    r"|pg_hba\.conf rejects connection|no password supplied"
    r"|role \".*\" (does not exist|is not permitted to log in)"
)


def is_auth_failure(exc: BaseException) -> bool:
    """True if ``exc`` is the server refusing the credentials (never worth a retry).

    Matches SQLSTATE class 28 (28000, 28P01) and, since libpq gives a failed connection
    attempt no SQLSTATE, the server's own wording of an authentication failure.
    """
    code = sqlstate(exc)
    if code is not None:
        return code.startswith(_AUTH_SQLSTATE_CLASS)
    if isinstance(exc, _AUTH_CLASSES):
        return True
    return isinstance(exc, psycopg2.OperationalError) and bool(_AUTH_MESSAGES.search(str(exc)))


def sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE of a driver error (``pgcode``), else ``None``."""
    code = getattr(exc, "pgcode", None)
    return code if isinstance(code, str) else None


def _closed(conn: Any) -> bool:
    try:
        return bool(conn.closed)
    except Exception:  # a half-torn-down object: treat as closed
        return True


def is_connection_broken(exc: BaseException, conn: Any = None) -> bool:
    """True if ``exc`` (raised while using ``conn``) means the session is unusable.

    Broken when: the connection reports itself closed (psycopg2 sets ``conn.closed`` once
    libpq sees the socket die), or the error is an ``InterfaceError``, or its SQLSTATE is in
    class 08 / a terminating 57P0x code, or it is a plain ``OperationalError`` /
    ``DatabaseError`` without SQLSTATE (a libpq-level failure such as "server closed the
    connection unexpectedly").
    Ordinary SQL errors (constraint violations, serialization failures, statement timeouts
    -- 57014 has a SQLSTATE) leave the session usable and return False.
    """
    if conn is not None and _closed(conn):
        return True
    if isinstance(exc, psycopg2.InterfaceError):
        return True
    code = sqlstate(exc)
    if code is not None:
        return code.startswith("08") or code in _BROKEN_SQLSTATES
    if isinstance(exc, _BROKEN_CLASSES):
        return True
    # Plain (not SQLSTATE-specific) classes are what libpq-level failures are raised as;
    # SQLSTATE subclasses such as SerializationFailure derive from OperationalError too.
    return type(exc) in (psycopg2.OperationalError, psycopg2.DatabaseError)


def commit_outcome_unknown(exc: BaseException, conn: Any = None) -> bool:
    """True if ``exc``, raised by ``conn.commit()``, leaves the commit outcome unknown.

    That is exactly the broken-connection case (:func:`is_connection_broken`): the server may
    have made the commit durable and died before its reply arrived.  Any other error was the
    server's answer to ``COMMIT`` on a live session (e.g. a deferred constraint or a
    serialization failure), so the transaction definitely rolled back.  A non-driver exception
    out of ``commit()`` proves nothing either way and is treated as unknown too.
    """
    if not isinstance(exc, psycopg2.Error):
        return True
    return is_connection_broken(exc, conn)
