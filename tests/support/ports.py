"""A free local TCP port for a test's server (the kernel picks it; the test binds it next).

The cluster harnesses listen on 127.0.0.2-4 with one port for every member, and their
ssh forwards and clients bind ephemeral ports on the same addresses: a port free on
127.0.0.1 alone may be taken on 127.0.0.3 (CI saw "Address already in use"). The port
returned is free on every loopback address the tests use.
"""

from __future__ import annotations

import contextlib
import socket

#: The loopback addresses the tests' servers listen on.
LOOPBACKS = ("127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4")


def _bindable(address: str, port: int) -> bool:
    with socket.socket() as s, contextlib.suppress(OSError):
        s.bind((address, port))
        return True
    return False


def free_port() -> int:
    """A port nothing uses now on any of :data:`LOOPBACKS`."""
    for _ in range(100):
        with socket.socket() as s:
            s.bind((LOOPBACKS[0], 0))
            port = int(s.getsockname()[1])
        if all(_bindable(a, port) for a in LOOPBACKS[1:]):
            return port
    raise OSError("no port free on every loopback address after 100 tries")
