"""Read a docker volume's ``pgdata/PG_VERSION`` as root without trusting the volume.

The volume is writable by the server's uid (999): a compromised server can make
``pgdata`` or ``PG_VERSION`` a symbolic link to a root-only file, a FIFO, or anything
else. :data:`READ_PG_VERSION_PY` (run by ``python3 -c`` on the host: by the deploy's
VolumePgVersion fact and by pgsteady-upgrade-major, which repeats it verbatim) opens each
component relative to the one before with ``O_NOFOLLOW``, reads only a regular file of at
most 16 bytes, opened ``O_NONBLOCK`` and checked with ``fstat``, and prints nothing but a
validated major version. Its exit status says which case it met.
"""

from __future__ import annotations

#: Exit status: the volume holds a cluster; stdout is its major version (digits only).
FOUND = 0
#: Exit status: there is no ``pgdata/PG_VERSION`` (an empty or fresh volume).
ABSENT = 1
#: Exit status: something is there but not a plain version file (a link, FIFO, device,
#: directory, too large or not digits): refuse the volume, print nothing of it.
REFUSED = 3

# No single quote in it: the shell script holds it inside one.
READ_PG_VERSION_PY = """import os, re, stat, sys
def main(root):
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        top = os.open(root, flags | os.O_DIRECTORY)
        pgdata = os.open("pgdata", flags | os.O_DIRECTORY, dir_fd=top)
        if not stat.S_ISREG(os.stat("PG_VERSION", dir_fd=pgdata, follow_symlinks=False).st_mode):
            return 3
        fd = os.open("PG_VERSION", flags | os.O_NONBLOCK, dir_fd=pgdata)
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > 16:
            return 3
        data = os.read(fd, 17)
    except FileNotFoundError:
        return 1
    except Exception:
        return 3
    m = re.fullmatch(rb"([1-9][0-9]{0,3})\\n?", data)
    if m is None:
        return 3
    print(m.group(1).decode())
    return 0
sys.exit(main(sys.argv[1]))
"""
