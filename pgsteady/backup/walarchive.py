"""Gaps in a pgBackRest WAL archive: the segments point-in-time recovery would miss.

pgBackRest drops WAL beyond ``archive-push-queue-max`` and reports it to Postgres as
archived, so ``pg_stat_archiver`` looks healthy while the archive has a hole; its own
``verify`` (2.45 .. 2.55) still says ``status: ok`` (the ranges show only in DETAIL log
lines, after it has read and checksummed the whole repository). So pgsteady lists the
archive itself, from a backup's start segment onward only:

* :data:`LISTING_SCRIPT` runs in the container as the server's uid (``sh`` + pgBackRest's
  ``info``, ``repo-ls`` and ``repo-get``): for one repository it prints the start segments
  of the oldest and the newest backup, the current archive id, the newest timeline's
  history file and the complete WAL segments of the log directories from ``oldest`` or
  ``newest`` onward (names only; ``.partial``, ``.backup`` files are left out);
* :func:`parse_listing` reads that output; :func:`find_gaps` computes, along the newest
  timeline's ancestry, every segment missing between the backup's start and the newest
  segment Postgres counts as archived (``pg_stat_archiver.last_archived_wal``: later
  segments may still be in flight).

Segment names are 24 hex digits: timeline, log id, segment (``segment_bytes`` of 16 MB:
256 segments a log id). Pure apart from the script text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from pgsteady.backup import pgbackrest
from pgsteady.settings import Settings

SEGMENT_RE = re.compile(r"^([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})")
HISTORY_RE = re.compile(r"^([0-9A-F]{8})\.history$")
DEFAULT_SEGMENT_BYTES = 16 * 1024 * 1024

#: POSIX sh run inside the container as the server's uid. Arguments: ``oldest|newest``,
#: the repository number, the stanza, then the ``pgbackrest`` command (pgbackrest.command).
#: Every name it prints is fixed-width upper-case hex, so string order is segment order.
LISTING_SCRIPT = r"""
set -u
which=$1; repo=$2; stanza=$3; shift 3
fail() { echo "walarchive: $1: $(printf '%s\n' "$2" | grep . | tail -n 1)" >&2; exit 1; }
info=$("$@" --repo="$repo" info --output=json) || fail "pgbackrest info failed" "$info"
top="archive/$stanza"
# First: info exits 0 on an unreadable repository (no backups listed), repo-ls does not.
ids=$("$@" --repo="$repo" repo-ls --output=text "$top") || fail "repo-ls $top failed" "$ids"
id=$(printf '%s\n' "$ids" | grep -E '^[0-9]+(\.[0-9]+)?-[0-9]+$' \
     | awk -F- '{ print $NF " " $0 }' | sort -n | tail -n 1 | cut -d' ' -f2)
# The backups of the current database (archive id <version>-<db id>): "<db id> <start>".
hex='[0-9A-F]\{24\}'
all=$(printf '%s\n' "$info" | grep -c "\"start\":\"$hex\"")
pat='"archive":{"start":"'$hex'","stop":"'$hex'"},"backrest":{[^}]*},"database":{"id":[0-9]*'
starts=$(printf '%s\n' "$info" | grep -o "$pat" \
         | sed 's/^.*"start":"\([0-9A-F]\{24\}\)".*"id":\([0-9]*\)$/\2 \1/')
if [ "$all" -gt 0 ] && [ -z "$starts" ]; then
    fail "no backup start segment read from pgbackrest info" "$info"
fi
starts=$(printf '%s\n' "$starts" | awk -v db="${id##*-}" '$1 == db { print $2 }' | sort)
if [ -z "$id" ] || [ -z "$starts" ]; then echo end; exit 0; fi
oldest=$(printf '%s\n' "$starts" | head -n 1)
newest=$(printf '%s\n' "$starts" | tail -n 1)
echo "oldest $oldest"
echo "newest $newest"
if [ "$which" = newest ]; then from=$newest; else from=$oldest; fi
echo "from $from"
echo "archive-id $id"
entries=$("$@" --repo="$repo" repo-ls --output=text "$top/$id") \
    || fail "repo-ls $top/$id failed" "$entries"
hist=$(printf '%s\n' "$entries" | grep -E '^[0-9A-F]{8}\.history$' | sort | tail -n 1)
if [ -n "$hist" ]; then
    echo "history-file $hist"
    text=$("$@" --repo="$repo" repo-get "$top/$id/$hist") || fail "repo-get $hist failed" "$text"
    printf '%s\n' "$text" | sed 's/^/history /'
fi
dirs=$(printf '%s\n' "$entries" | grep -E '^[0-9A-F]{16}$' \
       | awk -v s="$(printf '%s' "$from" | cut -c1-16)" '($0 "") >= (s "")')
for d in $dirs; do
    names=$("$@" --repo="$repo" repo-ls --output=text "$top/$id/$d") \
        || fail "repo-ls $d failed" "$names"
    printf '%s\n' "$names" | grep -E '^[0-9A-F]{24}-' | cut -c1-24 \
        | awk -v s="$from" '($0 "") >= (s "") { print "wal " $0 }'
done
echo end
"""


def listing_argv(s: Settings, repo: int, which: str = "oldest") -> list[str]:
    """argv (for ``docker exec -u postgres <container>``) listing repository ``repo``
    from the ``oldest`` or the ``newest`` backup's start segment onward."""
    if which not in ("oldest", "newest"):
        raise ValueError(f"which = {which!r}: use 'oldest' or 'newest'")
    return ["sh", "-c", LISTING_SCRIPT, "walarchive", which, str(repo), s.pgbackrest_stanza,
            *pgbackrest.command(s)]  # fmt: skip


@dataclass
class Listing:
    """One repository's archive as :data:`LISTING_SCRIPT` printed it."""

    oldest_start: str | None = None
    newest_start: str | None = None
    listed_from: str | None = None
    archive_id: str | None = None
    history_file: str | None = None
    history: list[str] = field(default_factory=list)
    segments: list[str] = field(default_factory=list)
    complete: bool = False


@dataclass(frozen=True)
class Gap:
    """Consecutive missing segments of one timeline."""

    timeline: int
    first: str
    last: str
    count: int
    after_newest_backup: bool  # True: PITR to any time after the gap is impossible

    def describe(self) -> str:
        span = self.first if self.count == 1 else f"{self.first}..{self.last}"
        return f"{self.count} WAL segment(s) missing on timeline {self.timeline}: {span}"


def parse_listing(text: str) -> Listing:
    """The script's output → Listing (``complete`` False when it stopped early)."""
    out = Listing()
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == "oldest":
            out.oldest_start = value
        elif key == "newest":
            out.newest_start = value
        elif key == "from":
            out.listed_from = value
        elif key == "archive-id":
            out.archive_id = value
        elif key == "history-file":
            out.history_file = value
        elif key == "history":
            out.history.append(value)
        elif key == "wal" and SEGMENT_RE.match(value) and len(value) == 24:
            out.segments.append(value)
        elif key == "end":
            out.complete = True
    return out


def segments_per_log(segment_bytes: int) -> int:
    """Segments a log id holds (256 for 16 MB segments)."""
    if segment_bytes <= 0 or 0x100000000 % segment_bytes:
        raise ValueError(f"segment size {segment_bytes}: not a power of two up to 4 GB")
    return 0x100000000 // segment_bytes


def position(name: str, segment_bytes: int = DEFAULT_SEGMENT_BYTES) -> tuple[int, int]:
    """(timeline, absolute segment number) of a segment name (suffixes ignored)."""
    m = SEGMENT_RE.match(name)
    if not m:
        raise ValueError(f"{name!r} is not a WAL segment name")
    tli, log, seg = (int(g, 16) for g in m.groups())
    per_log = segments_per_log(segment_bytes)
    if seg >= per_log:
        raise ValueError(f"{name!r}: segment {seg:#x} beyond {per_log - 1:#x} of a log id")
    return tli, log * per_log + seg


def segment_name(tli: int, number: int, segment_bytes: int = DEFAULT_SEGMENT_BYTES) -> str:
    per_log = segments_per_log(segment_bytes)
    return f"{tli:08X}{number // per_log:08X}{number % per_log:08X}"


def parse_lsn(text: str) -> int:
    hi, _, lo = text.partition("/")
    return (int(hi, 16) << 32) + int(lo, 16)


def parse_history(lines: list[str]) -> list[tuple[int, int]]:
    """A timeline history file's ``(parent timeline, switch LSN)`` entries, oldest first."""
    out = []
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        out.append((int(fields[0]), parse_lsn(fields[1])))
    return out


def timeline_chain(
    listing: Listing, present: dict[int, set[int]], segment_bytes: int
) -> list[tuple[int, int, int | None]]:
    """(timeline, first segment, last segment or None: open) from the oldest ancestor of the
    newest timeline to it. A timeline with segments but no history file (lost) starts at
    its lowest archived segment."""
    chain: list[tuple[int, int, int | None]] = []
    begin = 0
    for parent, lsn in parse_history(listing.history):
        # The child's first segment; the parent's copy of it may be only a .partial.
        switch = lsn // segment_bytes
        chain.append((parent, begin, switch - 1))
        begin = switch
    m = HISTORY_RE.match(listing.history_file or "")
    newest = int(m.group(1), 16) if m else 1
    chain.append((newest, begin, None))
    for tli in sorted(t for t in present if t > newest):
        first = min(present[tli])
        last_tli, last_begin, _ = chain[-1]
        chain[-1] = (last_tli, last_begin, first - 1)
        chain.append((tli, first, None))
    return chain


def find_gaps(
    listing: Listing,
    last_archived: str | None,
    segment_bytes: int = DEFAULT_SEGMENT_BYTES,
) -> list[Gap]:
    """Missing segments from the listed backup start to the newest archived segment.

    ``last_archived`` is pg_stat_archiver's ``last_archived_wal`` read BEFORE the listing:
    on its timeline, everything up to it was reported archived (pgBackRest reports dropped
    WAL too), later segments may still be in flight. A ``.partial`` counts up to the segment
    before it; a ``.history`` or None leaves the newest listed segment as the bound.
    The search starts where the listing does (the oldest or the newest backup's start);
    ``newest_start`` marks the gaps that come after the newest backup. A start off the
    newest timeline's ancestry finds nothing.
    """
    start = listing.listed_from
    if start is None or listing.newest_start is None:
        return []
    present: dict[int, set[int]] = {}
    for name in listing.segments:
        tli, number = position(name, segment_bytes)
        present.setdefault(tli, set()).add(number)
    start_tli, start_no = position(start, segment_bytes)
    newest_no = position(listing.newest_start, segment_bytes)[1]
    bound: tuple[int, int] | None = None
    if last_archived and SEGMENT_RE.match(last_archived):
        tli, number = position(last_archived, segment_bytes)
        bound = (tli, number - 1 if last_archived[24:].startswith(".partial") else number)
    chain = timeline_chain(listing, present, segment_bytes)
    gaps: list[Gap] = []
    started = False
    for tli, begin, end in chain:
        if not started:
            # A start in the switch segment (end + 1) continues on the child's copy of it.
            if tli != start_tli or start_no < begin or (end is not None and start_no > end + 1):
                continue
            started, begin = True, start_no
        have = present.get(tli, set())
        if end is None:
            end = max(have, default=begin - 1)
            if bound and bound[0] == tli:
                end = bound[1]
        elif bound and bound[0] == tli:
            end = min(end, bound[1])
        run: list[int] = []
        for number in range(begin, end + 1):
            if number not in have:
                run.append(number)
            if run and (number in have or number == end):
                gaps.append(
                    Gap(tli, segment_name(tli, run[0], segment_bytes),
                        segment_name(tli, run[-1], segment_bytes), len(run),
                        run[-1] >= newest_no)
                )  # fmt: skip
                run = []
    return gaps
