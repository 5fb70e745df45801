"""``AgentTool``: another agent on the bus as a tool; the model's call becomes a delegated ``AgentTask``."""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Mapping
from typing import Any, Protocol

from pydantic import BaseModel, ValidationError

from relaybus.exceptions import ConfigError
from relaybus.log import get_logger
from relaybus.messages import MAX_TOPIC_LEN, NAME_RE, TOPIC_RE, AgentTask, ExecutionResult

from .outcome import (
    DEFAULT_MAX_OUTPUT_BYTES,
    Arguments,
    ToolOutcome,
    check_max_output_bytes,
    check_timeout,
    parse_arguments,
)
from .schema import format_validation_error, json_schema_of
from .spec import DescribedBySpec, ToolSpec

__all__ = ["AgentTool", "Delegate"]

_log = get_logger("relaybus.tools")

_PROMPT_DESCRIPTION = "What to ask the agent, in plain words."
_INPUT_DESCRIPTION = "Structured input for the agent (optional)."


class Delegate(Protocol):
    """Sends a task to another agent and returns its result: what :meth:`AgentContext.delegate` is."""

    def __call__(self, task: AgentTask, /, *, timeout: float | None = None) -> Awaitable[ExecutionResult]: ...


class AgentTool(DescribedBySpec):
    """Another agent on the bus, offered to the model as a tool.

    Give exactly one of ``topic`` (dot-separated words such as ``text.count``: whichever agent subscribes to
    it answers) or ``agent`` (one agent by name). The model sees ``name`` and ``description`` and calls the
    tool with ``{"prompt": "...", "input": {...}}``: ``prompt`` is required, ``input`` an optional object,
    described by ``input_schema`` when given (a JSON Schema of an object, which is shown to the model and only
    checked to be an object, or a pydantic model class, whose validation also runs before the task is sent).

    :meth:`call` publishes an :class:`~relaybus.AgentTask` through ``delegate`` (pass ``ctx.delegate``; it
    carries the deadline, cancellation, loop guard and usage accounting of the calling task) and waits at most
    ``timeout_s`` (None: the delegate's own bound). It never raises for a fault: bad arguments, a task that
    cannot be sent (no agent on the topic, a delegation loop) and a result that is not SUCCESS (FAILURE,
    TIMEOUT, REJECTED, CANCELLED, named with its error) become error outcomes; a SUCCESS gives the result's
    output (a string as it is, anything else as JSON). Every outcome carries the delegated result's
    ``usage``; note that ``ctx.delegate`` already adds it to ``ctx.usage``.
    """

    def __init__(
        self,
        topic: str | None = None,
        *,
        agent: str | None = None,
        name: str,
        description: str,
        timeout_s: float | None = None,
        input_schema: Mapping[str, Any] | type[BaseModel] | None = None,
        max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
    ) -> None:
        owner = f"AgentTool {name!r}"
        if (topic is None) == (agent is None):
            raise ConfigError(f"{owner}: give exactly one of topic='text.count' or agent='counter'")
        if topic is not None and (
            not isinstance(topic, str) or len(topic) > MAX_TOPIC_LEN or not TOPIC_RE.match(topic)
        ):
            raise ConfigError(
                f"{owner}: topic {topic!r} must be dot-separated words of letters, digits, '_' or '-' "
                f"(at most {MAX_TOPIC_LEN} characters, no wildcards), e.g. 'text.count'"
            )
        if agent is not None and (not isinstance(agent, str) or not NAME_RE.match(agent)):
            raise ConfigError(
                f"{owner}: agent {agent!r} must be an agent name of 1-100 letters, digits, '_', '-' or '.'"
            )
        if not isinstance(description, str):
            raise ConfigError(f"{owner}: description must be a string")
        self.topic = topic
        self.agent = agent
        self.timeout_s = None if timeout_s is None else check_timeout(owner, timeout_s)
        self.max_output_bytes = check_max_output_bytes(owner, max_output_bytes)
        self._input_model, input_property = _input_property(owner, input_schema)
        parameters: dict[str, Any] = {
            "type": "object",
            "properties": {
                "prompt": {"type": "string", "description": _PROMPT_DESCRIPTION},
                "input": input_property,
            },
            "required": ["prompt"],
            "additionalProperties": False,
        }
        defs = input_property.pop("$defs", None)
        if defs:
            parameters["$defs"] = defs  # $ref paths ("#/$defs/X") point at the root of the whole schema
        self.spec = ToolSpec(name=name, description=description, parameters=parameters)

    @property
    def target(self) -> str:
        """Where the tasks go, for messages: ``topic 'text.count'`` or ``agent 'counter'``."""
        return f"topic {self.topic!r}" if self.topic is not None else f"agent {self.agent!r}"

    def __repr__(self) -> str:
        return f"<AgentTool {self.name!r} -> {self.target}>"

    def build_task(self, arguments: Arguments) -> AgentTask | str:
        """The task a call with ``arguments`` sends, or a message saying why the arguments are refused."""
        parsed = parse_arguments(arguments)
        if isinstance(parsed, str):
            return parsed
        unknown = sorted(set(parsed) - {"prompt", "input"})
        if unknown:
            return f"unknown argument(s) {', '.join(unknown)}; this tool takes prompt and input"
        prompt = parsed.get("prompt")
        if not isinstance(prompt, str):
            return "prompt: a string is required (what to ask the agent)"
        task_input = parsed.get("input")
        if task_input is None:
            task_input = {}
        if self._input_model is not None:
            try:
                task_input = self._input_model.model_validate(task_input).model_dump(mode="json")
            except ValidationError as exc:
                return f"input: {format_validation_error(exc)}"
        elif not isinstance(task_input, dict):
            return f"input must be a JSON object, not {type(task_input).__name__}"
        try:
            return AgentTask(
                # A task addressed to an agent still needs a topic; plans use the agent's name the same way.
                topic=self.topic or (self.agent if self.agent and TOPIC_RE.match(self.agent) else "agent"),
                agent=self.agent,
                prompt=prompt,
                input=task_input,
                timeout_s=self.timeout_s,
            )
        except ValidationError as exc:
            return format_validation_error(exc)

    async def call(self, arguments: Arguments, delegate: Delegate) -> ToolOutcome:
        """Delegate one call of the model to the agent and return its answer; see the class docstring."""
        task = self.build_task(arguments)
        if isinstance(task, str):
            return ToolOutcome.error(
                f"invalid arguments for {self.name}: {task}", max_bytes=self.max_output_bytes
            )
        try:
            result = await delegate(task, timeout=self.timeout_s)
        except Exception as exc:  # NoRouteError, DelegationError, a bus failure: the model hears why
            _log.info("agent_tool_not_sent", tool=self.name, target=self.target, error=repr(exc))
            return ToolOutcome.error(
                f"{self.name}: could not send the task to {self.target}: {type(exc).__name__}: {exc}",
                max_bytes=self.max_output_bytes,
            )
        if result.ok:
            return ToolOutcome.from_value(result.output, max_bytes=self.max_output_bytes, usage=result.usage)
        reason = f"{result.error.type}: {result.error.message}" if result.error else "no error given"
        return ToolOutcome.error(
            f"{self.name}: {self.target} answered {result.status.value.upper()} ({reason})",
            max_bytes=self.max_output_bytes,
            usage=result.usage,
        )


def _input_property(
    owner: str, input_schema: Mapping[str, Any] | type[BaseModel] | None
) -> tuple[type[BaseModel] | None, dict[str, Any]]:
    if input_schema is None:
        return None, {"type": "object", "description": _INPUT_DESCRIPTION}
    if isinstance(input_schema, type) and issubclass(input_schema, BaseModel):
        schema = json_schema_of(input_schema)
        schema.setdefault("description", _INPUT_DESCRIPTION)
        return input_schema, schema
    if isinstance(input_schema, Mapping) and input_schema.get("type") == "object":
        return None, copy.deepcopy(dict(input_schema))
    raise ConfigError(
        f'{owner}: input_schema must be a JSON Schema with "type": "object" or a pydantic model class, '
        f"got {input_schema!r}"
    )
