"""A point every host of the run passes together.

pyinfra orders each host's operations by its own chain and merges the chains; operations
of different hosts are ordered only where they share an operation (the same line of the
deploy). An operation that every host calls from the same line, and that changes
nothing, makes every operation before it, on any host, run before every operation after
it: a backup host's server is up before database hosts create their stanzas through it,
and those stanzas exist before the backup host takes their first backups.
"""

from __future__ import annotations

from pyinfra.operations import server


def barrier(name: str) -> None:
    """Call from one line of deploy.py on every host: ``name`` says what is now done."""
    server.shell(name=f"Wait on every host until {name}", commands=["true"], _if=lambda: False)
