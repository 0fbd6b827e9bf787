"""A running cluster member's HAProxy takes a changed file without dropping connections.

HAProxy runs in master-worker mode (``haproxy -W``, pgsteady.cluster.member_service):
SIGUSR2 to the master (the container's PID 1) makes it read its files again and start new
workers; the old workers stop listening and finish the sessions they hold (soft stop), so
an open client connection is not cut. The file is bind-mounted and rewritten in place, so
the running container sees the new one at once.

Before this, a changed haproxy.cfg (a new member, a changed port) reached nobody: the
stack's ``up`` recreates nothing when only a bind-mounted file changed, and the rolling
step recreates members only for a new image or compose file. HAProxy kept routing with
the old file until its container was recreated by hand.

The new file is checked first by the running container's own binary (``haproxy -c``): a
file it rejects fails the deploy, naming it. The running HAProxy still routes with the
configuration it loaded, but the rejected file is already in place, so a restart of that
container would fail on it: the message says so, and the next deploy with corrected
settings rewrites it. A container that is not running is left alone (the stack's start
reads the new file).
"""

from __future__ import annotations

import shlex

from pyinfra.api.operation import OperationMeta
from pyinfra.operations import server

from pgsteady.cluster import member_service as ms
from pgsteady.settings import Settings


def reload_command(container: str, cfg: str) -> str:
    """Shell: when ``container`` runs, check ``cfg`` with its HAProxy, then SIGUSR2."""
    running = shlex.join(["docker", "inspect", "-f", "{{.State.Running}}", container])
    check = shlex.join(["docker", "exec", container, "haproxy", "-c", "-q", "-f", cfg])
    usr2 = shlex.join(["docker", "kill", "-s", "USR2", container])
    return (
        f"if {running} 2>/dev/null | grep -qx true; then "
        f"{check} || {{ echo 'HAProxy rejects the new {cfg}: the running HAProxy still "
        "routes with the configuration it loaded, but a restart of its container would "
        f"fail on this file; correct the settings and deploy again' >&2; exit 1; }}; "
        f"{usr2} >/dev/null; fi"
    )


def on_change(s: Settings, ops: list[OperationMeta], why: str) -> OperationMeta:
    """Reload the running HAProxy when any of ``ops`` changed a file it reads."""
    cfg = f"{ms.CONFIG_MOUNT}/{ms.HAPROXY_CFG}"
    return server.shell(
        name=f"Reload HAProxy for {why} (a running one; open sessions are kept)",
        commands=[reload_command(ms.haproxy_container(s), cfg)],
        _if=lambda: any(o.did_change() for o in ops),
    )
