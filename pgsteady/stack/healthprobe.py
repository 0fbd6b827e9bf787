"""The Postgres container's health probe: accepting connections, without connecting.

``pg_isready`` opens a connection, so with ``log_connections = on`` every probe (8,640
a day at the default 10 s interval) writes a ``connection received`` line: Postgres 15
to 17 log it before authentication, for every role, so no per-role setting hides it.
This probe reads what the postmaster itself publishes instead:

- ``postmaster.pid`` line 8 (the postmaster's status) is ``ready`` or ``standby``:
  not ``starting`` (start-up, with the crash recovery of a killed server) and not
  ``stopping`` (shutdown). A backend crash recovered in place does not set ``starting``
  again, so the probe may pass during that (sub-second) recovery;
- the file is a regular file, not a symlink (the postgres uid owns PGDATA; root reads
  it): defence in depth only, as that uid could fake every signal read here anyway;
- the PID on line 1 is a live, runnable process named ``postgres`` that created the
  shared memory segment line 7 names (``/proc/sysvipc/shm``: shmid and creator PID): a
  stale file left by a killed server names a dead PID, or one a later process reuses in
  a new container, whose fresh IPC namespace does not hold the old segment. The check
  reads no clock: a wall-clock step (NTP, a resumed VM) must not turn a serving
  postmaster unhealthy, as comparing line 3's start time with the kernel's did.
- a TCP socket listens on line 4's port: the entrypoint's init-time server (socket
  only) does not pass, as it did not with ``pg_isready -h 127.0.0.1``.

It runs as the container's root (the healthcheck's user) with POSIX sh and /proc only.
"""

from __future__ import annotations

from pgsteady.stack.layout import PGDATA

#: The probe, a POSIX sh script; exit 0 = healthy.
SCRIPT = f"""\
set -f
no() {{ echo "not accepting connections: $*" >&2; exit 1; }}
f={PGDATA}/postmaster.pid
[ -L "$f" ] && no "postmaster.pid is not a regular file"
[ -e "$f" ] || no no postmaster.pid
[ -f "$f" ] || no "postmaster.pid is not a regular file"
[ -r /proc/sysvipc/shm ] || no "no /proc/sysvipc/shm to check the file's segment"
pid=$(sed -n 1p "$f"); port=$(sed -n 4p "$f")
status=$(sed -n 8p "$f")
case $status in ready*|standby*) ;; *) no "postmaster status '$status'" ;; esac
case $pid in ''|*[!0-9]*) no "bad PID '$pid'" ;; esac
stat=$(cat "/proc/$pid/stat" 2>/dev/null) || no "postmaster PID $pid is not running"
comm=${{stat#*\\(}}; comm=${{comm%\\)*}}
[ "$comm" = postgres ] || no "PID $pid is $comm, not postgres"
set -- ${{stat##*\\) }}
case $1 in R|S|D) ;; *) no "postmaster PID $pid is in state $1" ;; esac
set -- $(sed -n 7p "$f")
shmid=${{2:-}}
case $shmid in ''|*[!0-9]*) no "no shared memory segment in postmaster.pid" ;; esac
owner=
while read -r _key id _perms _size cpid _rest; do
  [ "$id" = "$shmid" ] && owner=$cpid && break
done < /proc/sysvipc/shm
[ "$owner" = "$pid" ] || no "PID $pid did not create shared memory segment $shmid (stale file)"
case $port in ''|*[!0-9]*) no "bad port '$port'" ;; esac
hex=$(printf '%04X' "$port")
grep -q "^ *[0-9]*: [0-9A-F]*:$hex [0-9A-F]*:[0-9A-F]* 0A " /proc/net/tcp /proc/net/tcp6 ||
  no "nothing listens on TCP port $port"
"""


def compose_test() -> list[str]:
    """The compose ``healthcheck.test`` (the template's ``yaml`` filter doubles ``$``)."""
    return ["CMD-SHELL", SCRIPT]
