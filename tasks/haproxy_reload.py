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

A reload that did not happen is retried (review R10 M5): the file's SHA-256 is recorded
in app_dir/config/haproxy.cfg.loaded (root 0644) only after the check and the signal
succeeded (or, for a stopped container, as the file its next start reads). Each deploy
reloads when the file it writes changed OR the marker does not hold that file's hash: a
file HAProxy rejected, or a deploy that died between the upload and the signal, is
reloaded by the next deploy although the file is already in place. A converged member's
marker matches: a no-op deploy stays one (the marker is read by the prefetch, no extra
round trip).
"""

from __future__ import annotations

import shlex
from collections.abc import Callable

from pyinfra.api.operation import OperationMeta
from pyinfra.operations import server

from pgsteady.cluster import member_service as ms
from pgsteady.settings import Settings
from tasks.noop_guard import State, file_state, sha1


def reload_command(container: str, cfg: str, host_cfg: str, marker: str) -> str:
    """Shell: when ``container`` runs, check ``cfg`` (its path inside) with its HAProxy,
    then SIGUSR2; after that (or when it is stopped) record in ``marker`` (replaced at
    once, root 0644) the SHA-256 ``host_cfg`` (the same file on the host) had before the
    check."""
    running = shlex.join(["docker", "inspect", "-f", "{{.State.Running}}", container])
    check = shlex.join(["docker", "exec", container, "haproxy", "-c", "-q", "-f", cfg])
    usr2 = shlex.join(["docker", "kill", "-s", "USR2", container])
    tmp = shlex.quote(f"{marker}.tmp")
    digest = f"h=$(sha256sum < {shlex.quote(host_cfg)} | cut -c1-64) || exit 1; "
    record = f"(umask 022 && printf '%s\\n' \"$h\" > {tmp}) && mv -f {tmp} {shlex.quote(marker)}"
    return (
        f"{digest}if {running} 2>/dev/null | grep -qx true; then "
        f"{check} || {{ echo 'HAProxy rejects the new {cfg}: the running HAProxy still "
        "routes with the configuration it loaded, but a restart of its container would "
        f"fail on this file; correct the settings and deploy again' >&2; exit 1; }}; "
        f"{usr2} >/dev/null || exit 1; fi; {record}"
    )


def _reload(s: Settings, why: str, needed: Callable[[], bool]) -> OperationMeta:
    p = s.layout
    return server.shell(
        name=f"Reload HAProxy for {why} (a running one; open sessions are kept)",
        commands=[
            reload_command(
                ms.haproxy_container(s),
                f"{ms.CONFIG_MOUNT}/{ms.HAPROXY_CFG}",
                f"{p.config}/{ms.HAPROXY_CFG}",
                f"{p.config}/{ms.HAPROXY_LOADED}",
            )
        ],
        _if=needed,
    )


def on_change(s: Settings, ops: list[OperationMeta], why: str) -> OperationMeta:
    """Reload the running HAProxy when any of ``ops`` changed a file it reads."""
    return _reload(s, why, lambda: any(o.did_change() for o in ops))


def on_cfg(s: Settings, cfg_op: OperationMeta, cfg_text: str) -> OperationMeta:
    """Reload the running HAProxy when ``cfg_op`` (the upload of ``cfg_text``) changed the
    file, or when the marker does not record ``cfg_text`` as loaded (a reload that failed
    or never ran): read at prepare time, so a converged member asks nothing more."""
    want = State("file", 0, 0, "644", sha1(ms.haproxy_marker(cfg_text)))
    stale = file_state(f"{s.layout.config}/{ms.HAPROXY_LOADED}") != want
    if stale:
        why = "haproxy.cfg (not recorded as loaded: a first deploy, or a failed reload)"
    else:
        why = "its changed haproxy.cfg"
    return _reload(s, why, lambda: stale or cfg_op.did_change())
