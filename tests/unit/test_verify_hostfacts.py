"""pgsteady.stack.hostfacts reads the same facts, the same way, as the deploy's pyinfra facts."""

from __future__ import annotations

import subprocess

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pyinfra.facts.hardware import Cpus, Memory

from pgsteady.settings import HostFacts
from pgsteady.stack.hostfacts import (
    CPUS_COMMAND,
    MEMORY_COMMAND,
    SYSTEMD_COMMAND,
    parse_cpus,
    parse_has_systemd,
    parse_memory_mb,
    read_host_facts,
)
from tasks.facts import HasSystemd

LINUX_VMSTAT = """\
     24684092 K total memory
       623572 K used memory
       639680 K active memory
      1234567 K free memory
            0 K total swap
    123456789 non-nice user cpu ticks
   1700000000 boot time
"""

FREEBSD_VMSTAT = """\
     4096 bytes per page
   262144 pages active
   131072 pages inactive
    65536 pages wired down
   500000 pages free
        5 pages in the laundry queue
"""


def _lines(text: str) -> list[str]:
    """What pyinfra hands a fact's process(): the output's non-empty lines."""
    return [line for line in text.splitlines() if line.strip()]


def test_commands_are_the_deploys() -> None:
    assert Memory().command() == MEMORY_COMMAND
    assert Cpus().command() == CPUS_COMMAND
    assert HasSystemd().command() == SYSTEMD_COMMAND


@pytest.mark.parametrize(
    "text", [LINUX_VMSTAT, FREEBSD_VMSTAT, "no numbers here\n", "1 K total memory\n"]
)
def test_memory_parsing_equals_pyinfra(text: str) -> None:
    assert parse_memory_mb(text) == Memory().process(_lines(text))


@given(st.integers(min_value=1, max_value=2**40))
def test_memory_rounding_equals_pyinfra(kb: int) -> None:
    text = f"  {kb} K total memory\n  1 K used memory\n"
    assert parse_memory_mb(text) == Memory().process(_lines(text))


@pytest.mark.parametrize("text", ["2\n", "64\n", "undefined\n"])
def test_cpus_parsing_equals_pyinfra(text: str) -> None:
    assert parse_cpus(text) == Cpus().process(_lines(text))


@pytest.mark.parametrize("text", ["yes\n", "no\n"])
def test_systemd_parsing_equals_the_deploys(text: str) -> None:
    assert parse_has_systemd(text) == HasSystemd().process(_lines(text))


def test_this_machine_through_both() -> None:
    def run(command: str) -> str:
        return subprocess.run(["sh", "-c", command], capture_output=True, text=True).stdout

    facts = read_host_facts(run)
    assert facts == HostFacts(
        ram_mb=Memory().process(_lines(run(MEMORY_COMMAND))) or 0,
        cpus=Cpus().process(_lines(run(CPUS_COMMAND))) or 1,
        has_systemd=HasSystemd().process(_lines(run(SYSTEMD_COMMAND))),
    )
    assert facts.ram_mb > 0 and facts.cpus >= 1
