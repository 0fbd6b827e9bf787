"""The connection string an application uses for a pgsteady database: TLS, verified.

pgsteady serves TLS on every address with a certificate issued for the host's names and
addresses; ``app_dir/tls/ca.crt`` is the CA that issued it (copy it to application hosts).
``sslmode=verify-full`` checks both the chain and that ``host`` is a name the certificate
lists, so a machine in the middle cannot pose as the database.
"""

from __future__ import annotations

from psycopg2.extensions import make_dsn

DEFAULT_CA_FILE = "/opt/pgsteady/tls/ca.crt"


def dsn(
    host: str,
    *,
    port: int = 5432,
    user: str = "app",
    dbname: str = "app",
    ca_file: str = DEFAULT_CA_FILE,
    sslmode: str = "verify-full",
    **extra: str | int,
) -> str:
    """A libpq connection string with ``sslmode=verify-full`` and ``sslrootcert=ca_file``.

    Pass the password separately (``Pool(dsn, connect_kwargs={"password": ...})`` or
    ``PGPASSWORD``/``PGPASSFILE``). ``sslmode`` may only be made stricter, never weaker
    than ``verify-ca``: anything that skips verification is refused.
    """
    if sslmode not in ("verify-full", "verify-ca"):
        raise ValueError(
            f"sslmode={sslmode!r}: use verify-full (or verify-ca); pgsteady serves TLS"
        )
    return make_dsn(
        host=host,
        port=port,
        user=user,
        dbname=dbname,
        sslmode=sslmode,
        sslrootcert=ca_file,
        **extra,
    )
