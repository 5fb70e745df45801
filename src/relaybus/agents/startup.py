"""Starting an agent: what its ``on_start`` gets, and the scripts and modes it declares put on the executor.

An agent declares the commands its ``script``-mode tasks may run and the custom modes it needs as class
attributes, so a worker started from the command line (``relaybus worker module:Class``) has them too::

    class Linter(Agent):
        name = "linter"
        topics = ("code.lint",)
        mode = "script"
        scripts = (Script("ruff", ("ruff", "check")),)
        modes = {"shout": ShoutBackend()}

At start the worker registers them on its executor (the default one is then created at once, from the
environment); a program not found, a mode named like a built-in one (``llm``, ``api``, ``script``), two agents
of one worker declaring one name differently, or an executor that cannot register them fails the start with
:class:`~relaybus.ConfigError` naming the agent. Scripts and modes are the executor's: every agent of the
worker can use them. ``on_start`` may take a :class:`StartContext` (the executor, the bus, the worker id) to
register more itself; an ``on_start(self)`` without it is called as before.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from relaybus.bus.base import Bus
from relaybus.exceptions import ConfigError, ExecutorError
from relaybus.executor.protocol import Executor

from .agent import Agent

if TYPE_CHECKING:
    from relaybus.executor.backend import ExecutionBackend
    from relaybus.executor.script import Script

__all__ = ["BUILTIN_MODES", "StartContext", "register_declared", "start_agent"]

BUILTIN_MODES = frozenset({"llm", "api", "script"})


@dataclass(frozen=True, slots=True)
class StartContext:
    """What ``Agent.on_start`` gets: the worker's executor (a ``TaskExecutor`` unless the worker was given
    another), its bus and its id."""

    executor: Executor
    bus: Bus
    worker: str


async def start_agent(agent: Agent, start: StartContext) -> None:
    """Call ``agent.on_start``, with ``start`` when it takes a parameter."""
    if inspect.signature(agent.on_start).parameters:
        await agent.on_start(start)
    else:
        await agent.on_start()  # type: ignore[call-arg]  # an on_start(self) of before StartContext


def _declared(agents: Sequence[Agent]) -> tuple[dict[str, tuple[Script, str]], dict[str, tuple[Any, str]]]:
    scripts: dict[str, tuple[Script, str]] = {}
    modes: dict[str, tuple[ExecutionBackend, str]] = {}
    for agent in agents:
        owner = type(agent).__name__
        for script in agent.scripts:
            earlier = scripts.setdefault(script.name, (script, owner))
            if earlier[0] != script:
                raise ConfigError(
                    f"script {script.name!r} is declared by {earlier[1]} and {owner} with different "
                    "commands; the agents of one worker share one executor: give one of them another name"
                )
        for name, backend in agent.modes.items():
            if name in BUILTIN_MODES:
                raise ConfigError(
                    f"{owner}.modes names {name!r}, a built-in mode; give the custom mode another name"
                )
            earlier_mode = modes.setdefault(name, (backend, owner))
            if earlier_mode[0] is not backend:
                raise ConfigError(
                    f"mode {name!r} is declared by {earlier_mode[1]} and {owner} with different backends; "
                    "the agents of one worker share one executor: give one of them another name"
                )
    return scripts, modes


async def register_declared(agents: Sequence[Agent], executor: Executor) -> None:
    """Register the scripts and modes ``agents`` declare on ``executor`` (see the module docstring)."""
    scripts, modes = _declared(agents)
    if not scripts and not modes:
        return
    target: Any = executor
    materialize = getattr(executor, "materialize", None)  # the LazyTaskExecutor: create it now
    if materialize is not None:
        target = await materialize()
    if not (hasattr(target, "register_script") and hasattr(target, "register_mode")):
        owners = sorted({owner for _, owner in (*scripts.values(), *modes.values())})
        raise ConfigError(
            f"{', '.join(owners)} declare scripts or modes, but the worker's executor "
            f"{type(executor).__name__} cannot register them: give the worker a TaskExecutor (or none)"
        )
    for script, owner in scripts.values():
        try:
            target.register_script(script.name, script.argv, env=script.env, cwd=script.cwd, args=script.args)
        except ExecutorError as exc:
            raise ConfigError(f"{owner}.scripts: {exc}") from None
    for name, (backend, owner) in modes.items():
        try:
            target.register_mode(name, backend, replace=True)
        except ExecutorError as exc:
            raise ConfigError(f"{owner}.modes: {exc}") from None
