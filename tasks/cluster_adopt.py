"""The cluster deploy's adoption steps (pgsteady/cluster/adopt.py decides when): the
seed's single host restarted under Patroni, and the other members held back until the
seed leads."""

from __future__ import annotations

import shlex
from typing import Any

from pyinfra.api.command import StringCommand
from pyinfra.api.exceptions import DeployError
from pyinfra.api.operation import OperationMeta
from pyinfra.operations import python, server

from pgsteady.cluster import adopt, patroni
from pgsteady.cluster.topology import Cluster, Member
from pgsteady.settings import Settings
from tasks.cluster import member_settings
from tasks.patroni_exec import PATRONICTL, exec_in, has_leader, wait_leader


def seed_step(s: Settings, member: Member) -> OperationMeta:
    """The seed's single-host stack restarted under Patroni on the same data volume (Patroni
    adopts a data directory when the DCS has no initialize key), then the replication and
    pg_rewind roles Patroni makes only after an initdb, before any other member clones,
    and last the seed's record adopt.ADOPTED. Idempotent, to finish an adoption a failed
    deploy left: a container that runs Patroni already (or none at all) is not stopped,
    the roles are created or updated."""
    sql = adopt.roles_sql(
        (patroni.REPLICATION_USER, "/run/secrets/replication_password"),
        (patroni.REWIND_USER, "/run/secrets/rewind_password"),
    )
    psql = exec_in(
        s, ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", "postgres", "-f", "-"], True
    )
    # the member's container is created with command [patroni] (member_service); asking
    # its configuration, not patronictl, keeps a Patroni whose DCS is unreachable running
    runs_patroni = (
        shlex.join(["docker", "inspect", "-f", "{{json .Config.Cmd}}", s.container_name])
        + " 2>/dev/null | grep -qxF '[\"patroni\"]'"
    )
    inspect = shlex.join(["docker", "inspect", "-f", ".", s.container_name])
    return server.shell(
        name="Restart the single host under Patroni (adopting its data), create the roles",
        commands=[
            # frees postgres_port for HAProxy (the services have no start order): the
            # single host's container (no Patroni), unless a killed run left none
            f"{runs_patroni} || ! {inspect} >/dev/null 2>&1 || "
            + shlex.join(["docker", "stop", "--time", "120", s.container_name]),
            f"{s.layout.bin}/pgsteady-ctl up",
            wait_leader(s, member.name),
            # until it accepts writes (the leader key may come just before the promotion)
            f"i=0; until printf '%s' {shlex.quote(sql)} | {psql}; do i=$((i+1)); "
            "[ $i -lt 30 ] || exit 1; sleep 2; done",
            # only now: the next deploy converges this host as an ordinary member
            record_command(s, member),
        ],
    )


def record_command(s: Settings, member: Member) -> str:
    """Shell: write the seed's record adopt.ADOPTED (root 0644, renamed into place)."""
    record = f"{s.layout.state}/{adopt.ADOPTED}"
    tmp = f"{s.layout.state}/.{adopt.ADOPTED}.new"
    return f"umask 022; printf '%s\\n' {shlex.quote(member.name)} > {tmp} && mv -f {tmp} {record}"


def record_completed(s: Settings, member: Member) -> OperationMeta:
    """The record of an adoption that completed before records existed (adopt.unrecorded)."""
    return server.shell(
        name="Write the seed's adoption record (its adoption predates records)",
        commands=[record_command(s, member)],
    )


def require_leader(cluster: Cluster) -> None:
    """While the seed's adoption is pending, a member that does not run yet starts only
    once the seed's Patroni reports a leader (the DCS's leader key): else its Patroni,
    on an empty data directory, would race for the initialize key and initialise a new
    cluster without the seed's data. Asked of the seed at this point of the run (after
    its adoption step, or its failure); a run that did not reach the seed stops here."""
    seed = cluster.members[0].name
    listing = shlex.join(
        ["docker", "exec", "-u", "postgres", member_settings(seed).container_name]
        + [*PATRONICTL, "list", "-f", "json"]
    )

    def check(state: Any, host: Any) -> None:  # pyinfra passes both (FunctionCommand)
        target = state.inventory.get_host(seed)
        sudo = bool(target.data.get("_sudo"))  # as the deploy's own operations run
        ok, out = target.run_shell_command(StringCommand(listing), _sudo=sudo)
        if not (ok and has_leader(out.stdout)):
            raise DeployError(
                f"{host.name}: the seed {seed} is adopting its single host's data and its "
                "Patroni reports no leader: not starting Patroni here (on an empty data "
                "directory it would initialise a new cluster). Deploy again: the seed "
                f"finishes its adoption first ({adopt.RUNBOOK})"
            )

    python.call(
        name=f"Check that the adopting seed {seed} leads before this member starts",
        function=check,
    )
