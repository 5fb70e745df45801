"""Anthropic Messages API."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from relaybus.exceptions import ProviderResponseError

from ._http import HttpProvider, post_json, reported_usage, stream_chunks
from .base import ChatRequest, Completion
from .chat import (
    AssistantMessage,
    FinishReason,
    NamedToolChoice,
    ResponseSchema,
    SystemMessage,
    ToolCall,
    ToolResultMessage,
    UserMessage,
)

if TYPE_CHECKING:
    from .stream import StreamChunk

__all__ = ["ANTHROPIC_VERSION", "AnthropicProvider", "anthropic_body", "parse_anthropic_message"]

ANTHROPIC_VERSION = "2023-06-01"
_DEFAULT_OUTPUT_DESCRIPTION = "Give the final answer: call this tool with the answer as its input."
_STOP_REASONS = {
    None: FinishReason.STOP,
    "end_turn": FinishReason.STOP,
    "stop_sequence": FinishReason.STOP,
    "max_tokens": FinishReason.LENGTH,
    "model_context_window_exceeded": FinishReason.LENGTH,
    "tool_use": FinishReason.TOOL_CALLS,
    "refusal": FinishReason.REFUSAL,
}


class AnthropicProvider(HttpProvider):
    """``POST {base_url}/v1/messages`` with ``x-api-key`` and ``anthropic-version: 2023-06-01``.

    ``base_url`` is the host without the version path (``https://api.anthropic.com``), as in the Anthropic
    SDK. See :func:`anthropic_body` for the request (system prompt top-level, tool results as ``tool_result``
    blocks, structured output as a tool) and :func:`parse_anthropic_message` for how the answer is read.
    """

    kind = "anthropic"
    default_base_url = "https://api.anthropic.com"

    async def complete(self, request: ChatRequest) -> Completion:
        body = anthropic_body(self.model, request)
        data = await post_json(self._client, self._url, body, self._headers(), self.name)
        schema = request.response_schema
        return parse_anthropic_message(
            data, provider=self.name, model=self.model, output_tool=schema.name if schema else None
        )

    def stream(self, request: ChatRequest) -> AsyncIterator[StreamChunk]:
        """The same request with ``stream: true``, read as
        :class:`~relaybus.executor.llm.anthropic_stream.AnthropicStream` describes."""
        from .anthropic_stream import AnthropicStream  # here: anthropic_stream imports this module

        body = anthropic_body(self.model, request)
        body["stream"] = True
        schema = request.response_schema
        assembler = AnthropicStream(
            provider=self.name, model=self.model, output_tool=schema.name if schema else None
        )
        return stream_chunks(self._client, self._url, body, self._headers(), self.name, assembler)

    @property
    def _url(self) -> str:
        return f"{self.base_url}/v1/messages"

    def _headers(self) -> dict[str, str]:
        headers = {"anthropic-version": ANTHROPIC_VERSION}
        if self._api_key:
            headers["x-api-key"] = self._api_key.reveal()
        return headers


def anthropic_body(model: str, request: ChatRequest) -> dict[str, Any]:
    """The Messages body for ``request``.

    System messages become the top-level ``system``. Other messages alternate ``user`` / ``assistant``
    (consecutive ones of a side are merged): a lone user text stays a string; assistant turns are ``text`` and
    ``tool_use`` blocks (``input`` the parsed arguments, ``{}`` when they are not a JSON object); tool results
    are ``tool_result`` blocks (``tool_use_id``, ``content``, ``is_error`` when set) in a user message. Tools
    go as ``{name, description, input_schema}``; tool choice ``none`` / ``required`` / a named tool as
    ``{type: none}`` / ``{type: any}`` / ``{type: tool, name}``.

    A response schema becomes one more tool named after it (its input schema the response schema), and the
    model is made to call a tool: that tool alone when there are no other tools or tool choice is ``none``
    (``{type: tool, name}``), any tool otherwise (``{type: any}``: a real tool, or the answer).
    """
    body: dict[str, Any] = {"model": model, "max_tokens": request.max_tokens, "messages": _turns(request)}
    if request.system:
        body["system"] = request.system
    if request.temperature is not None:
        body["temperature"] = request.temperature
    tools = [
        {"name": t.name, "description": t.description, "input_schema": dict(t.parameters)}
        for t in request.tools
    ]
    choice = request.tool_choice
    tool_choice: dict[str, Any] | None
    if isinstance(choice, NamedToolChoice):
        tool_choice = {"type": "tool", "name": choice.name}
    else:
        tool_choice = {"none": {"type": "none"}, "required": {"type": "any"}}.get(choice)
    schema = request.response_schema
    if schema is not None:
        tools.append(_output_tool(schema))
        if not isinstance(choice, NamedToolChoice):
            alone = not request.tools or choice == "none"
            tool_choice = {"type": "tool", "name": schema.name} if alone else {"type": "any"}
    if tools:
        body["tools"] = tools
        if tool_choice is not None:
            body["tool_choice"] = tool_choice
    return body


def _output_tool(schema: ResponseSchema) -> dict[str, Any]:
    return {
        "name": schema.name,
        "description": schema.description or _DEFAULT_OUTPUT_DESCRIPTION,
        "input_schema": dict(schema.schema),
    }


def _turns(request: ChatRequest) -> list[dict[str, Any]]:
    turns: list[tuple[str, list[dict[str, Any]]]] = []
    for message in request.messages:
        if isinstance(message, SystemMessage):
            continue
        role = "assistant" if isinstance(message, AssistantMessage) else "user"
        blocks = _blocks(message)
        if not blocks:
            continue
        if turns and turns[-1][0] == role:
            turns[-1][1].extend(blocks)
        else:
            turns.append((role, blocks))
    wire: list[dict[str, Any]] = []
    for role, blocks in turns:
        lone_text = len(blocks) == 1 and blocks[0]["type"] == "text" and role == "user"
        wire.append({"role": role, "content": blocks[0]["text"] if lone_text else blocks})
    return wire


def _blocks(message: UserMessage | AssistantMessage | ToolResultMessage) -> list[dict[str, Any]]:
    if isinstance(message, ToolResultMessage):
        block: dict[str, Any] = {
            "type": "tool_result",
            "tool_use_id": message.tool_call_id,
            "content": message.content,
        }
        if message.is_error:
            block["is_error"] = True
        return [block]
    blocks: list[dict[str, Any]] = [{"type": "text", "text": message.text}] if message.text else []
    if isinstance(message, AssistantMessage):
        blocks.extend(
            {"type": "tool_use", "id": c.id, "name": c.name, "input": c.arguments_object() or {}}
            for c in message.tool_calls
        )
    return blocks


def parse_anthropic_message(
    data: dict[str, Any], *, provider: str, model: str, output_tool: str | None = None
) -> Completion:
    """Read a Messages answer: text (the ``text`` blocks joined), tool calls (``tool_use`` blocks, in order,
    ``input`` as JSON text), ``stop_reason`` normalized, ``usage.input_tokens`` / ``output_tokens``.

    ``output_tool`` is the response schema's tool: a call of it is the structured answer (``text`` its input
    as JSON, finish reason ``STOP``), unless the model called real tools in the same answer, which are then
    the answer and the early output call is left out. A ``refusal`` stop gives the text as ``refusal``.
    """
    content = data.get("content")
    if not isinstance(content, list):
        raise ProviderResponseError(f"{provider} answered without a content list")
    texts: list[str] = []
    calls: list[ToolCall] = []
    output: str | None = None
    for block in content:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "text" and isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif block.get("type") == "tool_use":
            call_id, name = block.get("id"), block.get("name")
            if not isinstance(call_id, str) or not isinstance(name, str) or not call_id or not name:
                raise ProviderResponseError(f"{provider} answered with a tool_use block without id or name")
            arguments = json.dumps(block.get("input", {}), ensure_ascii=False)
            if name == output_tool:
                output = arguments
            else:
                calls.append(ToolCall(call_id, name, arguments))
    raw = data.get("stop_reason")
    raw = raw if isinstance(raw, str) else None
    text = "".join(texts)
    finish = _STOP_REASONS.get(raw, FinishReason.OTHER)
    if output is not None and not calls:
        text = output
        finish = FinishReason.STOP if finish is FinishReason.TOOL_CALLS else finish
    elif calls and finish is FinishReason.STOP:
        finish = FinishReason.TOOL_CALLS
    return Completion(
        text=text,
        usage=reported_usage(data, "input_tokens", "output_tokens"),
        model=str(data.get("model") or model),
        finish_reason=finish,
        tool_calls=tuple(calls),
        refusal=(text or None) if finish is FinishReason.REFUSAL else None,
        provider_finish_reason=raw,
    )
