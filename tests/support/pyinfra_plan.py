"""Run a ``tasks/`` function under pyinfra 3.10 without a host: facts in, operations out.

:func:`plan` calls a task (a ``@deploy`` function or a plain one) for one inventory host
whose facts come from a table instead of a connection, with change detection off, so
no operation body and no command runs. What it returns is the task's return value and
the operations it added, in order, each with its ``_if`` conditions. :meth:`Plan.execute`
then plays pyinfra's execution for those conditions: each operation in order either
runs (all its ``_if`` hold) or is skipped; a ``server.shell`` that runs changes the host,
any other operation that runs changes it when the test says so. That is exactly what
decides compose up / reload / apply-sql on a host.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pyinfra.api import Config, Inventory, State
from pyinfra.api.operation import OperationMeta
from pyinfra.api.state import StateStage
from pyinfra.connectors.util import CommandOutput
from pyinfra.context import ctx_host, ctx_inventory, ctx_state

HOST = "db1.test"

#: A fact's value: the value itself, or ``f(**fact_arguments)`` for facts with arguments.
FactValue = Any | Callable[..., Any]


@dataclass
class PlannedOp:
    """One operation a task added: its name (without deploy prefixes), the operation
    (``server.shell``, ``files.put`` ...) and its _if conditions."""

    name: str
    operation: str
    arguments: dict[str, Any]
    meta: OperationMeta
    conditions: list[Callable[[], bool]]

    @property
    def commands(self) -> list[str]:
        """A ``server.shell``'s commands."""
        return [str(c) for c in self.arguments.get("commands", [])]


@dataclass
class Plan:
    """The operations of one task call, and the facts it asked for."""

    ops: list[PlannedOp]
    facts_asked: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        return [op.name for op in self.ops]

    def op(self, name: str) -> PlannedOp:
        matches = [op for op in self.ops if op.name == name]
        assert len(matches) == 1, f"{name!r} in {self.names}"
        return matches[0]

    def execute(self, changed: Iterable[str]) -> list[str]:
        """Play the run: the names of the operations that ran and changed the host.

        An operation runs when all its ``_if`` conditions hold (evaluated in order, as
        pyinfra does at execution); a ``server.shell`` that runs changes the host, any
        other operation only when its name is in ``changed``.
        """
        changed = set(changed)
        unknown = changed - set(self.names)
        assert not unknown, f"not operations of this plan: {unknown}; have {self.names}"
        ran = []
        for op in self.ops:
            runs = all(condition() for condition in op.conditions)
            changes = runs and (op.operation == "server.shell" or op.name in changed)
            op.meta.set_complete(True, ["cmd"] if changes else [], CommandOutput([]))
            if changes:
                ran.append(op.name)
        return ran


def _operation(op_data: Any) -> tuple[str, dict[str, Any]]:
    """(``server.shell``, its keyword arguments): what pyinfra's wrapper closes over."""
    generator = op_data.command_generator
    cells = dict(zip(generator.__code__.co_freevars, generator.__closure__ or (), strict=True))
    func = cells["func"].cell_contents
    name = f"{func.__module__.rsplit('.', 1)[-1]}.{func.__name__}"
    return name, dict(cells["kwargs"].cell_contents)


def _conditions(value: object) -> list[Callable[[], bool]]:
    if value is None:
        return []
    if callable(value):
        return [value]
    return list(value)  # type: ignore[call-overload]


def plan(
    task: Callable[..., Any],
    *args: Any,
    facts: Mapping[str, FactValue],
    data: Mapping[str, Any] | None = None,
) -> tuple[Any, Plan]:
    """Call ``task(*args)`` for one host with ``facts`` (by fact class name).

    A fact the table does not name fails the test: every decision input is explicit.
    """
    inventory = Inventory(([HOST], dict(data or {})))
    state = State(inventory, Config(), check_for_changes=False)
    state.set_stage(StateStage.Prepare)
    host = inventory.get_host(HOST)
    asked: list[tuple[str, dict[str, Any]]] = []

    def get_fact(cls: type, *fact_args: Any, **kwargs: Any) -> Any:
        name = cls.__name__
        kwargs = {k: v for k, v in kwargs.items() if not k.startswith("_")}
        asked.append((name, kwargs))
        if name not in facts:
            raise AssertionError(f"the task asked for fact {name}({kwargs}): add it to facts")
        value = facts[name]
        return value(*fact_args, **kwargs) if callable(value) else value

    host.get_fact = get_fact  # type: ignore[method-assign]
    with ctx_state.use(state), ctx_inventory.use(inventory), ctx_host.use(host):
        result = task(*args)
    ops = []
    for op_hash in host.op_hash_order:
        op_data = state.get_op_data_for_host(host, op_hash)
        name = sorted(state.get_op_meta(op_hash).names)[0].split(" | ")[-1]
        conditions = _conditions(op_data.global_arguments.get("_if"))
        operation, arguments = _operation(op_data)
        ops.append(PlannedOp(name, operation, arguments, op_data.operation_meta, conditions))
    return result, Plan(ops, asked)
