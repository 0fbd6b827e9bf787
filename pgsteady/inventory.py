"""Read a pyinfra inventory file the way the deploy sees it, for verify and monitor.

Each host comes with its merged data (inventory + group_data) and the connection
details other tools need: a testinfra host spec (``local://`` or ``ssh://``) and
an ssh command prefix.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent

# What the inventory may pass to the ssh client, its argv and the ssh_config verify writes
# (pgsteady/verify.py ssh_config): a leading '-' would be read as an option, whitespace or
# a newline as another ssh_config keyword (ProxyCommand runs a local command), and '%' /
# '${' as ssh_config tokens.
_HOST = re.compile(r"[A-Za-z0-9:][A-Za-z0-9._:-]*")
_USER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_PATH_REFUSED = re.compile(r"[\s\x00-\x1f\x7f%$\"'\\]")
HOST_KEY_CHECKING = ("yes", "accept-new", "no", "off", "ask")
ACCEPTED = {
    "ssh_hostname": "a host name or IP address: letters, digits, '.', '-', '_', ':', "
    "starting with a letter, digit or ':'",
    "ssh_user": "a user name: letters, digits, '.', '-', '_', not starting with '-' or '.'",
    "ssh_key": "a path without whitespace, control characters, quotes, backslashes, '%' or "
    "'$', not starting with '-'",
    "ssh_port": "a port number 1-65535",
    "ssh_connect_timeout": "a whole number of seconds, at least 1",
    "ssh_strict_host_key_checking": " or ".join(repr(v) for v in HOST_KEY_CHECKING),
}
ACCEPTED["ssh_known_hosts_file"] = ACCEPTED["ssh_key"]


def _value_ok(key: str, value: Any) -> bool:
    if key == "ssh_hostname":
        return isinstance(value, str) and bool(_HOST.fullmatch(value))
    if key == "ssh_user":
        return isinstance(value, str) and bool(_USER.fullmatch(value))
    if key in ("ssh_key", "ssh_known_hosts_file"):
        text = str(value) if isinstance(value, str | os.PathLike) else ""
        return bool(text) and not text.startswith("-") and not _PATH_REFUSED.search(text)
    if key in ("ssh_port", "ssh_connect_timeout"):
        top = 65535 if key == "ssh_port" else 86400
        digits = str(value) if isinstance(value, int | str) and not isinstance(value, bool) else ""
        return digits.isascii() and digits.isdigit() and 1 <= int(digits) <= top
    return isinstance(value, str) and value.lower() in HOST_KEY_CHECKING


def connection_problems(h: InventoryHost) -> list[str]:
    """Why ``h``'s SSH connection data is unsafe to hand to ssh (empty when it is not)."""
    if not h.uses_ssh:
        return []
    values = {k: h.data.get(k) for k in ACCEPTED if h.data.get(k) is not None}
    values["ssh_hostname"] = h.ssh_hostname
    return [
        f"{h.name}: {key} = {value!r}: use {ACCEPTED[key]}"
        for key, value in values.items()
        if not _value_ok(key, value)
    ]


@dataclass(frozen=True)
class InventoryHost:
    """One host of a pyinfra inventory."""

    name: str
    data: dict[str, Any]
    groups: tuple[str, ...] = ()

    @property
    def is_backup_host(self) -> bool:
        """A host of the ``backup`` group: a pgBackRest repository, no Postgres."""
        return "backup" in self.groups

    @property
    def is_local(self) -> bool:
        return self.name == "@local"

    @property
    def uses_ssh(self) -> bool:
        """True for hosts pyinfra reaches over SSH (plain names and ``@ssh/...``)."""
        return self.name.startswith("@ssh/") or not self.name.startswith("@")

    @property
    def ssh_hostname(self) -> str:
        return str(self.data.get("ssh_hostname") or self.name.removeprefix("@ssh/"))

    def testinfra_spec(self) -> str:
        """``local://`` for @local, else ``ssh://user@host:port`` (key passed separately)."""
        if self.is_local:
            return "local://"
        user = self.data.get("ssh_user")
        port = self.data.get("ssh_port")
        spec = f"ssh://{user + '@' if user else ''}{self.ssh_hostname}"
        spec += f":{port}" if port else ""
        if self.data.get("_sudo"):
            spec += "?sudo=true"
        return spec

    def ssh_options(self) -> list[str]:
        """Options for the ssh client matching the inventory's connection data."""
        timeout = int(self.data.get("ssh_connect_timeout") or 10)
        opts = ["-o", "BatchMode=yes", "-o", f"ConnectTimeout={timeout}"]
        if self.data.get("ssh_key"):
            opts += ["-i", str(Path(str(self.data["ssh_key"])).expanduser())]
        if self.data.get("ssh_port"):
            opts += ["-p", str(self.data["ssh_port"])]
        if self.data.get("ssh_known_hosts_file"):
            opts += ["-o", f"UserKnownHostsFile={self.data['ssh_known_hosts_file']}"]
        if self.data.get("ssh_strict_host_key_checking") is not None:
            value = self.data["ssh_strict_host_key_checking"]
            opts += ["-o", f"StrictHostKeyChecking={value}"]
        return opts

    def command_prefix(self) -> list[str]:
        """argv prefix that runs a command on this host (empty for @local)."""
        if self.is_local:
            return []
        user = self.data.get("ssh_user")
        target = f"{user}@{self.ssh_hostname}" if user else self.ssh_hostname
        prefix = ["ssh", *self.ssh_options(), "--", target]  # a target is never an option
        return [*prefix, "sudo", "-n"] if self.data.get("_sudo") else prefix

    def shell_argv(self, command: str) -> list[str]:
        """argv that runs the shell ``command`` on this host, ALL of it with the
        inventory's privileges. ssh joins its arguments into one line for the remote
        shell, so after ``sudo -n`` a bare ``a | b`` or ``a && b`` would run only ``a`` as
        root: under ``_sudo`` the command goes as one quoted ``sh -c`` word."""
        if self.is_local:
            return ["sh", "-c", command]
        if self.data.get("_sudo"):
            return [*self.command_prefix(), shlex.join(["sh", "-c", command])]
        return [*self.command_prefix(), command]


class InventoryError(Exception):
    """The inventory file could not be read."""


def load_inventory(path: str | Path, cwd: str | Path = REPO) -> list[InventoryHost]:
    """Every host of a pyinfra inventory file with its merged data (group_data included).

    pyinfra's inventory reader lives in its CLI package, whose import monkey-patches the
    whole process with gevent (threads, select, subprocess, sleep). Callers here use real
    threads, so the file is read in a child process that prints the hosts as JSON.
    """
    proc = subprocess.run(
        [sys.executable, "-m", "pgsteady.inventory", str(Path(path).resolve()), str(cwd)],
        cwd=str(cwd),
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), *sys.path])},
    )
    for line in proc.stdout.splitlines():
        if proc.returncode == 0 and line.startswith(_MARK):
            hosts = [InventoryHost(n, d, tuple(g)) for n, d, g in json.loads(line[len(_MARK) :])]
            if problems := [p for h in hosts for p in connection_problems(h)]:
                raise InventoryError(f"inventory {path}:\n" + "\n".join(problems))
            return hosts
    lines = [ln for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
    detail = lines[-1].strip() if lines else f"exit code {proc.returncode}"
    raise InventoryError(f"cannot read inventory {path}: {detail}")


_MARK = "@@pgsteady-inventory "


def _read_here(path: str, cwd: str) -> list[tuple[str, dict[str, Any], list[str]]]:
    """Read the inventory in this process (gevent-patched by pyinfra's CLI import)."""
    from pyinfra.api import State
    from pyinfra.context import ctx_state
    from pyinfra_cli.inventory import make_inventory

    state = State(check_for_changes=False)
    with ctx_state.use(state):
        inventory = make_inventory(path, cwd=cwd)
    return [(host.name, dict(host.data.dict()), sorted(host.groups)) for host in inventory]


if __name__ == "__main__":
    print(_MARK + json.dumps(_read_here(sys.argv[1], sys.argv[2]), default=str))
