"""Changing a running cluster without taking it down (issue 16, items 1, 2 and 6).

- :func:`refuse_while_rolling`: every member reads the roll lock in etcd before any
  operation; a deploy that finds it held stops, naming the holder, with nothing changed.
- :func:`reload_patroni`: a changed patroni.yml reaches the running Patroni. The
  entrypoint copies it into the container's private tmpfs only at start, and the stack's
  ``up`` recreates nothing when just a bind-mounted file changed, so before this a
  changed patroni.yml did nothing until the container was recreated by hand. Now the new
  file is copied over the running copy and Patroni reloads it (``patronictl reload``).
- :func:`recreate_changed`: a running member whose image (a rebuilt image of the same
  major: security or minor updates) or compose file changed is no longer recreated by
  every host at once; ONE operation on the seed runs the stack's ``up`` on each such
  member's host in turn (through that host's own pyinfra connection), replicas first,
  then a switchover, then the old leader, each streaming again before the next. The
  data volume is kept; Patroni rejoins.
- :func:`restart_pending`: after the seed's DCS patch changed Postgres parameters (or a
  member still pends a restart from a roll that stopped), ONE operation on the seed rolls
  the restarts through Patroni, replicas first, one switchover, the old leader last
  (pgsteady/cluster/roll_driver.py says why one operation on one host).
"""

from __future__ import annotations

import json
import os
import shlex
import socket
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from pyinfra import host
from pyinfra.api import FactBase, StringCommand
from pyinfra.api.exceptions import DeployError
from pyinfra.api.operation import OperationMeta
from pyinfra.facts.files import FileContents
from pyinfra.operations import python, server

from pgsteady.cluster import dcs, rolling
from pgsteady.cluster import etcd_service as etcd_svc
from pgsteady.cluster import member_service as ms
from pgsteady.cluster.roll_driver import Run, Seed, recreate_commands, recreate_roll, restart_roll
from pgsteady.cluster.roll_lock import Holder, LockUnreadable, fact_command, parse_fact
from pgsteady.cluster.stack_drift import drift_command, drifted
from pgsteady.settings import Settings
from pgsteady.units import parse_size
from tasks.cluster import adopting
from tasks.cluster_member import (
    DCS_MANAGED,
    PatroniDcsConfig,
    PatroniMembers,
    Pending,
    context,
    is_seed,
)

RUNNING_COPY = f"{ms.PATRONI_DIR}/10-pgsteady.yml"
#: Each member's stack operations of this run (prepared host by host, read by the seed's
#: rolling step when it runs, after every host's image and compose operations).
_STACKS: dict[str, tuple[Pending, list[OperationMeta], bool]] = {}


class RollLock(FactBase[Any]):
    """roll_lock.fact_command's answer (roll_lock.parse_fact reads it)."""

    def command(self, read: str) -> str:
        return read

    def process(self, output: Iterable[str]) -> Any:
        return "\n".join(output)


class StaleContainer(FactBase[bool]):
    """The running container's image is not the one the alias names now (a roll that
    stopped half way, or an image moved outside a deploy)."""

    def command(self, container: str, alias: str) -> str:
        running = shlex.join(["docker", "inspect", "-f", "{{.Image}}", container])
        wanted = shlex.join(["docker", "image", "inspect", "-f", "{{.Id}}", alias])
        return (
            f"a=$({running} 2>/dev/null); b=$({wanted} 2>/dev/null); "
            '[ -n "$a" ] && [ -n "$b" ] && [ "$a" != "$b" ] && echo stale || true'
        )

    def process(self, output: Iterable[str]) -> bool:
        return "stale" in "\n".join(output)


class ComposeDrift(FactBase[list[str]]):
    """The services whose running container was made from another compose configuration
    than the file on disk (pgsteady/cluster/stack_drift.py: a run that wrote the file
    and stopped before its roll)."""

    def command(self, command: str) -> str:
        return command

    def process(self, output: Iterable[str]) -> list[str]:
        return drifted("\n".join(output))


class PatroniConfigStale(FactBase[bool]):
    """The member's running Patroni copy differs from its patroni.yml on disk (a run that
    wrote the file and stopped before the reload)."""

    def command(self, container: str) -> str:
        check = f'cmp -s "$PGSTEADY_PATRONI_CONFIG" {RUNNING_COPY} || echo stale'
        argv = ["docker", "exec", "-u", "postgres", container, "sh", "-c", check]
        return f"{shlex.join(argv)} 2>/dev/null || true"

    def process(self, output: Iterable[str]) -> bool:
        return "stale" in "\n".join(output)


def refuse_while_rolling(s: Settings) -> None:
    """Stop the deploy before any change while a rolling operation holds the lock."""
    ctx = context(s)
    if ctx is None or adopting(s):  # the seed runs its single-host server: no cluster yet
        return
    answer = host.get_fact(RollLock, read=fact_command("docker", s.container_name))
    try:
        holder = parse_fact(answer or "")
    except LockUnreadable as exc:  # never read as "free" (R9 L1)
        raise DeployError(
            f"{host.name}: {exc}; nothing was changed (is etcd up? make status)"
        ) from None
    if holder is not None:
        raise DeployError(
            f"{host.name}: a rolling operation is in progress in cluster {ctx[0].name} "
            f"({holder.describe()}); nothing was changed. Deploy again after it ends "
            "(make status shows it; docs/operations.md, 'Rolling changes')"
        )


def reload_patroni(s: Settings, p: Pending | None) -> None:
    """Copy a changed patroni.yml over the running one and have Patroni reload it."""
    ctx = context(s)
    if p is None or ctx is None or not p.running:
        return
    cluster, member = ctx
    copy = (
        f'umask 077; cmp -s "$PGSTEADY_PATRONI_CONFIG" {RUNNING_COPY} || '
        f'{{ cp "$PGSTEADY_PATRONI_CONFIG" {RUNNING_COPY}.new && '
        f"mv {RUNNING_COPY}.new {RUNNING_COPY} && "
        + shlex.join(["patronictl", "-c", ms.PATRONI_DIR, "reload", cluster.name, member.name])
        + " --force; }"
    )
    argv = ["docker", "exec", "-u", "postgres", s.container_name, "sh", "-c", copy]
    triggers = p.triggers
    # also when an earlier run wrote the file and stopped before this reload (R9 M2)
    stale = bool(host.get_fact(PatroniConfigStale, container=s.container_name))
    server.shell(
        name="Reload Patroni when its patroni.yml changed (no restart)",
        commands=[shlex.join(argv)],
        _if=lambda: stale or any(o.did_change() for o in triggers),
    )


def _holder(operation: str) -> Holder:
    since = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return Holder(f"{socket.gethostname()} pid {os.getpid()}", operation, since)


def _stack_changed(name: str) -> bool:
    """Member ``name`` was running and its image or compose file changed in this run, or
    it runs an image other than the alias's, or containers its compose file no longer
    describes."""
    p, member_ops, stale = _STACKS.get(name, (None, [], False))
    if p is None or not p.running:
        return False
    return stale or any(o.did_change() for o in p.triggers if o not in member_ops)


def recreate_changed(s: Settings, p: Pending | None, member_ops: list[OperationMeta]) -> None:
    """On the seed: recreate the running members whose stack changed, one at a time."""
    ctx = context(s)
    if p is None or ctx is None:
        return
    stale = host.get_fact(StaleContainer, container=s.container_name, alias=s.image_alias)
    # a compose file an earlier run wrote but never rolled out (R9 M2)
    compose = f"{p.compose_cmd} {shlex.join(['-p', s.compose_project, '-f', s.layout.compose])}"
    drift = host.get_fact(ComposeDrift, command=drift_command(compose, s.compose_project))
    _STACKS[host.name] = (p, member_ops, bool(stale) or bool(drift))
    if not is_seed(s):
        return
    cluster, member = ctx
    names = [m.name for m in cluster.members]
    max_lag = parse_size(s.postgres_replica_max_lag)  # "16MB" in the inventory
    ctl = f"{s.layout.bin}/pgsteady-ctl up"
    etcd_ctl = etcd_svc.container_ctl(s, cluster)

    def roll(state: Any, host: Any) -> None:  # pyinfra passes both (FunctionCommand)
        needs = {n for n in names if _stack_changed(n)}
        if not needs:
            return

        def recreate(name: str) -> None:  # etcd too, one host at a time (R9 H1)
            target = state.inventory.get_host(name)
            for command in recreate_commands(cluster, name, ctl, etcd_ctl):
                ok, out = target.run_shell_command(StringCommand(command))
                if not ok:
                    why = out.stderr.strip()[-500:]
                    raise DeployError(f"{name}: {command[:120]} failed: {why}")

        run = _runner(host)
        seed = Seed(run, s.container_name, cluster, member.name)
        try:
            done = recreate_roll(seed, _holder("rolling recreate"), max_lag, needs, recreate)
        except rolling.OperationError as exc:
            raise DeployError(f"{host.name}: {exc}") from None
        print(f"    [{host.name}] rolling recreate: {'; '.join(done)}")

    python.call(
        name="Restart changed members in new containers, one at a time (replicas first)",
        function=roll,
        _if=lambda: any(_stack_changed(n) for n in names),
    )


def _runner(target: Any) -> Run:
    def run(command: str) -> tuple[bool, str, str]:
        ok, output = target.run_shell_command(StringCommand(command))
        return ok, output.stdout, output.stderr

    return run


def _parameters(doc: Any) -> dict[str, Any]:
    return dict(((doc or {}).get("postgresql") or {}).get("parameters") or {})


def restart_pending(s: Settings) -> None:
    """On the seed: roll the restarts a parameter change (or a stopped roll) left."""
    ctx = context(s)
    if ctx is None or not is_seed(s):
        return
    cluster, member = ctx
    current = host.get_fact(PatroniDcsConfig, container=s.container_name)
    members = host.get_fact(PatroniMembers, container=s.container_name)
    if current is None or members is None:  # a new cluster: nothing runs old settings
        return
    desired = dcs.desired(s, cluster)
    lines = host.get_fact(FileContents, path=f"{s.layout.state}/{DCS_MANAGED}")
    before = json.loads("\n".join(lines)) if lines else []
    change = dcs.patch(current, desired, before)
    changed_params = bool(_parameters(change))
    pending = any(m.get("Pending restart") for m in members)
    if not (changed_params or pending):
        return
    lowered = rolling.lowered(_parameters(current), _parameters(desired))
    max_lag = parse_size(s.postgres_replica_max_lag)  # "16MB" in the inventory
    holder = _holder("rolling restart")
    seed = Seed(_runner(host), s.container_name, cluster, member.name)
    # Patroni applies a DCS change on its next loop (within loop_wait) and flags members
    settle = float(cluster.loop_wait * 2 + 5) if changed_params else 0.0

    def roll() -> None:
        try:
            done = restart_roll(seed, holder, max_lag, lowered, settle)
        except rolling.OperationError as exc:
            raise DeployError(f"{host.name}: {exc}") from None
        print(f"    [{host.name}] rolling restart: {'; '.join(done) or 'nothing pending'}")

    what = "lowering " + ", ".join(lowered) + ": leader first" if lowered else "replicas first"
    python.call(
        name=f"Restart the members pending a restart, one at a time ({what}, one switchover)",
        function=roll,
    )
