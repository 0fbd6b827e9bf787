"""WAL archiving health for ``make status``: collected with the other sections, judged here.

Sections (only when pgbackrest_enabled): ``archiver`` (pg_stat_archiver and the .ready
queue, one JSON object; superuser SQL with search_path pinned by the collector's
PGOPTIONS and every name qualified), ``pgbackrest_info`` (``pgbackrest info
--output=json``), ``repo_df`` (df of repo1's host directory) and ``wal_archive_<n>``
per repository (pgsteady.backup.walarchive's listing from the oldest backup's start segment:
the WAL segments point-in-time recovery needs, judged against ``last_archived_wal``).
"""

from __future__ import annotations

import json
import shlex
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from pgsteady.backup import pgbackrest, walarchive
from pgsteady.settings import Settings
from pgsteady.units import human_duration, parse_size

ARCHIVER_SQL = """
SELECT pg_catalog.json_build_object(
  'archived_count', a.archived_count,
  'last_archived_wal', a.last_archived_wal,
  'last_archived_age_seconds',
    pg_catalog.date_part('epoch', pg_catalog.now() OPERATOR(pg_catalog.-) a.last_archived_time),
  'failed_count', a.failed_count,
  'last_failed_wal', a.last_failed_wal,
  'failing', coalesce(a.last_failed_time OPERATOR(pg_catalog.>) a.last_archived_time,
                      a.last_failed_time IS NOT NULL),
  'ready_segments', (SELECT pg_catalog.count(*) FROM pg_catalog.pg_ls_archive_statusdir() r
                     WHERE r.name OPERATOR(pg_catalog.~~) '%.ready'),
  'oldest_ready_age_seconds', (
    SELECT pg_catalog.date_part('epoch', pg_catalog.now() OPERATOR(pg_catalog.-)
                                         pg_catalog.min(r.modification))
    FROM pg_catalog.pg_ls_archive_statusdir() r
    WHERE r.name OPERATOR(pg_catalog.~~) '%.ready'),
  'segment_bytes', (SELECT s.setting FROM pg_catalog.pg_settings s
                    WHERE s.name OPERATOR(pg_catalog.=) 'wal_segment_size'))
FROM pg_catalog.pg_stat_archiver a
"""


@dataclass
class Archiving:
    """pg_stat_archiver, the queue and pgBackRest's newest backups of one host."""

    enabled: bool = False
    archived_count: int | None = None
    last_archived_wal: str | None = None
    last_archived_age_seconds: float | None = None
    failed_count: int | None = None
    last_failed_wal: str | None = None
    failing: bool = False
    queue_segments: int | None = None
    oldest_queued_age_seconds: float | None = None
    queue_bytes: int | None = None
    queue_max_bytes: int | None = None
    archive_timeout_seconds: float | None = None
    stanza_status: str | None = None
    last_full_time: str | None = None
    last_full_age_seconds: float | None = None
    last_diff_time: str | None = None
    last_diff_age_seconds: float | None = None
    #: Runs of WAL segments missing from a repository after its oldest backup's start:
    #: {"repo", "timeline", "first", "last", "count", "after_newest_backup"}.
    wal_gaps: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None


def script_values(s: Settings) -> dict[str, str]:
    """Shell variables of the collect script for the archiving sections (none but
    ``PGBR=0`` while pgBackRest is off)."""
    if not s.pgbackrest_enabled:
        return dict.fromkeys(("ARCHIVER_SQL", "REPO_DIR", "WAL_REPOS", "WAL_SCRIPT",
                              "WAL_ARGS"), "") | {"PGBR": "0"}  # fmt: skip
    return {
        "PGBR": "1",
        "ARCHIVER_SQL": " ".join(ARCHIVER_SQL.split()),
        "REPO_DIR": next(iter(pgbackrest.server_written_dirs(s)), ""),
        # Local repositories only: status refreshes every few seconds (make monitor), and
        # listing an off-host one is a TLS round trip per log directory; make verify
        # checks every repository.
        "WAL_REPOS": " ".join(str(n) for n in pgbackrest.local_repos(s)),
        "WAL_SCRIPT": walarchive.LISTING_SCRIPT,
        "WAL_ARGS": shlex.join([s.pgbackrest_stanza, *pgbackrest.command(s)]),
    }


SCRIPT = r"""
archiver() {
    d exec -e PGCONNECT_TIMEOUT=5 -e "PGOPTIONS=$PGOPTIONS_SAFE" -u postgres "$C" \
        psql -XAtq -v ON_ERROR_STOP=1 -d postgres -c "$ARCHIVER_SQL"
}
pgbackrest_info() { d exec -u postgres "$C" pgbackrest info --output=json; }
wal_archive() {
    r=$1
    eval "set -- $WAL_ARGS"
    d exec -u postgres "$C" sh -c "$WAL_SCRIPT" walarchive oldest "$r" "$@"
}
if [ "$PGBR" = 1 ]; then
    section archiver archiver
    section pgbackrest_info pgbackrest_info
    [ -z "$REPO_DIR" ] || section repo_df df_of "$REPO_DIR"
    # After the archiver section: segments up to last_archived_wal must be listed.
    for r in $WAL_REPOS; do section "wal_archive_$r" wal_archive "$r"; done
fi
"""


def derive(raw: dict[str, Any], s: Settings | None, now: datetime | None) -> Archiving:
    """Raw sections → Archiving (``enabled`` False when pgBackRest is off)."""
    a = Archiving(enabled=bool(s and s.pgbackrest_enabled))
    if not a.enabled or s is None:
        return a
    a.queue_max_bytes = parse_size(s.pgbackrest_archive_queue_max)
    a.archive_timeout_seconds = s.seconds("pgbackrest_archive_timeout")
    sections = raw.get("sections") or {}
    arch = sections.get("archiver") or {}
    segment_bytes = walarchive.DEFAULT_SEGMENT_BYTES
    if arch.get("rc") == 0 and arch.get("out"):
        try:
            d = json.loads(arch["out"])
        except ValueError:
            d = {}
        segment_bytes = int(d.get("segment_bytes") or segment_bytes)
        a.archived_count = d.get("archived_count")
        a.last_archived_wal = d.get("last_archived_wal")
        age = d.get("last_archived_age_seconds")
        a.last_archived_age_seconds = round(float(age), 1) if age is not None else None
        a.failed_count = d.get("failed_count")
        a.last_failed_wal = d.get("last_failed_wal")
        a.failing = bool(d.get("failing"))
        a.queue_segments = d.get("ready_segments")
        oldest = d.get("oldest_ready_age_seconds")
        a.oldest_queued_age_seconds = round(float(oldest), 1) if oldest is not None else None
        if a.queue_segments is not None and d.get("segment_bytes"):
            a.queue_bytes = int(a.queue_segments) * int(d["segment_bytes"])
    elif arch:
        a.error = (arch.get("err") or "archiver query failed").splitlines()[0]
    info = sections.get("pgbackrest_info") or {}
    if info.get("rc") == 0 and info.get("out"):
        try:
            stanzas = json.loads(info["out"])
        except ValueError:
            stanzas = []
        st = next((x for x in stanzas if x.get("name") == s.pgbackrest_stanza), None)
        if st is None:
            a.stanza_status = "missing"
        else:
            a.stanza_status = (st.get("status") or {}).get("message")
            for kind in ("full", "diff"):
                stops = [b["timestamp"]["stop"] for b in st.get("backup", []) if b["type"] == kind]
                if stops:
                    when = datetime.fromtimestamp(max(stops), now.tzinfo if now else None)
                    setattr(a, f"last_{kind}_time", when.isoformat())
                    if now is not None:
                        setattr(a, f"last_{kind}_age_seconds", (now - when).total_seconds())
    elif info:
        a.error = a.error or (info.get("err") or info.get("out") or "pgbackrest info failed")[-200:]
    _wal_gaps(a, sections, segment_bytes)
    return a


def _wal_gaps(a: Archiving, sections: dict[str, Any], segment_bytes: int) -> None:
    """Fill ``a.wal_gaps`` from the ``wal_archive_<n>`` sections."""
    for name in sorted(k for k in sections if k.startswith("wal_archive_")):
        sec, repo = sections[name] or {}, name.removeprefix("wal_archive_")
        listing = walarchive.parse_listing(sec.get("out") or "")
        if sec.get("rc") != 0 or not listing.complete:
            why = (sec.get("err") or "listing incomplete").splitlines() or ["failed"]
            a.error = a.error or f"repo{repo} WAL listing: {why[-1][-200:]}"
            continue
        try:
            gaps = walarchive.find_gaps(listing, a.last_archived_wal, segment_bytes)
        except ValueError as exc:
            a.error = a.error or f"repo{repo} WAL listing: {exc}"
            continue
        a.wal_gaps += [{"repo": int(repo), **asdict(g)} for g in gaps]


def problems(a: Archiving) -> list[tuple[str, str]]:
    """(level, message) of what is wrong; levels as in pgsteady.monitor.model."""
    if not a.enabled:
        return []
    out: list[tuple[str, str]] = []
    if a.failing:
        out.append(("critical", f"WAL archiving fails (last failed WAL {a.last_failed_wal})"))
    limit = 2 * (a.archive_timeout_seconds or 60)
    oldest = a.oldest_queued_age_seconds
    if oldest is not None and oldest > limit and (a.queue_segments or 0) > 0:
        out.append(
            ("critical", f"{a.queue_segments} WAL segment(s) wait for the archive, the oldest "
             f"{human_duration(oldest)}")
        )  # fmt: skip
    if a.queue_bytes is not None and a.queue_max_bytes and a.queue_bytes >= a.queue_max_bytes / 2:
        out.append(
            ("warning", f"archive queue {a.queue_bytes >> 20} MB of {a.queue_max_bytes >> 20} MB")
        )
    if a.stanza_status not in (None, "ok"):
        out.append(("critical", f"pgBackRest stanza: {a.stanza_status}"))
    elif a.stanza_status == "ok" and a.last_full_time is None:
        out.append(("warning", "no full pgBackRest backup yet"))
    for g in a.wal_gaps:
        span = g["first"] if g["count"] == 1 else f"{g['first']}..{g['last']}"
        what = f"repo{g['repo']}: {g['count']} WAL segment(s) missing ({span})"
        if g["after_newest_backup"]:
            out.append(
                ("critical", f"{what} after the newest backup's start: no point-in-time "
                 "recovery past them until a new full backup (pgsteady-ctl pgbackrest backup "
                 "--type=full)")
            )  # fmt: skip
        else:
            out.append(
                ("warning", f"{what} before the newest backup: points in time from the gap "
                 "to the newest backup cannot be restored")
            )  # fmt: skip
    if a.error:
        out.append(("warning", f"archiving status unknown: {a.error}"))
    return out


def summary(a: Archiving) -> str:
    """One line for the host panel."""
    if not a.enabled:
        return "off"

    def ago(seconds: float | None) -> str:
        if seconds is None:
            return "never"
        return f"{human_duration(seconds)} ago"

    queue = f"{a.queue_segments} queued" if a.queue_segments is not None else "queue ?"
    if a.wal_gaps:
        queue += f", {sum(g['count'] for g in a.wal_gaps)} missing from the archive"
    return (
        f"WAL {a.last_archived_wal or '-'} {ago(a.last_archived_age_seconds)}, {queue}, "
        f"{a.failed_count or 0} failed; full {ago(a.last_full_age_seconds)}, "
        f"diff {ago(a.last_diff_age_seconds)}"
    )
