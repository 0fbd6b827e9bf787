"""``make verify``: the production-readiness suite (tests/verify, testinfra) per host.

For every host of a pyinfra inventory this reads the host's facts with the deploy's own
commands (:mod:`pgsteady.stack.hostfacts`), builds its Settings from the same data with
:func:`build_settings`, and runs ``pytest --hosts=<spec> tests/verify`` with those
Settings. Every failing check prints ONE line: what is wrong and the command that fixes
it. A table sums up passed/failed/skipped checks per host and group; the exit status is
non-zero when any check failed.

    python -m pgsteady.verify --inventory inventory/production.py [--junit verify.xml]

Above 400 lines because it is one command: inventory to testinfra spec, the run per
host, and the summary and JUnit merge that follow it.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from pgsteady import units
from pgsteady.inventory import REPO, InventoryHost, connection_problems, load_inventory
from pgsteady.settings import HostFacts, Settings, SettingsError, build_settings
from pgsteady.stack import apt_candidate
from pgsteady.stack.hostfacts import read_host_facts
from pgsteady.stack.schedule_syntax import max_gap

SUITE = REPO / "tests" / "verify"
CONTEXT_ENV = "PGSTEADY_VERIFY_CONTEXT"
RESULTS_ENV = "PGSTEADY_VERIFY_RESULTS"
GROUPS = ("host", "docker", "container", "postgres", "security", "backups", "metrics")
#: Added to the schedule's longest gap before a backup counts as overdue.
BACKUP_GRACE = timedelta(hours=1)


# --- the check helper used by tests/verify ----------------------------------------------


class CheckFailed(AssertionError):
    """A failed check: what is wrong (one line) and the command that fixes it."""

    def __init__(self, what: str, fix: str | None = None) -> None:
        super().__init__(what)
        self.what = what
        self.fix = fix


def check(ok: object, what: str, fix: str | None = None) -> None:
    """Fail the current check with ``what`` (and ``fix``) unless ``ok`` is truthy."""
    if not ok:
        raise CheckFailed(what, fix)


@dataclass(frozen=True)
class Fixes:
    """Fix commands for one host: ``make deploy`` here, or a command run on the host."""

    inventory: str
    prefix: tuple[str, ...] = ()

    @property
    def deploy(self) -> str:
        return f"make deploy INVENTORY={self.inventory}"

    def on_host(self, command: str) -> str:
        """``command`` as typed on this machine: as is for @local, through ssh otherwise."""
        if not self.prefix:
            return command
        ssh, sudo = self.prefix, False
        if ssh[-1] == "sudo":  # the whole command runs as root, && and all
            ssh, sudo = ssh[:-1], True
        remote = f"sudo sh -c {shlex.quote(command)}" if sudo else command
        return f"{shlex.join(ssh)} {shlex.quote(remote)}"


@dataclass(frozen=True)
class VerifyContext:
    """What the suite needs to know about its host; travels as JSON to the pytest run."""

    host: str
    inventory: str
    data: dict[str, Any]
    facts: HostFacts
    prefix: tuple[str, ...] = ()
    #: A cluster's etcd hosts by the inventory (name -> peer URL); empty off clusters.
    etcd_peers: dict[str, str] = field(default_factory=dict)
    #: A cluster's members by the inventory (name -> private address); empty off clusters.
    cluster_members: dict[str, str] = field(default_factory=dict)
    #: Where the driver's :class:`~pgsteady.stack.apt_candidate.Lookup` writes its answer.
    apt_candidate_file: str = ""

    @property
    def settings(self) -> Settings:
        return build_settings(self.data, self.facts, host=self.host)

    @property
    def fixes(self) -> Fixes:
        return Fixes(self.inventory, self.prefix)

    def dump(self) -> str:
        body = {**asdict(self), "facts": asdict(self.facts), "prefix": list(self.prefix)}
        return json.dumps(body, default=str)

    @classmethod
    def load(cls, text: str) -> VerifyContext:
        body = json.loads(text)
        return cls(
            host=body["host"],
            inventory=body["inventory"],
            data=body["data"],
            facts=HostFacts(**body["facts"]),
            prefix=tuple(body["prefix"]),
            etcd_peers=dict(body.get("etcd_peers") or {}),
            cluster_members=dict(body.get("cluster_members") or {}),
            apt_candidate_file=str(body.get("apt_candidate_file") or ""),
        )

    def cluster(self) -> Any:
        """The host's validated cluster (pgsteady.cluster.topology.Cluster), or None."""
        if not self.cluster_members:
            return None
        from pgsteady.cluster.inventory import cluster_of
        from pgsteady.settings import defaults

        hosts = [
            (name, {**self.data, "postgres_cluster_address": address})
            for name, address in self.cluster_members.items()
        ]
        return cluster_of(self.data["postgres_cluster_name"], hosts, defaults())


# --- results ----------------------------------------------------------------------------


@dataclass
class CheckResult:
    """The outcome of one check on one host."""

    host: str
    group: str
    name: str
    outcome: str  # passed | failed | skipped
    what: str = ""
    fix: str = ""

    @property
    def check_id(self) -> str:
        return f"{self.group}/{self.name}"


def check_name(
    path: str, function: str, params: dict[str, object] | None = None
) -> tuple[str, str]:
    """(group, check) of a test: ``test_security.py``, ``test_no_trust`` → security, no_trust.

    Parameters other than testinfra's host become a suffix: ``config_file_matches[pg_hba.conf]``.
    """
    group = Path(path).stem.removeprefix("test_")
    name = function.removeprefix("test_")
    shown = [str(v) for k, v in (params or {}).items() if not k.startswith("_testinfra")]
    return group, name + (f"[{','.join(shown)}]" if shown else "")


def fix_line(r: CheckResult) -> str:
    """The one line printed for a failed check."""
    what = " ".join(r.what.split()) or "failed"
    return f"FAIL [{r.host}] {r.check_id}: {what} -- fix: {r.fix or 'see the check'}"


def skip_line(r: CheckResult) -> str:
    return f"SKIP [{r.host}] {r.check_id}: {' '.join(r.what.split())}"


# --- backup schedule period ---------------------------------------------------------------


def backup_deadline(schedule: str) -> timedelta | None:
    """How old the newest successful backup may be: the longest gap plus the grace."""
    gap = max_gap(schedule)
    return None if gap is None else gap + BACKUP_GRACE


def human_duration(delta: timedelta) -> str:
    """A timedelta in the one duration format of verify and monitor."""
    return units.human_duration(delta.total_seconds())


# --- inventory → testinfra --------------------------------------------------------------


def ssh_config(hosts: Iterable[InventoryHost], control_dir: str | None = None) -> str:
    """An ssh_config with one ``Host`` block per SSH host (its key, port, known_hosts).

    With ``control_dir``, connections share one master per host (closed by
    :func:`close_ssh_master`): a suite of ~60 commands then costs one SSH handshake.
    Values that ssh_config would read as another keyword or a token are refused
    (:func:`pgsteady.inventory.connection_problems`; load_inventory refuses them first).
    """
    blocks = []
    for h in hosts:
        if h.is_local:
            continue
        if problems := connection_problems(h):
            raise ValueError("; ".join(problems))
        d = h.data
        lines = [f"Host {h.ssh_hostname}", f"  HostName {h.ssh_hostname}", "  BatchMode yes"]
        if control_dir:
            lines += [f"  ControlPath {control_dir}/cm-%C", "  ControlMaster auto"]
        if d.get("ssh_user"):
            lines.append(f"  User {d['ssh_user']}")
        if d.get("ssh_port"):
            lines.append(f"  Port {d['ssh_port']}")
        if d.get("ssh_key"):
            lines.append(f"  IdentityFile {Path(str(d['ssh_key'])).expanduser()}")
            lines.append("  IdentitiesOnly yes")
        if d.get("ssh_known_hosts_file"):
            lines.append(
                f"  UserKnownHostsFile {Path(str(d['ssh_known_hosts_file'])).expanduser()}"
            )
        if d.get("ssh_strict_host_key_checking") is not None:
            lines.append(f"  StrictHostKeyChecking {d['ssh_strict_host_key_checking']}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


def pytest_command(h: InventoryHost, ssh_config_path: str | None, junit: str | None) -> list[str]:
    """The pytest run of the suite against one host."""
    cmd = [sys.executable, "-m", "pytest", str(SUITE), f"--hosts={h.testinfra_spec()}"]
    cmd += ["-q", "--tb=no", "-p", "no:cacheprovider", "-o", "addopts=", "--rootdir", str(REPO)]
    if not h.is_local and ssh_config_path:
        cmd.append(f"--ssh-config={ssh_config_path}")
    if junit:
        cmd += [f"--junitxml={junit}", "-o", f"junit_suite_name={h.name}"]
    return cmd


def runner_for(h: InventoryHost) -> Callable[[str], str]:
    """``run(command) -> stdout`` on the host: sh here for @local, ssh otherwise."""

    def run(command: str) -> str:
        argv = h.shell_argv(command)
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        if proc.returncode == 255 and not h.is_local:
            raise ConnectionError(f"cannot reach {h.name}: {proc.stderr.strip()}")
        return proc.stdout

    return run


def fix_prefix(h: InventoryHost) -> tuple[str, ...]:
    """How a fix command is run on the host from here (shortened ssh prefix)."""
    if h.is_local:
        return ()
    user = h.data.get("ssh_user")
    prefix = ["ssh"]
    if h.data.get("ssh_port"):
        prefix += ["-p", str(h.data["ssh_port"])]
    # "--" ends ssh's options: the target can never be read as one (the inventory's
    # values are validated too; this keeps a copied fix line safe on its own).
    prefix += ["--", f"{user}@{h.ssh_hostname}" if user else h.ssh_hostname]
    return (*prefix, "sudo") if h.data.get("_sudo") else tuple(prefix)


@dataclass
class HostRun:
    """The results of verifying one host."""

    host: str
    results: list[CheckResult] = field(default_factory=list)
    junit: str | None = None


def verify_backup_host(h: InventoryHost, hosts: list[InventoryHost], inventory: str) -> HostRun:
    """A backup host (no Postgres): its repository server and each stanza it serves."""
    from pgsteady.backup import repository_checks

    run = HostRun(h.name)
    try:
        runner = runner_for(h)
        s = build_settings(h.data, read_host_facts(runner), host=h.name)
        checks = repository_checks.check(h, s, hosts, runner)
    except (ConnectionError, subprocess.TimeoutExpired) as exc:
        fix = f"check the SSH access the inventory describes: {shlex.join(h.command_prefix())} true"
        run.results.append(CheckResult(h.name, "host", "reachable", "failed", str(exc), fix))
        return run
    except SettingsError as exc:
        run.results += [
            CheckResult(h.name, "host", "settings", "failed", e, f"edit {inventory}")
            for e in exc.errors
        ]
        return run
    for name, ok, what, fix in checks:
        fix = fix.replace("<inventory>", inventory)
        outcome = "passed" if ok else "failed"
        run.results.append(CheckResult(h.name, "repository", name, outcome, what, fix))
    return run


def _cluster_of(h: InventoryHost, hosts: list[InventoryHost]) -> Any:
    """``h``'s validated cluster by the inventory, or None (a single host, or an invalid
    cluster: the deploy names its problems)."""
    from pgsteady.cluster.inventory import cluster_of
    from pgsteady.cluster.topology import ClusterError
    from pgsteady.settings import defaults

    name = h.data.get("postgres_cluster_name")
    if not name:
        return None
    try:
        return cluster_of(name, [(x.name, x.data) for x in hosts], defaults())
    except ClusterError:
        return None


def cluster_members_of(h: InventoryHost, hosts: list[InventoryHost]) -> dict[str, str]:
    """The members of ``h``'s cluster (name -> private address); empty off clusters."""
    cluster = _cluster_of(h, hosts)
    return {m.name: m.address for m in cluster.members} if cluster else {}


def etcd_peers_of(h: InventoryHost, hosts: list[InventoryHost]) -> dict[str, str]:
    """The etcd hosts of ``h``'s cluster (name -> peer URL) as the inventory has them;
    empty for a single host or an invalid cluster (the deploy names its problems)."""
    from pgsteady.cluster.etcd_health import expected_peers

    cluster = _cluster_of(h, hosts)
    return expected_peers(cluster) if cluster else {}


def verify_host(
    h: InventoryHost,
    inventory: str,
    workdir: Path,
    want_junit: bool,
    etcd_peers: dict[str, str] | None = None,
    cluster_members: dict[str, str] | None = None,
) -> HostRun:
    """Run the suite against one host and collect its check results."""
    run = HostRun(h.name)
    slug = "".join(c if c.isalnum() else "_" for c in h.name)
    apt_file = workdir / f"{slug}.apt.json"
    try:
        facts = read_host_facts(runner_for(h))
        ctx = VerifyContext(
            h.name, inventory, h.data, facts, fix_prefix(h), etcd_peers or {},
            cluster_members or {}, str(apt_file),
        )  # fmt: skip
        s = ctx.settings  # validated before connecting pytest
    except (ConnectionError, subprocess.TimeoutExpired) as exc:
        fix = f"check the SSH access the inventory describes: {shlex.join(h.command_prefix())} true"
        run.results.append(CheckResult(h.name, "host", "reachable", "failed", str(exc), fix))
        return run
    except SettingsError as exc:
        for error in exc.errors:
            run.results.append(
                CheckResult(h.name, "host", "settings", "failed", error, f"edit {inventory}")
            )
        return run
    # image/minor_version_current's apt download, overlapping the other checks
    apt_file.unlink(missing_ok=True)  # never another host's answer (slugs can collide)
    argv = h.shell_argv(apt_candidate.command(s.container_name, s.postgres_version))
    lookup = apt_candidate.Lookup(argv, s.postgres_version, apt_file).start()
    context_file = workdir / f"{slug}.context.json"
    results_file = workdir / f"{slug}.results.json"
    context_file.write_text(ctx.dump())
    config = workdir / "ssh_config"
    config.write_text(ssh_config([h], control_dir=str(workdir)))
    junit = str(workdir / f"{slug}.junit.xml") if want_junit else None
    env = dict(os.environ, **{CONTEXT_ENV: str(context_file), RESULTS_ENV: str(results_file)})
    proc = subprocess.run(
        pytest_command(h, str(config), junit), cwd=REPO, env=env, capture_output=True, text=True
    )
    lookup.join()
    if not h.is_local:
        close_ssh_master(h, config)
    if results_file.exists():
        run.results = [CheckResult(**r) for r in json.loads(results_file.read_text())]
    if proc.returncode not in (0, 1) or not run.results:
        what = f"the verify suite did not run (pytest exit {proc.returncode})"
        print((proc.stdout + proc.stderr)[-4000:], file=sys.stderr)
        run.results.append(CheckResult(h.name, "host", "suite", "failed", what, ""))
    run.junit = junit if junit and Path(junit).exists() else None
    return run


def close_ssh_master(h: InventoryHost, config: Path) -> None:
    """End the shared SSH connection testinfra's runs left behind (ControlPersist)."""
    subprocess.run(
        ["ssh", "-F", str(config), "-O", "exit", h.ssh_hostname],
        capture_output=True,
        timeout=30,
        check=False,
    )


def merge_junit(paths: list[str], dest: str) -> None:
    """One JUnit file with a <testsuite> per host."""
    root = ET.Element("testsuites")
    for path in paths:
        tree = ET.parse(path).getroot()
        suites = [tree] if tree.tag == "testsuite" else list(tree)
        root.extend(suites)
    Path(dest).parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(root).write(dest, encoding="utf-8", xml_declaration=True)


def summary_rows(results: list[CheckResult]) -> list[tuple[str, str, int, int, int]]:
    """(host, group, passed, failed, skipped) per host and group, in suite order."""
    rows = []
    hosts = list(dict.fromkeys(r.host for r in results))
    groups = list(GROUPS) + sorted({r.group for r in results} - set(GROUPS))
    for host in hosts:
        for group in groups:
            mine = [r for r in results if r.host == host and r.group == group]
            if mine:
                counts = [
                    sum(r.outcome == o for r in mine) for o in ("passed", "failed", "skipped")
                ]
                rows.append((host, group, *counts))
    return rows


def print_summary(results: list[CheckResult]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="pgsteady verify")
    for name in ("host", "group", "passed", "failed", "skipped"):
        table.add_column(
            name, justify="right" if name in ("passed", "failed", "skipped") else "left"
        )
    for host, group, passed, failed, skipped in summary_rows(results):
        style = "red" if failed else ("yellow" if skipped else "green")
        table.add_row(host, group, str(passed), str(failed), str(skipped), style=style)
    total = [sum(r.outcome == o for r in results) for o in ("passed", "failed", "skipped")]
    table.add_section()
    table.add_row("total", "", *(str(n) for n in total), style="bold")
    Console(width=max(100, Console().width)).print(table)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="pgsteady.verify", description=__doc__.split("\n")[0])
    p.add_argument("--inventory", required=True, help="pyinfra inventory file")
    p.add_argument("--junit", help="write JUnit XML here")
    args = p.parse_args(argv)
    hosts = load_inventory(Path(args.inventory).resolve())
    results: list[CheckResult] = []
    junits: list[str] = []
    with tempfile.TemporaryDirectory(prefix="pgsteady-verify-") as tmp:
        for h in hosts:
            print(f"verify {h.name} ({h.testinfra_spec()})", flush=True)
            if h.is_backup_host:
                run = verify_backup_host(h, hosts, args.inventory)
            else:
                peers, members = etcd_peers_of(h, hosts), cluster_members_of(h, hosts)
                run = verify_host(h, args.inventory, Path(tmp), bool(args.junit), peers, members)
            for r in run.results:
                if r.outcome == "failed":
                    print(fix_line(r), flush=True)
            results += run.results
            junits += [run.junit] if run.junit else []
        if args.junit and junits:
            merge_junit(junits, args.junit)
    for r in results:
        if r.outcome == "skipped":
            print(skip_line(r))
    print_summary(results)
    failed = sum(r.outcome == "failed" for r in results)
    print(f"{len(results)} checks: {failed} failed" if failed else f"{len(results)} checks: OK")
    return 1 if failed or not results else 0


if __name__ == "__main__":
    sys.exit(main())
