"""A streamed OpenAI chat completion (``stream: true``) read chunk by chunk into deltas and one Completion."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from relaybus.exceptions import ProviderResponseError

from ._http import json_object
from .base import Completion
from .openai import parse_openai_completion
from .stream import ProviderStreamError, RefusalDelta, StreamDelta, TextDelta, ToolCallDelta, stream_error

__all__ = ["OpenAIStream"]

_DONE = "[DONE]"
_EXCERPT = 200


@dataclass
class _PartialCall:
    position: int
    id: str | None = None
    name: str | None = None
    arguments: list[str] = field(default_factory=list)


class OpenAIStream:
    """Assembles the ``data:`` payloads of one streamed chat completion.

    Each ``chat.completion.chunk`` gives ``choices[0].delta``: ``content`` (a :class:`TextDelta`),
    ``refusal`` (a :class:`RefusalDelta`) and ``tool_calls`` fragments, gathered by their ``index`` into whole
    calls (:class:`ToolCallDelta` s, numbered in the order the calls first appear). ``finish_reason`` comes
    on the last choice chunk, ``usage`` on the chunk after it (``stream_options.include_usage``: its
    ``choices`` is empty), then ``[DONE]``. :meth:`completion` is what
    :func:`~relaybus.executor.llm.openai.parse_openai_completion` reads from the same answer unstreamed.

    A payload that is not a JSON object raises ``ProviderResponseError``; ``{"error": ...}`` (how vLLM and
    other servers report a failure mid-stream) raises :class:`ProviderStreamError`.
    """

    def __init__(self, *, provider: str, model: str) -> None:
        self.provider = provider
        self.model = model
        self.done = False
        self._text: list[str] = []
        self._refusal: list[str] = []
        self._calls: dict[int, _PartialCall] = {}
        self._finish_reason: str | None = None
        self._usage: dict[str, Any] | None = None

    def feed(self, data: str) -> list[StreamDelta]:
        """The deltas in one ``data:`` payload (none after ``[DONE]``)."""
        if self.done:
            return []
        if data == _DONE:
            self.done = True
            return []
        chunk = json_object(data, self.provider, "a chunk")
        if chunk.get("error") is not None:
            raise stream_error(self.provider, chunk["error"])
        if isinstance(chunk.get("model"), str) and chunk["model"]:
            self.model = chunk["model"]
        if isinstance(chunk.get("usage"), dict):
            self._usage = chunk["usage"]
        choices = chunk.get("choices")
        if not choices:
            return []
        if not isinstance(choices, list):
            raise ProviderResponseError(f"{self.provider} streamed a chunk whose choices is not a list")
        deltas: list[StreamDelta] = []
        for choice in choices:
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue  # only choices[0] is read, as without streaming
            delta = choice.get("delta")
            if isinstance(delta, dict):
                content = delta.get("content")
                if isinstance(content, str) and content:
                    self._text.append(content)
                    deltas.append(TextDelta(content))
                refusal = delta.get("refusal")
                if isinstance(refusal, str) and refusal:
                    self._refusal.append(refusal)
                    deltas.append(RefusalDelta(refusal))
                calls = delta.get("tool_calls")
                if calls:
                    self._add_calls(calls, deltas)
            reason = choice.get("finish_reason")
            if isinstance(reason, str):
                self._finish_reason = reason
        return deltas

    def _add_calls(self, calls: Any, deltas: list[StreamDelta]) -> None:
        if not isinstance(calls, list):
            raise ProviderResponseError(f"{self.provider} streamed tool_calls that is not a list")
        for item in calls:
            if not isinstance(item, dict):
                continue
            wire_index = item.get("index")
            if not isinstance(wire_index, int):  # a server that sends each call whole, without an index
                wire_index = -1 - len(self._calls)
            call = self._calls.get(wire_index)
            new = call is None
            if call is None:
                call = self._calls[wire_index] = _PartialCall(len(self._calls))
            function = item.get("function")
            function = function if isinstance(function, dict) else {}
            call_id, name = item.get("id"), function.get("name")
            call_id = call_id if call.id is None and isinstance(call_id, str) and call_id else None
            name = name if call.name is None and isinstance(name, str) and name else None
            arguments = function.get("arguments")
            if isinstance(arguments, dict):  # some local servers send the object itself
                arguments = json.dumps(arguments)
            arguments = arguments if isinstance(arguments, str) else ""
            call.id = call.id or call_id
            call.name = call.name or name
            if arguments:
                call.arguments.append(arguments)
            if new or call_id or name or arguments:
                deltas.append(ToolCallDelta(call.position, call_id, name, arguments))

    def completion(self) -> Completion:
        """The whole answer; raises :class:`ProviderStreamError` when the stream ended before its end."""
        if not self.done and self._finish_reason is None:
            raise ProviderStreamError(
                f"{self.provider}: the stream ended before its finish_reason and [DONE]",
                kind="incomplete_stream",
            )
        message: dict[str, Any] = {"role": "assistant", "content": "".join(self._text) or None}
        if self._refusal:
            message["refusal"] = "".join(self._refusal)
        if self._calls:
            message["tool_calls"] = [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": "".join(call.arguments)},
                }
                for call in self._calls.values()
            ]
        data = {
            "model": self.model,
            "choices": [{"index": 0, "message": message, "finish_reason": self._finish_reason}],
            "usage": self._usage,
        }
        return parse_openai_completion(data, provider=self.provider, model=self.model)
