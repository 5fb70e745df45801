"""A streamed Anthropic message (``stream: true``) read event by event into deltas and one Completion."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from relaybus.exceptions import ProviderResponseError

from ._http import json_object
from .anthropic import parse_anthropic_message
from .base import Completion
from .stream import ProviderStreamError, StreamDelta, TextDelta, ToolCallDelta, stream_error

__all__ = ["AnthropicStream"]

_EXCERPT = 200


@dataclass
class _Block:
    kind: str  # "text", "tool_use", "output" (the response-schema tool) or "other" (thinking...)
    id: str = ""
    name: str = ""
    position: int = -1  # a tool call's position in Completion.tool_calls
    parts: list[str] = field(default_factory=list)


class AnthropicStream:
    """Assembles the events of one streamed Messages answer.

    ``message_start`` (model, input tokens), per content block ``content_block_start`` /
    ``content_block_delta`` (``text_delta``: a :class:`TextDelta`; ``input_json_delta``: a
    :class:`ToolCallDelta`) / ``content_block_stop``, then ``message_delta`` (``stop_reason``, output tokens)
    and ``message_stop``; ``ping`` and event types this version does not know are skipped, as Anthropic's
    versioning policy asks. ``output_tool`` is the response-schema tool: its input JSON streams as text, the
    structured answer. :meth:`completion` is what
    :func:`~relaybus.executor.llm.anthropic.parse_anthropic_message` reads from the same answer unstreamed.

    Data that is not a JSON object, or a delta for a block that did not start, raises
    ``ProviderResponseError``; an ``error`` event raises :class:`ProviderStreamError`.
    """

    def __init__(self, *, provider: str, model: str, output_tool: str | None = None) -> None:
        self.provider = provider
        self.model = model
        self.output_tool = output_tool
        self.done = False
        self._blocks: dict[int, _Block] = {}
        self._calls = 0
        self._stop_reason: str | None = None
        self._stopped = False
        self._usage: dict[str, Any] = {}

    def feed(self, data: str) -> list[StreamDelta]:
        """The deltas in one event's data (none after ``message_stop``)."""
        if self.done:
            return []
        event = json_object(data, self.provider, "an event")
        kind = event.get("type")
        if kind == "content_block_delta":
            return self._delta(event)
        if kind == "content_block_start":
            return self._start(event)
        if kind == "message_start":
            message = event.get("message")
            if isinstance(message, dict):
                if isinstance(message.get("model"), str) and message["model"]:
                    self.model = message["model"]
                self._add_usage(message.get("usage"))
        elif kind == "message_delta":
            delta = event.get("delta")
            if isinstance(delta, dict) and "stop_reason" in delta:
                reason = delta["stop_reason"]
                self._stop_reason = reason if isinstance(reason, str) else None
                self._stopped = True
            self._add_usage(event.get("usage"))
        elif kind == "message_stop":
            self.done = True
        elif kind == "error":
            raise stream_error(self.provider, event.get("error"))
        return []

    def _start(self, event: dict[str, Any]) -> list[StreamDelta]:
        index, block = event.get("index"), event.get("content_block")
        if not isinstance(index, int) or not isinstance(block, dict):
            raise ProviderResponseError(f"{self.provider} streamed a content_block_start without its block")
        kind = block.get("type")
        if kind == "text":
            text = block.get("text")
            started = self._blocks[index] = _Block("text")
            if isinstance(text, str) and text:
                started.parts.append(text)
                return [TextDelta(text)]
            return []
        if kind != "tool_use":
            self._blocks[index] = _Block("other")
            return []
        call_id, name = block.get("id"), block.get("name")
        if not isinstance(call_id, str) or not isinstance(name, str) or not call_id or not name:
            raise ProviderResponseError(f"{self.provider} streamed a tool_use block without id or name")
        given = block.get("input")
        initial = json.dumps(given, ensure_ascii=False) if isinstance(given, dict) and given else ""
        if name == self.output_tool:
            self._blocks[index] = _Block("output", call_id, name, parts=[initial] if initial else [])
            return [TextDelta(initial)] if initial else []
        started = self._blocks[index] = _Block("tool_use", call_id, name, self._calls)
        self._calls += 1
        if initial:
            started.parts.append(initial)
        return [ToolCallDelta(started.position, call_id, name, initial)]

    def _delta(self, event: dict[str, Any]) -> list[StreamDelta]:
        block = self._blocks.get(event.get("index"))  # type: ignore[arg-type]
        delta = event.get("delta")
        if block is None or not isinstance(delta, dict):
            raise ProviderResponseError(
                f"{self.provider} streamed a content_block_delta for block {event.get('index')!r}, "
                "which did not start"
            )
        kind = delta.get("type")
        if kind == "text_delta" and block.kind == "text":
            text = delta.get("text")
            if isinstance(text, str) and text:
                block.parts.append(text)
                return [TextDelta(text)]
        elif kind == "input_json_delta" and block.kind in ("tool_use", "output"):
            partial = delta.get("partial_json")
            if isinstance(partial, str) and partial:
                block.parts.append(partial)
                if block.kind == "output":
                    return [TextDelta(partial)]
                return [ToolCallDelta(block.position, arguments=partial)]
        return []  # thinking, signatures, citations: not part of the answer relaybus reads

    def _add_usage(self, usage: Any) -> None:
        if isinstance(usage, dict):
            self._usage.update({k: v for k, v in usage.items() if k in ("input_tokens", "output_tokens")})

    def completion(self) -> Completion:
        """The whole answer; raises :class:`ProviderStreamError` when the stream ended before its end."""
        if not self.done and not self._stopped:
            raise ProviderStreamError(
                f"{self.provider}: the stream ended before its message_delta and message_stop",
                kind="incomplete_stream",
            )
        content: list[dict[str, Any]] = []
        output_json: str | None = None
        for _, block in sorted(self._blocks.items()):
            joined = "".join(block.parts)
            if block.kind == "text":
                content.append({"type": "text", "text": joined})
            elif block.kind in ("tool_use", "output"):
                try:
                    arguments = json.loads(joined) if joined.strip() else {}
                except ValueError:
                    raise ProviderResponseError(
                        f"{self.provider} streamed tool input for {block.name!r} that is not JSON: "
                        f"{joined[:_EXCERPT]!r}"
                    ) from None
                content.append({"type": "tool_use", "id": block.id, "name": block.name, "input": arguments})
                if block.kind == "output":
                    output_json = joined
        data: dict[str, Any] = {"model": self.model, "content": content, "stop_reason": self._stop_reason}
        data["usage"] = self._usage
        completion = parse_anthropic_message(
            data, provider=self.provider, model=self.model, output_tool=self.output_tool
        )
        if output_json and not completion.tool_calls:
            # the structured answer as it streamed (the same object; the parse re-serializes it)
            completion = dataclasses.replace(completion, text=output_json)
        return completion
