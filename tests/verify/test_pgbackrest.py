"""pgbackrest: WAL archiving runs, the archive is fresh and has no gap since the newest backup,
backups exist, the repository has room.

Skipped when ``pgbackrest_enabled`` is False; the server checks skip while Postgres does
not answer (see container/running). The SQL runs as the superuser with
search_path pinned to pg_catalog, pg_temp (conftest's Host.psql), names qualified.
"""

from __future__ import annotations

import json
import shlex
import time
from typing import TYPE_CHECKING, Any

import pytest

from pgsteady.backup import pgbackrest, walarchive
from pgsteady.settings import Settings
from pgsteady.units import human_duration
from pgsteady.verify import Fixes, backup_deadline, check

if TYPE_CHECKING:
    from conftest import Host

#: The completed WAL segments waiting for the archive: how many, the oldest's age (its
#: .ready file appears when the segment is completed, and goes once it is archived).
READY = (
    "(SELECT pg_catalog.count(*) FROM pg_catalog.pg_ls_archive_statusdir() r "
    "WHERE r.name OPERATOR(pg_catalog.~~) '%.ready'), "
    "(SELECT coalesce(extract(epoch FROM pg_catalog.now() - pg_catalog.min(r.modification))"
    "::bigint, -1) FROM pg_catalog.pg_ls_archive_statusdir() r "
    "WHERE r.name OPERATOR(pg_catalog.~~) '%.ready')"
)
ARCHIVER = (
    "SELECT a.archived_count, coalesce(a.last_archived_wal, ''), "
    "coalesce(extract(epoch FROM pg_catalog.now() - a.last_archived_time)::bigint, -1), "
    "a.failed_count, coalesce(a.last_failed_wal, ''), "
    "coalesce(a.last_failed_time > a.last_archived_time OR "
    "(a.last_archived_time IS NULL AND a.last_failed_time IS NOT NULL), false), "
    f"{READY} FROM pg_catalog.pg_stat_archiver a"
)
QUEUE = (
    "SELECT pg_catalog.count(*) FROM pg_catalog.pg_ls_archive_statusdir() "
    "WHERE name OPERATOR(pg_catalog.~~) '%.ready'"
)


@pytest.fixture(scope="module", autouse=True)
def _enabled(s: Settings) -> None:
    if not s.pgbackrest_enabled:
        pytest.skip("pgbackrest_enabled = False: no WAL archiving")


def _ctl(s: Settings, args: str) -> str:
    return f"{s.layout.bin}/pgsteady-ctl pgbackrest {args}"


def _info(on: Host, s: Settings) -> list[dict[str, Any]]:
    res = on.run(
        f"{on.docker} exec -u postgres {shlex.quote(s.container_name)} "
        "pgbackrest info --output=json"
    )
    if res.rc != 0:
        raise RuntimeError(f"pgbackrest info failed: {res.stderr.strip()[-300:]}")
    return json.loads(res.stdout)


def test_archive_mode_and_command(pg: Host, s: Settings, fixes: Fixes) -> None:
    """archive_mode = on and archive_command is pgBackRest's asynchronous push."""
    mode = pg.value("SELECT pg_catalog.current_setting('archive_mode')")
    command = pg.value("SELECT pg_catalog.current_setting('archive_command')")
    check(
        mode == "on" and command == pgbackrest.archive_command(s),
        f"archive_mode = {mode}, archive_command = {command!r}; expected on and "
        f"{pgbackrest.archive_command(s)!r}",
        fixes.deploy,
    )


def test_stanza_ok(pg: Host, s: Settings, fixes: Fixes) -> None:
    """pgbackrest info: the stanza exists in every repository and reports status ok."""
    stanzas = {st["name"]: st for st in _info(pg, s)}
    st = stanzas.get(s.pgbackrest_stanza)
    status = (st or {}).get("status", {})
    check(
        st is not None and status.get("code") == 0,
        f"stanza {s.pgbackrest_stanza!r}: {status.get('message', 'missing')}",
        fixes.on_host(f"{_ctl(s, 'stanza-create')} && {_ctl(s, 'check')}"),
    )


def test_archive_is_fresh(pg: Host, s: Settings, fixes: Fixes) -> None:
    """The last archive attempt did not fail, and no completed WAL segment has waited for
    the archive longer than 2 x archive_timeout (an idle server, with nothing waiting,
    passes however old its newest archived WAL is)."""
    row = pg.psql(ARCHIVER)[0]
    last_wal, age = row[1], int(row[2])
    failed, failed_wal, failing = int(row[3]), row[4], row[5] == "t"
    waiting, oldest = int(row[6]), int(row[7])
    limit = 2 * s.seconds("pgbackrest_archive_timeout")
    logs = fixes.on_host(
        f"docker logs --since 30m {s.container_name} 2>&1 | grep -E 'archive-push|archive command'"
        f"  # then: {_ctl(s, 'check')}"
    )
    check(
        not failing,
        f"archiving fails: {failed} failures, the last on {failed_wal} (after the last "
        f"success, {last_wal or 'none'})",
        logs,
    )
    check(
        not waiting or oldest <= limit,
        f"{waiting} WAL segment(s) wait for the archive, the oldest for {human_duration(oldest)} "
        f"(limit {human_duration(limit)} = 2 x archive_timeout); the newest archived WAL, "
        f"{last_wal or 'none'}, is {human_duration(age)} old",
        logs,
    )


def test_queue_below_half_the_maximum(pg: Host, s: Settings, fixes: Fixes) -> None:
    """WAL waiting for the archive (pg_wal/archive_status/*.ready) is below half of
    pgbackrest_archive_queue_max; beyond the maximum pgBackRest drops WAL."""
    from pgsteady.units import parse_size

    ready = int(pg.value(QUEUE))
    segment = int(
        pg.value("SELECT setting FROM pg_catalog.pg_settings WHERE name = 'wal_segment_size'")
    )
    queue_max = parse_size(s.pgbackrest_archive_queue_max)
    check(
        ready * segment < queue_max / 2,
        f"{ready} WAL segments ({ready * segment // 2**20} MB) wait to be archived; at "
        f"{queue_max // 2**20} MB pgBackRest drops WAL and PITR gets a gap",
        fixes.on_host(f"{_ctl(s, 'check')}  # see the runbook: archive stuck"),
    )


def test_full_backup_exists(pg: Host, s: Settings, fixes: Fixes) -> None:
    """At least one full backup: without one there is nothing to replay WAL onto."""
    st = next((x for x in _info(pg, s) if x["name"] == s.pgbackrest_stanza), {})
    fulls = [b for b in st.get("backup", []) if b.get("type") == "full"]
    status = (st.get("status") or {}).get("message", "missing")
    check(
        bool(fulls),
        f"no full pgBackRest backup found (stanza status: {status}): point-in-time recovery "
        "has nothing to start from",
        fixes.on_host(_ctl(s, "backup --type=full")),
    )
    newest = max(b["timestamp"]["stop"] for b in st["backup"])
    age = time.time() - newest
    deadlines = [
        d.total_seconds()
        for d in map(backup_deadline, (s.pgbackrest_full_schedule, s.pgbackrest_diff_schedule))
        if d is not None
    ]
    limit = min(deadlines, default=8 * 86400)
    check(
        age <= limit,
        f"the newest pgBackRest backup is {human_duration(age)} old; the full and "
        f"differential schedules allow {human_duration(limit)}",
        fixes.on_host(
            f"grep -h pgbackrest /var/log/syslog | tail -20; {_ctl(s, 'backup --type=diff')}"
        ),
    )


def test_last_verify_found_the_repositories_sound(pg: Host, s: Settings, fixes: Fixes) -> None:
    """The scheduled ``pgbackrest verify`` of each repository on this host found every file
    intact (pgsteady-ctl keeps its verdict: pgBackRest itself exits 0 on corrupt files)."""
    seen = 0
    for n in pgbackrest.local_repos(s):
        text = pg.read(f"{s.layout.state}/pgbackrest-verify-repo{n}.json")
        if text is None:
            continue  # not run yet: the weekly job has not come
        seen += 1
        verdict = json.loads(text)
        check(
            verdict.get("ok") is True,
            f"repo{n}: pgbackrest verify at {verdict.get('finished_at')} found problems: "
            f"{verdict.get('summary')}",
            fixes.on_host(
                f"{_ctl(s, f'--repo={n} backup --type=full')} && "
                f"{s.layout.bin}/pgsteady-ctl pgbackrest-verify {n}"
            ),
        )
    if not seen:
        pytest.skip("no pgbackrest verify has run yet (pgbackrest_verify_schedule)")


def test_backup_hosts_server_reads_the_data_read_only(pg: Host, s: Settings, fixes: Fixes) -> None:
    """With an off-host repository, the pgBackRest server the backup host reaches has the
    data volume read-only and no passphrase (docker-compose v1 keeps an older container's
    volume mode when it recreates one: this check sees it)."""
    side = pgbackrest.sidecar(s)
    if side is None:
        pytest.skip("no off-host repository (pgbackrest_repos kind 'host')")
    name = str(side["container_name"])
    info = pg.inspect("container", name)
    check(info is not None, f"container {name} is missing", fixes.deploy)
    mounts = {m.get("Destination"): m for m in (info or {}).get("Mounts") or []}
    from pgsteady.stack.layout import DATA_MOUNT

    data = mounts.get(DATA_MOUNT) or {}
    check(
        data.get("RW") is False and pgbackrest.SECRETS_MOUNT not in mounts,
        f"{name}: data volume {'read-write' if data.get('RW') else 'missing'} or a "
        "passphrase mounted; the backup host's server must only read the data",
        fixes.on_host(f"docker rm -f {name} && {s.layout.bin}/pgsteady-ctl up"),
    )


def test_archive_has_no_gap_after_the_newest_backup(pg: Host, s: Settings, fixes: Fixes) -> None:
    """Each repository holds every WAL segment from the newest backup's start up to the
    last one Postgres counts as archived. pgBackRest drops WAL beyond
    pgbackrest_archive_queue_max and reports it archived: pg_stat_archiver stays clean,
    and point-in-time recovery past the hole is impossible until the next backup. (A gap
    before the newest backup only takes older points in time away: ``make status`` warns.)
    Only the newest backup's log directories are listed; no backup yet: nothing to check
    (full_backup_exists fails)."""
    # Read before listing: every segment up to it was reported archived (or dropped).
    last = pg.value("SELECT coalesce(a.last_archived_wal, '') FROM pg_catalog.pg_stat_archiver a")
    size = int(
        pg.value("SELECT setting FROM pg_catalog.pg_settings WHERE name = 'wal_segment_size'")
    )
    for n, _repo in pgbackrest.repos(s):
        argv = walarchive.listing_argv(s, n, "newest")
        res = pg.run(
            f"{pg.docker} exec -u postgres {shlex.quote(s.container_name)} {shlex.join(argv)}"
        )
        listing = walarchive.parse_listing(res.stdout)
        if res.rc != 0 or not listing.complete:
            raise RuntimeError(f"listing repo{n}'s archive failed: {res.stderr.strip()[-300:]}")
        gaps = [g for g in walarchive.find_gaps(listing, last or None, size)
                if g.after_newest_backup]  # fmt: skip
        check(
            not gaps,
            f"repo{n}: " + "; ".join(g.describe() for g in gaps[:3])
            + f" after the newest backup's start ({listing.newest_start}): point-in-time "
            "recovery to any later time is impossible (WAL dropped while the archive was "
            "stuck?); take a new full backup",
            fixes.on_host(_ctl(s, "backup --type=full")),
        )  # fmt: skip


def test_repositories_have_room_and_belong_to_the_server(
    on: Host, s: Settings, fixes: Fixes
) -> None:
    """Each posix repository: owned by the server's uid, not group/other writable, and
    its filesystem at most 90% full."""
    for path in pgbackrest.server_written_dirs(s):
        got = on.stat(path)
        check(got is not None, f"repository {path} is missing", fixes.deploy)
        uid, _gid, mode = got  # type: ignore[misc]
        check(
            uid == s.postgres_uid and not mode & 0o022,
            f"repository {path} is uid {uid} mode {mode:04o}; expected uid "
            f"{s.postgres_uid}, not group/other writable",
            fixes.on_host(f"chown -R {s.postgres_uid}:{s.postgres_uid} {path} && chmod 750 {path}"),
        )
        line = on.out(f"df -Pk {shlex.quote(path)} | tail -n 1").split()
        used = int(line[4].rstrip("%"))
        check(
            used <= 90,
            f"the filesystem of repository {path} is {used}% full",
            fixes.on_host(f"{_ctl(s, 'expire')}  # see the runbook: repository full"),
        )
