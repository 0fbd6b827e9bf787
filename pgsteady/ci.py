"""``make ci``: one pipeline step that checks, previews, converges and verifies an inventory.

    python -m pgsteady.ci --inventory inventory/staging.py [--junit verify.xml]

Stages, in order; the first that fails stops the run, is named on the last line and in
the JUnit file, and makes the exit status non-zero:

``ssh``       the inventory's connection values are safe to hand to ssh (no option or
              ssh_config keyword smuggled in: pgsteady.inventory.connection_problems);
              every SSH host pins its host key (``ssh_strict_host_key_checking = "yes"``
              with an ``ssh_known_hosts_file``: pyinfra's default ``accept-new`` trusts
              whatever key a fresh runner meets first, and without the file the
              runner's own ~/.ssh/known_hosts decides) and its ``ssh_key`` file is
              private (no group/other bits).
``settings``  every host's settings validate against its facts (read-only commands);
              values of sensitive settings (commands, URLs) are redacted in the error.
``dry-run``   ``pyinfra --dry``: preflight checks and the list of what would change.
``state``     the dry run made no new CA or pgBackRest passphrase in ``.pgsteady/``: a
              runner that did not restore that directory from the CI's secret store would
              otherwise issue new certificates and a passphrase no repository accepts.
              ``--allow-new-state`` permits it once (the first converge of an inventory);
              save the directory afterwards. Files a refused dry run made are removed.
``deploy``    ``pyinfra -y``: the converge.
``verify``    ``python -m pgsteady.verify`` with JUnit output.

Nothing prompts: every child runs with stdin closed. Secrets are never printed. A private
key and a known_hosts text in ``PGSTEADY_SSH_PRIVATE_KEY`` / ``PGSTEADY_SSH_KNOWN_HOSTS``
(as CI secret stores hand them over) are written 0600 into a private temporary directory,
passed to the children as ``PGSTEADY_SSH_KEY_FILE`` / ``PGSTEADY_SSH_KNOWN_HOSTS_FILE``
(which the inventory reads; docs/ci.md), removed from the children's environment, and
deleted at the end, also when the job is cancelled: SIGTERM, SIGHUP and SIGINT stop the
running child's whole process group, remove the files, mark the stage failed in the JUnit
file and exit 128 + the signal number.

Above 400 lines because the six stages share one run: the secrets written for it,
the child process group a cancel must stop, and the log and JUnit records of every stage.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from pgsteady.inventory import REPO, InventoryError, InventoryHost, load_inventory

STAGES = ("ssh", "settings", "dry-run", "state", "deploy", "verify")
#: Secret texts CI stores hand over as variables, and the file variables made from them.
SECRET_FILES = {
    "PGSTEADY_SSH_PRIVATE_KEY": ("PGSTEADY_SSH_KEY_FILE", "id_ssh"),
    "PGSTEADY_SSH_KNOWN_HOSTS": ("PGSTEADY_SSH_KNOWN_HOSTS_FILE", "known_hosts"),
}
STATE_DIR = ".pgsteady"  # tasks/tls.py: the CA and the shared passphrases, per inventory
BIN = Path(sys.executable).parent
#: A cancelled CI job (GitLab and GitHub send SIGTERM), a closed terminal, Ctrl-C.
CANCEL_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)
#: How long a child's process group has after SIGTERM before SIGKILL.
CHILD_GRACE = 10.0


class StageFailed(Exception):
    """A stage failed; the message says what to fix."""


class Cancelled(BaseException):
    """A cancel signal arrived; raised from the handler so every ``finally`` runs."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_cancelled(signum: int, frame: FrameType | None) -> None:
    for s in CANCEL_SIGNALS:  # the clean-up that follows is not interrupted again
        signal.signal(s, signal.SIG_IGN)
    raise Cancelled(signum)


@contextmanager
def cancellable() -> Iterator[None]:
    """Within the block, a cancel signal raises :class:`Cancelled` (handlers restored after)."""
    old = {s: signal.signal(s, _raise_cancelled) for s in CANCEL_SIGNALS}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


@dataclass
class StageResult:
    """One stage's outcome for the log and the JUnit file."""

    name: str
    outcome: str  # passed | failed | skipped
    message: str = ""
    seconds: float = 0.0


@dataclass
class Run:
    """Every stage of one ``make ci`` run."""

    results: list[StageResult] = field(default_factory=list)

    @property
    def failed(self) -> StageResult | None:
        return next((r for r in self.results if r.outcome == "failed"), None)


# --- checks that need no host ------------------------------------------------------------


def is_ssh_host(h: InventoryHost) -> bool:
    """True for hosts pyinfra reaches over SSH (plain names and ``@ssh/...``)."""
    return h.uses_ssh


def ssh_problems(hosts: list[InventoryHost]) -> list[str]:
    """What makes an inventory's SSH access unsafe or unusable on a CI runner."""
    problems = []
    for h in filter(is_ssh_host, hosts):
        checking = h.data.get("ssh_strict_host_key_checking")
        if str(checking).lower() != "yes":
            problems.append(
                f"{h.name}: ssh_strict_host_key_checking = {checking!r}: use 'yes' with "
                "ssh_known_hosts_file pinned from the CI's secret store (pyinfra's default "
                "'accept-new' trusts any key a fresh runner sees first)"
            )
        key = h.data.get("ssh_key")
        if key:
            path = Path(str(key)).expanduser()
            try:
                mode = path.stat().st_mode
            except OSError as exc:
                problems.append(f"{h.name}: ssh_key = {str(key)!r}: {exc.strerror}")
                continue
            if mode & 0o077:
                problems.append(
                    f"{h.name}: ssh_key = {str(key)!r} is mode {stat.S_IMODE(mode):04o}: "
                    "it must be 0600 (write it with umask 077)"
                )
        known = h.data.get("ssh_known_hosts_file")
        if not known:
            problems.append(
                f"{h.name}: ssh_known_hosts_file is not set: pin the host key in a file "
                "(PGSTEADY_SSH_KNOWN_HOSTS from the CI's secret store, docs/ci.md); without "
                "it the runner's own ~/.ssh/known_hosts decides which key is trusted"
            )
        elif not Path(str(known)).expanduser().is_file():
            problems.append(f"{h.name}: ssh_known_hosts_file = {str(known)!r}: no such file")
    return problems


def state_directories(inventory: Path, hosts: list[InventoryHost]) -> list[Path]:
    """Where the deploy keeps each host's CA and passphrases (tasks/tls.ca_directory)."""
    dirs = []
    for h in hosts:
        custom = h.data.get("postgres_tls_ca_dir")
        path = REPO / str(custom) if custom else inventory.parent / STATE_DIR / inventory.stem
        if path not in dirs:
            dirs.append(path)
    return dirs


def snapshot(dirs: list[Path]) -> dict[Path, str]:
    """Every file and directory under ``dirs`` (and the dirs' parents) with a digest."""
    found: dict[Path, str] = {}
    for top in dirs:
        for parent in (top.parent, top):
            if parent.is_dir():
                found.setdefault(parent, "dir")
        if not top.is_dir():
            continue
        for root, subdirs, names in os.walk(top):
            for d in subdirs:
                found[Path(root, d)] = "dir"
            for name in names:
                path = Path(root, name)
                found[path] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def state_changes(before: Mapping[Path, str], after: Mapping[Path, str]) -> list[Path]:
    """Files the run created or changed."""
    return sorted(p for p, d in after.items() if d != "dir" and before.get(p) != d)


def undo_new(before: Mapping[Path, str], after: Mapping[Path, str]) -> None:
    """Remove what a refused dry run created (deepest first; changed files stay)."""
    for path in sorted(set(after) - set(before), key=lambda p: len(p.parts), reverse=True):
        if after[path] == "dir":
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


# --- secrets from the CI store -------------------------------------------------------------


@contextmanager
def secret_files(env: os._Environ[str] | dict[str, str]) -> Iterator[None]:
    """Move secret texts of ``env`` into 0600 files named by their file variables.

    The texts leave ``env`` (children never see them); the files and their variables go
    when the block ends, however it ends (a cancel signal cannot cut the removal short).
    """
    wanted = [name for name in SECRET_FILES if env.get(name)]
    tmp = ""
    try:
        tmp = tempfile.mkdtemp(prefix="pgsteady-ci-")  # 0700
        for name in wanted:
            target, filename = SECRET_FILES[name]
            path = Path(tmp) / filename
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(env.pop(name).strip() + "\n")
            env[target] = str(path)
        yield
    finally:
        # A cancel signal now waits until the files are gone (then raises as usual).
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, CANCEL_SIGNALS)
        try:
            if tmp:
                shutil.rmtree(tmp, ignore_errors=True)
            for name in wanted:
                env.pop(SECRET_FILES[name][0], None)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)


# --- the stages --------------------------------------------------------------------------------


def say(text: str) -> None:
    print(f"==> ci: {text}", flush=True)


def stop_group(proc: subprocess.Popen[bytes]) -> None:
    """End ``proc``'s process group: SIGTERM, then SIGKILL after :data:`CHILD_GRACE`."""
    for sig, wait in ((signal.SIGTERM, CHILD_GRACE), (signal.SIGKILL, None)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
        if sig == signal.SIGTERM:  # the leader is gone: end what it left in the group
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        break


def run_child(argv: list[str]) -> int:
    """Run a child with stdin closed; its output goes straight to the CI log.

    The child leads its own process group, so a cancelled run ends it and everything it
    started (pyinfra's ssh connections, verify's pytest) rather than the leader alone.
    """
    say("$ " + " ".join(argv))
    proc = subprocess.Popen(argv, cwd=REPO, stdin=subprocess.DEVNULL, process_group=0)
    try:
        return proc.wait()
    finally:
        if proc.returncode is None:
            stop_group(proc)


def check_settings(hosts: list[InventoryHost]) -> None:
    """Every host's Settings from its data and facts, as the deploy will build them."""
    from pgsteady.settings import SettingsError, build_settings
    from pgsteady.stack.hostfacts import read_host_facts
    from pgsteady.verify import runner_for

    problems = []
    for h in hosts:
        try:
            build_settings(h.data, read_host_facts(runner_for(h)), host=h.name)
        except SettingsError as exc:
            problems += [f"{h.name}: {e}" for e in exc.errors]
        except (ConnectionError, subprocess.TimeoutExpired) as exc:
            problems.append(f"{h.name}: cannot read its facts: {exc}")
    if problems:
        raise StageFailed("\n".join(problems))


@dataclass
class Pipeline:
    """The stages of one run over one inventory."""

    inventory: Path
    junit: Path | None
    allow_new_state: bool
    hosts: list[InventoryHost] = field(default_factory=list)
    run: Run = field(default_factory=Run)
    #: The state directories' snapshots before and after the dry run.
    state: tuple[dict[Path, str], dict[Path, str]] = field(default_factory=lambda: ({}, {}))
    #: The signal that cancelled the run, if one did.
    cancelled: int | None = None

    def pyinfra(self, *args: str) -> list[str]:
        return [str(BIN / "pyinfra"), *args, str(self.inventory), "deploy.py"]

    def stage_ssh(self) -> None:
        try:
            self.hosts = load_inventory(self.inventory)
        except InventoryError as exc:
            raise StageFailed(str(exc)) from None
        if problems := ssh_problems(self.hosts):
            raise StageFailed("\n".join(problems))

    def stage_settings(self) -> None:
        check_settings(self.hosts)

    def stage_dry_run(self) -> None:
        dirs = state_directories(self.inventory, self.hosts)
        before = snapshot(dirs)
        try:
            code = run_child(self.pyinfra("--dry"))
        except Cancelled:
            if not self.allow_new_state:
                undo_new(before, snapshot(dirs))
            raise
        self.state = (before, snapshot(dirs))
        if code:
            if not self.allow_new_state:
                undo_new(*self.state)
            raise StageFailed(f"pyinfra --dry exited {code} (preflight or an operation failed)")

    def stage_state(self) -> None:
        before, after = self.state
        changed = state_changes(before, after)
        if not changed:
            return
        names = ", ".join(str(p) for p in changed)
        if self.allow_new_state:
            say(f"new deploy state: {names}; save it to the CI's secret store after this run")
            return
        undo_new(before, after)
        raise StageFailed(
            f"the dry run made new deploy state ({names}): this runner lacks the saved "
            f"{STATE_DIR}/ directory, and a converge would issue a new CA or repository "
            "passphrase. Restore it from the CI's secret store (docs/ci.md), or pass "
            "ALLOW_NEW_STATE=1 for an inventory's first converge and save it afterwards"
        )

    def stage_deploy(self) -> None:
        if code := run_child(self.pyinfra("-y")):
            raise StageFailed(f"pyinfra exited {code}")

    def stage_verify(self) -> None:
        argv = [str(BIN / "python"), "-m", "pgsteady.verify", "--inventory", str(self.inventory)]
        argv += ["--junit", str(self.junit)] if self.junit else []
        if code := run_child(argv):
            raise StageFailed(f"make verify found failed checks (exit {code}); see FAIL lines")

    def execute(self) -> Run:
        """Run the stages; a :class:`Cancelled` fails the current one and skips the rest."""
        for name in STAGES:
            if self.run.failed:
                self.run.results.append(StageResult(name, "skipped", "an earlier stage failed"))
                continue
            say(f"stage {name}")
            started = time.monotonic()
            try:
                getattr(self, "stage_" + name.replace("-", "_"))()
                result = StageResult(name, "passed")
            except StageFailed as exc:
                result = StageResult(name, "failed", self.redact(str(exc)))
            except Cancelled as exc:
                self.cancelled = exc.signum
                result = StageResult(name, "failed", f"cancelled by {exc}; the children stopped")
            result.seconds = time.monotonic() - started
            self.run.results.append(result)
        return self.run

    def redact(self, message: str) -> str:
        """``message`` without any host's sensitive setting values (a second line of defence:
        settings errors redact them already)."""
        from pgsteady.settings import redact

        for h in self.hosts:
            (message,) = redact([message], h.data)
        return message


# --- JUnit and the command line -----------------------------------------------------------


def add_junit_suite(path: Path, run: Run) -> None:
    """Add a ``pgsteady ci`` suite (one case per stage) to ``path`` (verify's or a new file)."""
    root = ET.parse(path).getroot() if path.exists() else ET.Element("testsuites")
    if root.tag == "testsuite":
        wrapper = ET.Element("testsuites")
        wrapper.append(root)
        root = wrapper
    suite = ET.SubElement(
        root,
        "testsuite",
        name="pgsteady ci",
        tests=str(len(run.results)),
        failures=str(sum(r.outcome == "failed" for r in run.results)),
        skipped=str(sum(r.outcome == "skipped" for r in run.results)),
        errors="0",
    )
    for r in run.results:
        case = ET.SubElement(
            suite, "testcase", classname="ci", name=r.name, time=f"{r.seconds:.1f}"
        )
        if r.outcome == "failed":
            ET.SubElement(case, "failure", message=r.message.splitlines()[0]).text = r.message
        elif r.outcome == "skipped":
            ET.SubElement(case, "skipped", message=r.message)
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="pgsteady.ci", description=__doc__.split("\n")[0])
    p.add_argument("--inventory", required=True, help="pyinfra inventory file")
    p.add_argument("--junit", help="write JUnit XML here (verify's checks + the stages)")
    p.add_argument(
        "--allow-new-state",
        action="store_true",
        help=f"let this run create the inventory's {STATE_DIR}/ CA and passphrases",
    )
    args = p.parse_args(argv)
    junit = Path(args.junit).resolve() if args.junit else None
    if junit:
        junit.unlink(missing_ok=True)  # never report an old run's verdict
    pipeline = Pipeline(Path(args.inventory).resolve(), junit, args.allow_new_state)
    try:
        with cancellable(), secret_files(os.environ):
            pipeline.execute()
    except Cancelled as exc:  # between two stages: nothing was running
        pipeline.cancelled = exc.signum
    return report(pipeline.run, junit, pipeline.cancelled)


def report(run: Run, junit: Path | None, cancelled: int | None = None) -> int:
    """Write the JUnit suite, print the summary; the exit status of the run."""
    if junit:
        add_junit_suite(junit, run)
    for r in run.results:
        say(f"{r.name:<9} {r.outcome:<8} {r.seconds:6.1f}s")
    if failed := run.failed:
        say(f"FAILED at stage {failed.name}:\n{failed.message}")
        return 128 + cancelled if cancelled else 1
    if cancelled:
        say(f"cancelled by {signal.Signals(cancelled).name}")
        return 128 + cancelled
    say("OK: converged and verified")
    return 0


if __name__ == "__main__":
    sys.exit(main())
