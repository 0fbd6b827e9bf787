"""Inventory values that reach ssh's argv and the ssh_config verify writes are checked.

A host name like ``-oProxyCommand=...`` or a value with a newline would make the local
ssh client run a command of the inventory's choosing; these are refused where the
inventory is loaded, and the ssh target always follows ``--``.
"""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import pytest

from pgsteady.inventory import InventoryError, InventoryHost, connection_problems, load_inventory
from pgsteady.verify import ssh_config

GOOD = {
    "ssh_user": "deploy",
    "ssh_port": 22,
    "ssh_key": "~/.ssh/id_ed25519",
    "ssh_known_hosts_file": "/etc/pgsteady/known_hosts",
    "ssh_strict_host_key_checking": "yes",
    "ssh_connect_timeout": 10,
}


@pytest.mark.parametrize(
    "name", ["db1.example.internal", "10.0.0.12", "::1", "@ssh/db-2", "fe80::1"]
)
def test_ordinary_connection_values_pass(name: str) -> None:
    assert connection_problems(InventoryHost(name, GOOD)) == []


def test_local_and_other_connectors_are_not_ssh_targets() -> None:
    assert connection_problems(InventoryHost("@local", {"ssh_user": "-oProxyCommand=x"})) == []


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("ssh_hostname", "-oProxyCommand=touch /tmp/pwned"),
        ("ssh_hostname", "db1\n  ProxyCommand touch /tmp/pwned"),
        ("ssh_hostname", "db1 other"),
        ("ssh_hostname", "db%h"),
        ("ssh_user", "-oProxyCommand=x"),
        ("ssh_user", "deploy\nProxyCommand x"),
        ("ssh_user", "de ploy"),
        ("ssh_user", "%u"),
        ("ssh_key", "-oProxyCommand=x"),
        ("ssh_key", "/keys/id\n  ProxyCommand touch /tmp/pwned"),
        ("ssh_key", "/keys/my key"),
        ("ssh_key", "/keys/%d/id"),
        ("ssh_key", "/keys/${HOME}/id"),
        ("ssh_known_hosts_file", "/k/known\tProxyCommand x"),
        ("ssh_known_hosts_file", "/k/%h"),
        ("ssh_port", "22\nProxyCommand x"),
        ("ssh_port", 0),
        ("ssh_port", 70000),
        ("ssh_connect_timeout", "10 -oProxyCommand=x"),
        ("ssh_strict_host_key_checking", "yes\n  ProxyCommand touch /tmp/pwned"),
        ("ssh_strict_host_key_checking", "maybe"),
    ],
)
def test_a_value_ssh_would_misread_is_refused_with_key_value_and_rule(
    key: str, value: object
) -> None:
    (problem,) = connection_problems(InventoryHost("db1", {**GOOD, key: value}))
    assert problem.startswith(f"db1: {key} = {value!r}: use "), problem
    with pytest.raises(ValueError, match=key):
        ssh_config([InventoryHost("db1", {**GOOD, key: value})])


def test_a_host_name_is_checked_when_no_ssh_hostname_is_given() -> None:
    (problem,) = connection_problems(InventoryHost("-oProxyCommand=x", GOOD))
    assert problem.startswith("-oProxyCommand=x: ssh_hostname = '-oProxyCommand=x': use a host")


def test_load_inventory_refuses_them(tmp_path: Path) -> None:
    inventory = tmp_path / "inv.py"
    inventory.write_text("hosts = [('-oProxyCommand=touch /tmp/x', {'ssh_user': 'a b'})]\n")
    with pytest.raises(InventoryError) as err:
        load_inventory(inventory, cwd=tmp_path)
    assert "ssh_hostname = '-oProxyCommand=touch /tmp/x'" in str(err.value)
    assert "ssh_user = 'a b'" in str(err.value)


def test_the_ssh_target_follows_a_double_dash() -> None:
    prefix = InventoryHost("db1", {**GOOD, "_sudo": True}).command_prefix()
    assert prefix[prefix.index("--") + 1 :] == ["deploy@db1", "sudo", "-n"]
    assert all(not a.startswith("-") for a in prefix[prefix.index("--") + 1 : -1])


def test_ssh_reads_a_dash_target_as_a_host_not_an_option(tmp_path: Path) -> None:
    """The real ssh client, given a target that passed no validation (built in code)."""
    marker = tmp_path / "ran"
    host = InventoryHost(f"-oProxyCommand=touch {marker}", {"ssh_connect_timeout": 2})
    proc = subprocess.run(
        [*host.command_prefix(), "true"], capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 255  # no such host: the name was not taken as an option
    assert not marker.exists()


def test_under_sudo_a_compound_command_goes_whole_to_a_root_shell() -> None:
    """ssh joins its arguments into one line for the remote login shell: after ``sudo -n``
    the command must be one quoted ``sh -c`` word, or ``a | b`` runs ``b`` unprivileged."""
    command = "docker ps -aq | xargs -r docker update --restart=no && echo 'done here'"
    argv = InventoryHost("db1", {**GOOD, "_sudo": True}).shell_argv(command)
    remote_line = " ".join(argv[argv.index("--") + 2 :])  # what ssh sends
    assert shlex.split(remote_line) == ["sudo", "-n", "sh", "-c", command]
    plain = InventoryHost("db1", GOOD).shell_argv(command)
    assert plain[-1] == command and "sudo" not in plain
    assert InventoryHost("@local", {}).shell_argv(command) == ["sh", "-c", command]
