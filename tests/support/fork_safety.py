"""get_pool()'s fork safety, checked against a real server (integration and e2e tests).

A child process after ``os.fork()`` must build its own pool and never touch the parent's
sessions; the parent's sessions must survive the child's exit.
"""

from __future__ import annotations

import gc
import json
import os
from typing import Any

from pgsteady.client import get_pool


def backend_pid(cur) -> int:  # type: ignore[no-untyped-def]
    cur.execute("SELECT pg_catalog.pg_backend_pid()")
    return cur.fetchone()[0]


def assert_fork_safe(dsn: str, **options: Any) -> None:
    """Fork with a pooled session lent out and one idle; check both sides' sessions."""
    pool = get_pool(dsn, **options)
    lent = pool.getconn()  # checked out across the fork
    with lent.cursor() as cur:
        lent_pid = backend_pid(cur)
    with pool.connection() as conn, conn.cursor() as cur:
        idle_pid = backend_pid(cur)
    parent_pids = {lent_pid, idle_pid}

    read_fd, write_fd = os.pipe()
    child = os.fork()
    if child == 0:  # the child: report, then leave without running pytest's teardown
        report: dict[str, object] = {}
        try:
            fresh = get_pool()
            report["same_object"] = fresh is pool
            report["old_closed"] = pool.closed
            report["pids"] = [fresh.run(backend_pid) for _ in range(3)]
            report["fresh_size"] = fresh.stats().size
            del fresh
            gc.collect()
        except BaseException as exc:  # reported to the parent, which fails the test
            report["error"] = repr(exc)
        os.write(write_fd, json.dumps(report).encode())
        os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd) as f:
        report = json.loads(f.read())
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert "error" not in report, report
    assert report["same_object"] is False and report["old_closed"] is True
    assert not parent_pids & set(report["pids"]), (parent_pids, report)

    # The parent's sessions survived the child's exit: same backends, still usable.
    with lent.cursor() as cur:
        assert backend_pid(cur) == lent_pid
    pool.putconn(lent)
    assert get_pool() is pool
    with pool.connection() as one, pool.connection() as two:  # both pooled sessions at once
        seen = {backend_pid(one.cursor()), backend_pid(two.cursor())}
    assert seen == parent_pids
    assert pool.stats().discarded == 0
