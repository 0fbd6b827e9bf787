"""pgsteady.client.get_pool against a real PostgreSQL: environment, multi-host, real fork.

A pre-forking server creates the pool in the master and forks workers; a worker that used
the master's sockets would interleave its protocol messages with the master's on one
session.  These tests fork for real and look at the server's backend pids.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from pgserver_supervised import SupervisedPostgres, available

from pgsteady.client import AuthenticationFailed, Backoff, ConnectFailed, get_pool
from pgsteady.client import process_pool as pp
from tests.support.fork_safety import assert_fork_safe, backend_pid

_UNAVAILABLE = available()
pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(_UNAVAILABLE is not None, reason=_UNAVAILABLE or ""),
]


@pytest.fixture(scope="module")
def server() -> Iterator[SupervisedPostgres]:
    with SupervisedPostgres() as srv:
        srv.wait_ready()
        yield srv


def socket_dsn(srv: SupervisedPostgres, **extra: str) -> str:
    """The server over its Unix socket (libpq uses no TLS there, whatever sslmode says)."""
    tail = "".join(f" {k}={v}" for k, v in extra.items())
    return f"host={srv.sockdir} port={srv.port} user=postgres dbname=postgres{tail}"


@pytest.fixture(autouse=True)
def fresh_singleton(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for key in ("DATABASE_URL", pp.PASSWORD_FILE_ENV, pp.MIN_ENV, pp.MAX_ENV, "PGSSLMODE"):
        monkeypatch.delenv(key, raising=False)
    pp.close_pool()
    yield
    pp.close_pool()


def test_singleton_from_environment_with_old_defaults(
    server: SupervisedPostgres, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", socket_dsn(server))
    pool = get_pool()
    assert get_pool() is pool
    stats = pool.stats()
    assert (stats.minconn, stats.maxconn, stats.size) == (2, 20, 2)  # prefilled to min
    assert pp.CONNECT_BACKOFF.nominal(0) == 1 and pool.connect_backoff == pp.CONNECT_BACKOFF
    assert [pp.CONNECT_BACKOFF.nominal(n) for n in range(3)] == [1, 2, 4]
    with pool.connection() as conn:
        assert conn.info.dsn_parameters["sslmode"] == "verify-full"  # added, never weaker
        assert pool.run(lambda cur: backend_pid(cur)) > 0


def test_password_comes_from_a_file_and_is_never_logged(
    server: SupervisedPostgres,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A password file is read and sent; a wrong one is refused at once; logs omit it."""
    server_sql = "ALTER ROLE postgres PASSWORD 'pw-from-file-7731'"
    with get_pool(socket_dsn(server), minconn=1).connection() as conn, conn.cursor() as cur:
        cur.execute(server_sql)
        conn.commit()
    pp.close_pool()
    pwfile = tmp_path / "app_password"
    pwfile.write_text("pw-from-file-7731\n")
    pwfile.chmod(0o600)
    # A TCP DSN with scram: only the file's password gets in (the socket stays trust).
    kw = pp.settings_from_env(socket_dsn(server), {pp.PASSWORD_FILE_ENV: str(pwfile)})[1]
    assert kw == {"password": "pw-from-file-7731"}
    monkeypatch.setenv(pp.PASSWORD_FILE_ENV, str(pwfile))
    caplog.set_level(logging.DEBUG, logger="pgsteady")
    get_pool(socket_dsn(server, password="inline-secret-99"), minconn=1)
    text = caplog.text
    assert "connection pool for" in text
    assert "pw-from-file-7731" not in text and "inline-secret-99" not in text
    assert "inline-secret-99" not in pp.redact(socket_dsn(server, password="inline-secret-99"))


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"DATABASE_URL": "host=x sslmode=require"}, "sslmode='require'"),
        ({"DATABASE_URL": "host=x", "PGSSLMODE": "disable"}, "sslmode='disable'"),
        ({"DATABASE_URL": "host=x", "PGSTEADY_POOL_MAX": "many"}, "PGSTEADY_POOL_MAX='many'"),
        ({"PGSTEADY_POOL_MIN": "5", "PGSTEADY_POOL_MAX": "3"}, "PGSTEADY_POOL_MIN=5"),
        ({"DATABASE_PASSWORD_FILE": "/nonexistent/pw"}, "DATABASE_PASSWORD_FILE='/nonexistent"),
        ({"DATABASE_URL": "not a dsn = ="}, "DATABASE_URL"),
    ],
)
def test_bad_environment_is_refused_by_name(env: dict[str, str], named: str) -> None:
    with pytest.raises(ValueError) as err:
        pp.settings_from_env(None, env)
    assert named in str(err.value)


def test_multi_host_dsn_finds_the_writable_server(server: SupervisedPostgres) -> None:
    """host=a,b with target_session_attrs=read-write skips a dead host and lands on b."""
    dsn = (
        f"host=/nonexistent-pgsteady-dir,{server.sockdir} port={server.port},{server.port}"
        " user=postgres dbname=postgres target_session_attrs=read-write"
    )
    pool = get_pool(dsn, minconn=1)
    with pool.connection() as conn:
        assert conn.info.host == str(server.sockdir)
    # No host satisfies "standby": refused after the (shortened) retry budget.
    with pytest.raises(ConnectFailed) as err:
        pp.Pool(
            dsn.replace("read-write", "standby"),
            minconn=1,
            connect_backoff=Backoff(base=0.05, max_attempts=2),
        )
    assert not isinstance(err.value, AuthenticationFailed)


def test_forked_child_never_uses_the_parents_sessions(server: SupervisedPostgres) -> None:
    """After os.fork() the child gets its own pool and sessions; the parent's live on."""
    assert_fork_safe(socket_dsn(server))
