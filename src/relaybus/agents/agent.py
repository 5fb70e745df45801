"""The ``Agent`` base class: what a user subclasses to put an agent on the bus.

An agent is a small class with a ``name``, the topic ``patterns`` it answers (AMQP topic patterns: ``*`` is
one word, ``#`` zero or more words) and an ``async handle(task, ctx)``. An :class:`~relaybus.AgentWorker`
hosts agents in one process; every worker hosting agent ``name`` consumes from the same queue
``relaybus.agent.<name>``, so an agent scales out by starting more worker processes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel

from relaybus.bus.topic import validate_topic_pattern
from relaybus.exceptions import ConfigError
from relaybus.messages import NAME_RE

if TYPE_CHECKING:
    from relaybus.executor.backend import ExecutionBackend
    from relaybus.executor.script import Script
    from relaybus.messages import AgentTask
    from relaybus.tools import AnyTool, MCPServer

    from .context import AgentContext
    from .startup import StartContext

DEFAULT_MAX_TURNS = 8
"""Model turns an agent loop may take unless the agent sets ``max_turns``."""

__all__ = ["DEFAULT_MAX_TURNS", "Agent", "validate_agent", "validate_agents"]


def _check_topics(owner: str, topics: object) -> tuple[str, ...]:
    if isinstance(topics, str):
        raise ConfigError(
            f"{owner}.topics is the string {topics!r}; it must be a tuple of patterns: topics = ({topics!r},)"
        )
    if not isinstance(topics, tuple | list | frozenset | set):
        raise ConfigError(f"{owner}.topics must be a tuple of topic patterns, not {topics!r}")
    items = tuple(topics)
    for pattern in items:
        if not isinstance(pattern, str):
            raise ConfigError(f"{owner}.topics holds {pattern!r}; each topic pattern must be a string")
        try:
            validate_topic_pattern(pattern)
        except ConfigError as exc:
            raise ConfigError(f"{owner}.topics: {exc}") from None
    return items


def _check_name(owner: str, name: object) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ConfigError(
            f"{owner}.name = {name!r} is invalid: give the agent a name of 1-100 letters, digits, "
            "'_', '-' or '.', e.g. name = 'reviewer'"
        )
    return name


def _check_tools(owner: str, tools: object) -> None:
    if not isinstance(tools, tuple | list):
        raise ConfigError(
            f"{owner}.tools must be a tuple of tools (@tool functions, AgentTool, MCPServer), e.g. "
            f"tools = (add,); got {tools!r}"
        )
    if not tools:
        return
    from relaybus.tools import AgentTool, MCPServer, MCPTool, Tool  # loaded only by agents that have tools

    for item in tools:
        if not isinstance(item, Tool | AgentTool | MCPServer | MCPTool):
            raise ConfigError(
                f"{owner}.tools holds {item!r}, which is not a tool: decorate the function with @tool, or "
                "give an AgentTool or an MCPServer"
            )


def _check_scripts(owner: str, value: object) -> None:
    if not isinstance(value, tuple | list):
        raise ConfigError(
            f"{owner}.scripts must be a tuple of Script, e.g. "
            f"scripts = (Script('lint', ('ruff', 'check')),); got {value!r}"
        )
    if not value:
        return
    from relaybus.executor.script import Script

    names = []
    for item in value:
        if not isinstance(item, Script):
            raise ConfigError(
                f"{owner}.scripts holds {item!r}; declare each command as Script(name, (program, arg, ...))"
            )
        names.append(item.name)
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigError(f"{owner}.scripts declares {', '.join(map(repr, repeated))} more than once")


def _check_modes(owner: str, value: object) -> None:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{owner}.modes must map mode names to backends, e.g. modes = {{'shout': Shout()}}")
    if not value:
        return
    from relaybus.executor.backend import ExecutionBackend

    for name, backend in value.items():
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise ConfigError(
                f"{owner}.modes: mode name {name!r} is invalid: use 1-100 letters, digits, '_', '-' or '.'"
            )
        if not isinstance(backend, ExecutionBackend):
            raise ConfigError(
                f"{owner}.modes[{name!r}] = {backend!r} is not an execution backend: it needs an async "
                "method run(task, ctx) (see relaybus.executor.ExecutionBackend)"
            )


def _check_max_turns(owner: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{owner}.max_turns must be a positive integer (model turns), got {value!r}")


def _check_output_schema(owner: str, value: object) -> None:
    if value is not None and not (isinstance(value, type) and issubclass(value, BaseModel)):
        raise ConfigError(
            f"{owner}.output_schema must be a pydantic model class (class Answer(BaseModel): ...) or None, "
            f"got {value!r}"
        )


_CLASS_CHECKS: dict[str, Callable[[str, Any], object]] = {
    "name": _check_name,
    "topics": _check_topics,
    "tools": _check_tools,
    "max_turns": _check_max_turns,
    "output_schema": _check_output_schema,
    "scripts": _check_scripts,
    "modes": _check_modes,
}


def validate_agent(agent: object) -> Agent:
    """Check an agent instance before a worker hosts it; raise ConfigError naming the problem and the fix."""
    if not isinstance(agent, Agent):
        raise ConfigError(
            f"{agent!r} is not a relaybus Agent: subclass relaybus.Agent and pass an instance of it"
        )
    owner = type(agent).__name__
    if not hasattr(agent, "name"):
        raise ConfigError(f"{owner} has no name: set a class attribute such as name = 'reviewer'")
    _check_name(owner, agent.name)
    _check_topics(owner, agent.topics)
    if agent.mode is not None and (not isinstance(agent.mode, str) or not NAME_RE.match(agent.mode)):
        raise ConfigError(f"{owner}.mode = {agent.mode!r} is invalid: use None or a mode name such as 'llm'")
    if agent.system_prompt is not None and not isinstance(agent.system_prompt, str):
        raise ConfigError(f"{owner}.system_prompt must be a string or None")
    _check_tools(owner, agent.tools)
    _check_max_turns(owner, agent.max_turns)
    _check_output_schema(owner, agent.output_schema)
    _check_scripts(owner, agent.scripts)
    _check_modes(owner, agent.modes)
    if agent.runs_loop and agent.mode not in (None, "llm"):
        raise ConfigError(
            f"{owner} has tools or an output_schema, so its tasks run the agent loop on the LLM; its mode "
            f"{agent.mode!r} would never be used: remove it, or write a handle of its own"
        )
    return agent


def validate_agents(agents: Iterable[Agent]) -> tuple[Agent, ...]:
    """Check the agents one worker hosts: a non-empty sequence of valid agents with distinct names."""
    if isinstance(agents, Agent):
        raise ConfigError("agents must be a sequence of Agent instances: AgentWorker(bus, [MyAgent()])")
    checked = tuple(validate_agent(a) for a in agents)
    if not checked:
        raise ConfigError("AgentWorker needs at least one agent: AgentWorker(bus, [MyAgent()])")
    names = [a.name for a in checked]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"agent names must be unique in one worker; repeated: {', '.join(duplicates)}")
    return checked


class Agent:
    """Base class of every agent. Subclass it and set the class attributes::

        class Reviewer(Agent):
            name = "reviewer"                  # queue relaybus.agent.reviewer
            topics = ("code.review",)          # AMQP topic patterns; tasks with topic code.review come here
            system_prompt = "You review Python code."

            async def handle(self, task, ctx):  # optional: the default runs the task on ctx.executor
                ...

    An agent with ``tools`` (``@tool`` functions, :class:`~relaybus.AgentTool` s, :class:`~relaybus.MCPServer`
    s) or an ``output_schema`` (a pydantic model class) and no ``handle`` of its own runs the agent loop:
    its model calls the tools, all calls of one answer concurrently, until it gives a final answer or
    ``max_turns`` model turns have passed (see :meth:`AgentContext.run_loop`, which a custom ``handle`` may
    call with overrides). Without either, the default ``handle`` makes one call of the worker's executor.

    ``name``, ``topics``, ``tools``, ``max_turns`` and ``output_schema`` are checked when the class is
    defined (if it sets them) and again when a worker starts; a bad one raises :class:`~relaybus.ConfigError`.
    A task also reaches the agent when it addresses it by name (``AgentTask(agent="reviewer", ...)``),
    whatever its topic.

    ``handle`` may return an ``ExecutionResult`` or any JSON value (or a pydantic model), which becomes a
    SUCCESS result with that ``output``. An exception it raises becomes a FAILURE result carrying the
    exception's type name and message; the worker goes on with the next task.

    ``scripts`` (a tuple of :class:`~relaybus.executor.script.Script`) and ``modes`` (mode name -> execution
    backend) are registered on the worker's executor when it starts, so ``mode: script`` and custom modes work
    from ``relaybus worker`` too (see :mod:`relaybus.agents.startup`).

    One instance serves every task of its worker concurrently, so keep per-task state in local variables, not
    on ``self``. ``on_start`` / ``on_stop`` run once per worker, before the first task and after the last, for
    resources the agent holds (clients, pools, files).
    """

    name: ClassVar[str]
    topics: ClassVar[tuple[str, ...]] = ()
    mode: ClassVar[str | None] = None
    system_prompt: ClassVar[str | None] = None
    tools: ClassVar[tuple[AnyTool | MCPServer, ...]] = ()
    max_turns: ClassVar[int] = DEFAULT_MAX_TURNS
    output_schema: ClassVar[type[BaseModel] | None] = None
    scripts: ClassVar[tuple[Script, ...]] = ()
    modes: ClassVar[Mapping[str, ExecutionBackend]] = MappingProxyType({})

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # Validate what this class sets itself, so a typo fails at import time rather than at deploy time.
        for attribute, check in _CLASS_CHECKS.items():
            if attribute in cls.__dict__:
                check(cls.__name__, cls.__dict__[attribute])

    @property
    def runs_loop(self) -> bool:
        """Whether the default ``handle`` runs the agent loop: the agent has tools or an output schema and no
        ``handle`` of its own."""
        has_loop = bool(self.tools) or self.output_schema is not None
        return has_loop and type(self).handle is Agent.handle

    async def handle(self, task: AgentTask, ctx: AgentContext) -> Any:
        """Run ``task``: the agent loop (:meth:`AgentContext.run_loop`) for an agent with tools or an output
        schema, else one call of the worker's executor with this agent's mode and prompt."""
        if self.tools or self.output_schema is not None:
            return await ctx.run_loop()
        return await ctx.executor.execute(
            task, agent=self.name, mode=self.mode, system_prompt=self.system_prompt
        )

    async def on_start(self, start: StartContext) -> None:
        """Called once when a worker starts hosting this agent, before any task; raise to abort the start.

        ``start`` has the worker's executor (to register scripts or modes known only at run time), bus and
        id; an override ``on_start(self)`` without it is called without it."""

    async def on_stop(self) -> None:
        """Called once when the worker stops, after the last task of this agent finished or was returned."""

    def __repr__(self) -> str:
        name = getattr(self, "name", None)
        return f"<{type(self).__name__} name={name!r} topics={self.topics!r}>"
