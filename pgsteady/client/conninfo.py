"""The connection string an application uses for a pgsteady database: TLS, verified.

pgsteady serves TLS on every address with a certificate issued for the host's names and
addresses; ``app_dir/tls/ca.crt`` is the CA that issued it (copy it to application hosts).
``sslmode=verify-full`` checks both the chain and that ``host`` is a name the certificate
lists, so a machine in the middle cannot pose as the database.
"""

from __future__ import annotations

from collections.abc import Sequence

from psycopg2.extensions import make_dsn

DEFAULT_CA_FILE = "/opt/pgsteady/tls/ca.crt"
#: libpq's target_session_attrs (14+): which server of a multi-host string a session keeps.
SESSION_ATTRS = ("any", "read-write", "read-only", "primary", "standby", "prefer-standby")


def dsn(
    host: str | Sequence[str],
    *,
    port: int | Sequence[int] = 5432,
    user: str = "app",
    dbname: str = "app",
    ca_file: str = DEFAULT_CA_FILE,
    sslmode: str = "verify-full",
    target_session_attrs: str | None = None,
    **extra: str | int,
) -> str:
    """A libpq connection string with ``sslmode=verify-full`` and ``sslrootcert=ca_file``.

    Pass the password separately (``Pool(dsn, connect_kwargs={"password": ...})`` or
    ``PGPASSWORD``/``PGPASSFILE``). ``sslmode`` may only be made stricter, never weaker
    than ``verify-ca``: anything that skips verification is refused.

    Without a proxy, ``host`` lists a cluster's members (``port``: one for all, or one per
    host) and ``target_session_attrs`` says which one to keep: ``read-write``/``primary``
    for writers, ``standby``/``prefer-standby`` for readers (see docs/client.md).
    """
    if sslmode not in ("verify-full", "verify-ca"):
        raise ValueError(
            f"sslmode={sslmode!r}: use verify-full (or verify-ca); pgsteady serves TLS"
        )
    hosts = [host] if isinstance(host, str) else list(host)
    ports = [port] * len(hosts) if isinstance(port, int) else list(port)
    if not hosts or len(ports) != len(hosts):
        raise ValueError(
            f"host={host!r}, port={port!r}: expected one or more hosts and one port, or "
            "one port per host"
        )
    if target_session_attrs is not None:
        if target_session_attrs not in SESSION_ATTRS:
            raise ValueError(
                f"target_session_attrs={target_session_attrs!r}: expected one of "
                + ", ".join(SESSION_ATTRS)
            )
        extra["target_session_attrs"] = target_session_attrs
    return make_dsn(
        host=",".join(hosts),
        port=",".join(map(str, ports)),
        user=user,
        dbname=dbname,
        sslmode=sslmode,
        sslrootcert=ca_file,
        **extra,
    )
