"""Scripted model answers for tests: what a fake model says, whatever the wire format, and who says it.

A script is a list of answers consumed in order, or a function of the request seen. The same script drives
:class:`~relaybus.testing.FakeLLMServer` (over real HTTP, in the OpenAI and Anthropic formats) and
:class:`ScriptedProvider` (in process, no HTTP)::

    script = [
        ScriptedAnswer(tool_calls=[ScriptedToolCall("add", {"a": 1, "b": 2})]),
        ScriptedAnswer(text="3"),
    ]

    def by_request(seen: SeenRequest) -> ScriptedAnswer | str:
        if seen.tool_results:                       # the tools answered: finish
            return "the sum is " + seen.tool_results[0].content
        return ScriptedAnswer(tool_calls=[ScriptedToolCall("add", {"a": 1, "b": 2})])
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from relaybus.exceptions import ConfigError
from relaybus.executor.llm.base import ChatRequest, Completion
from relaybus.executor.llm.chat import (
    AssistantMessage,
    ChatMessage,
    FinishReason,
    ResponseSchema,
    ToolCall,
    ToolChoice,
    ToolResultMessage,
    UserMessage,
    message_text,
)
from relaybus.executor.llm.echo import words_of
from relaybus.executor.llm.stream import StreamChunk, TextDelta, completion_deltas
from relaybus.messages import Usage
from relaybus.tools.spec import ToolSpec

__all__ = [
    "AnswerScript",
    "Script",
    "ScriptedAnswer",
    "ScriptedProvider",
    "ScriptedToolCall",
    "SeenRequest",
    "count_words",
]

SeenApi = Literal["openai", "anthropic", "scripted"]


@dataclass(frozen=True)
class ScriptedToolCall:
    """A tool call the fake model makes.

    ``arguments`` is an object, or JSON text sent as it is (to script invalid arguments; the Anthropic format
    needs an object). ``id`` defaults to ``call_<request>_<index>``.
    """

    name: str
    arguments: Mapping[str, Any] | str = field(default_factory=dict)
    id: str | None = None

    def arguments_json(self) -> str:
        return self.arguments if isinstance(self.arguments, str) else json.dumps(dict(self.arguments))

    def arguments_object(self) -> dict[str, Any] | None:
        """The arguments as an object; None for text that is not a JSON object."""
        if not isinstance(self.arguments, str):
            return dict(self.arguments)
        return ToolCall("", self.name, self.arguments).arguments_object()


@dataclass(frozen=True)
class ScriptedAnswer:
    """One answer of the fake model.

    - ``text``: a string, or a sequence of strings sent as separate content parts (OpenAI) / text blocks
      (Anthropic), which a client joins.
    - ``tool_calls``: calls in order. ``output``: a structured answer (OpenAI: the content as JSON; Anthropic:
      a call of the response-schema tool, see :func:`~relaybus.testing.fake_llm_wire.anthropic_answer`).
    - ``refusal``: the model declines (OpenAI ``message.refusal``; Anthropic ``stop_reason: refusal``).
    - ``finish_reason``: a :class:`FinishReason`, mapped to each format's word, or any other string sent as it
      is; by default ``tool_calls`` with tool calls, ``refusal`` with a refusal, else ``stop``.
    - ``usage``: ``(prompt_tokens, completion_tokens)``; by default words: every message, and the answer.
    """

    text: str | Sequence[str] = ""
    tool_calls: Sequence[ScriptedToolCall] = ()
    output: Mapping[str, Any] | None = None
    refusal: str | None = None
    finish_reason: FinishReason | str | None = None
    usage: tuple[int, int] | None = None

    @property
    def parts(self) -> tuple[str, ...]:
        return (self.text,) if isinstance(self.text, str) else tuple(self.text)

    @property
    def joined_text(self) -> str:
        """The text a client reads: the parts joined, or the structured output as JSON."""
        return json.dumps(dict(self.output)) if self.output is not None else "".join(self.parts)

    @property
    def reason(self) -> FinishReason | str:
        if self.finish_reason is not None:
            return self.finish_reason
        if self.tool_calls:
            return FinishReason.TOOL_CALLS
        return FinishReason.REFUSAL if self.refusal is not None else FinishReason.STOP

    def call_id(self, number: int, index: int, prefix: str = "call") -> str:
        given = self.tool_calls[index].id
        return given if given else f"{prefix}_{number}_{index}"

    def token_usage(self, seen: SeenRequest) -> tuple[int, int]:
        if self.usage is not None:
            return self.usage
        said = [self.joined_text, self.refusal or ""]
        said += [f"{c.name} {c.arguments_json()}" for c in self.tool_calls]
        return seen.prompt_words(), sum(count_words(t) for t in said)


def count_words(text: str) -> int:
    """The fake model's token count: whitespace-separated words (deterministic)."""
    return len(text.split())


@dataclass(frozen=True)
class SeenRequest:
    """A request as the fake model sees it, the same for both wire formats (parsed back into chat types).

    ``number`` counts requests from 1; ``body`` is the JSON body as received (empty for ScriptedProvider).
    """

    api: SeenApi
    messages: tuple[ChatMessage, ...]
    tools: tuple[ToolSpec, ...] = ()
    tool_choice: ToolChoice = "auto"
    response_schema: ResponseSchema | None = None
    model: str = ""
    number: int = 0
    body: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @property
    def last_user_text(self) -> str:
        return next((m.text for m in reversed(self.messages) if isinstance(m, UserMessage)), "")

    @property
    def tool_results(self) -> tuple[ToolResultMessage, ...]:
        """The tool results after the last assistant message (what the model is answering now)."""
        results: list[ToolResultMessage] = []
        for message in reversed(self.messages):
            if isinstance(message, AssistantMessage):
                break
            if isinstance(message, ToolResultMessage):
                results.append(message)
        return tuple(reversed(results))

    @property
    def tool_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tools)

    def prompt_words(self) -> int:
        return sum(count_words(message_text(m)) for m in self.messages)


Script = Sequence[ScriptedAnswer | str] | Callable[[SeenRequest], ScriptedAnswer | str]
"""Answers in order, or a function from the request to its answer (a ``str`` is a text answer)."""


class AnswerScript:
    """Hands out a script's answers; raises ConfigError when a list runs out or a function fails."""

    def __init__(self, script: Script) -> None:
        self._function = script if callable(script) else None
        self._queue: deque[ScriptedAnswer | str] = deque() if callable(script) else deque(script)
        self.given = 0

    @property
    def left(self) -> int | None:
        """Answers not yet given (None for a function)."""
        return None if self._function is not None else len(self._queue)

    def next(self, seen: SeenRequest) -> ScriptedAnswer:
        if self._function is not None:
            try:
                answer = self._function(seen)
            except Exception as exc:
                raise ConfigError(f"the script function raised {type(exc).__name__}: {exc}") from exc
        elif self._queue:
            answer = self._queue.popleft()
        else:
            raise ConfigError(
                f"the script has no answer left: {self.given} scripted, this is request {seen.number}"
            )
        self.given += 1
        if isinstance(answer, str):
            return ScriptedAnswer(text=answer)
        if not isinstance(answer, ScriptedAnswer):
            raise ConfigError(f"a script answer must be a ScriptedAnswer or a str, got {answer!r}")
        return answer


class ScriptedProvider:
    """An :class:`~relaybus.executor.LLMProvider` that answers from a script, in process (no HTTP).

    For tests and demos of agents with tools: pass it as ``TaskExecutor(provider=ScriptedProvider([...]))``.
    ``requests`` keeps every :class:`ChatRequest` received; ``latency_s`` delays each answer. A script that
    runs out or fails raises ConfigError, which the executor reports as a FAILURE naming it. :meth:`stream`
    gives the same answer as deltas: the text word by word, then the refusal and each tool call whole.
    """

    def __init__(self, script: Script, *, model: str = "scripted", latency_s: float = 0.0) -> None:
        self.model = model
        self.latency_s = latency_s
        self.requests: list[ChatRequest] = []
        self._script = AnswerScript(script)

    @property
    def name(self) -> str:
        return f"scripted/{self.model}"

    @property
    def answers_left(self) -> int | None:
        return self._script.left

    def __repr__(self) -> str:
        return f"ScriptedProvider(model={self.model!r}, answers_left={self.answers_left})"

    async def complete(self, request: ChatRequest) -> Completion:
        self.requests.append(request)
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        seen = SeenRequest(
            "scripted",
            request.messages,
            request.tools,
            request.tool_choice,
            request.response_schema,
            self.model,
            len(self.requests),
        )
        answer = self._script.next(seen)
        prompt_tokens, completion_tokens = answer.token_usage(seen)
        calls = tuple(
            ToolCall(answer.call_id(seen.number, i), c.name, c.arguments_json())
            for i, c in enumerate(answer.tool_calls)
        )
        reason = answer.reason
        return Completion(
            text=answer.joined_text,
            usage=Usage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, requests=1),
            model=self.model,
            finish_reason=reason if isinstance(reason, FinishReason) else FinishReason.of(reason),
            tool_calls=calls,
            refusal=answer.refusal,
            provider_finish_reason=str(reason),
        )

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamChunk]:
        completion = await self.complete(request)
        for word in words_of(completion.text):
            yield TextDelta(word)
        for delta in completion_deltas(dataclasses.replace(completion, text="")):
            yield delta
        yield completion
