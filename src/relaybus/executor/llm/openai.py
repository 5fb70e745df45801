"""OpenAI-compatible chat completions: OpenAI, vLLM, Ollama, llama.cpp server, LM Studio (``base_url``)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx

from relaybus.exceptions import ProviderResponseError
from relaybus.secrets import Secret

from ..config import MaxTokensField
from ._http import HttpProvider, post_json, reported_usage, stream_chunks
from .base import ChatRequest, Completion
from .chat import (
    AssistantMessage,
    ChatMessage,
    FinishReason,
    NamedToolChoice,
    SystemMessage,
    ToolCall,
    ToolResultMessage,
)

if TYPE_CHECKING:
    from .stream import StreamChunk

__all__ = ["OpenAIProvider", "openai_body", "parse_openai_completion"]

_OPENAI_HOST = "api.openai.com"
_STOP_WORDS = (None, "stop")
_TOOL_CALL_WORDS = (None, "stop", "tool_calls", "function_call")  # Ollama says "stop" with tool calls


class OpenAIProvider(HttpProvider):
    """``POST {base_url}/chat/completions`` with ``Authorization: Bearer <key>`` when a key is set.

    ``base_url`` includes the API version path, as in the OpenAI SDK: ``https://api.openai.com/v1``,
    ``http://localhost:11434/v1`` (Ollama), ``http://localhost:8000/v1`` (vLLM). See :func:`openai_body` for
    the request and :func:`parse_openai_completion` for how the answer is read. ``max_tokens_field``:
    ``auto`` sends ``max_completion_tokens`` to api.openai.com and ``max_tokens`` to any other server.
    """

    kind = "openai"
    default_base_url = "https://api.openai.com/v1"

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        model: str,
        base_url: str | None = None,
        api_key: Secret | None = None,
        max_tokens_field: MaxTokensField = "auto",
    ) -> None:
        super().__init__(client, model=model, base_url=base_url, api_key=api_key)
        if max_tokens_field == "auto":
            is_openai = urlsplit(self.base_url).hostname == _OPENAI_HOST
            max_tokens_field = "max_completion_tokens" if is_openai else "max_tokens"
        self.max_tokens_field = max_tokens_field

    async def complete(self, request: ChatRequest) -> Completion:
        body = openai_body(self.model, request, max_tokens_field=self.max_tokens_field)
        data = await post_json(self._client, self._url, body, self._headers(), self.name)
        return parse_openai_completion(data, provider=self.name, model=self.model)

    def stream(self, request: ChatRequest) -> AsyncIterator[StreamChunk]:
        """The same request with ``stream: true`` and ``stream_options: {include_usage: true}``, read as
        :class:`~relaybus.executor.llm.openai_stream.OpenAIStream` describes."""
        from .openai_stream import OpenAIStream  # here: openai_stream imports this module

        body = openai_body(self.model, request, max_tokens_field=self.max_tokens_field)
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
        assembler = OpenAIStream(provider=self.name, model=self.model)
        return stream_chunks(self._client, self._url, body, self._headers(), self.name, assembler)

    @property
    def _url(self) -> str:
        return f"{self.base_url}/chat/completions"

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._api_key.reveal()}"} if self._api_key else {}


def openai_body(model: str, request: ChatRequest, *, max_tokens_field: str = "max_tokens") -> dict[str, Any]:
    """The chat completions body for ``request``.

    Messages keep their order: ``system``, ``user``, ``assistant`` (``content`` null when it only calls tools,
    ``tool_calls`` of type ``function``) and ``tool`` (``tool_call_id``, ``content``). Tools go as
    ``{type: function, function: {name, description, parameters}}``; ``tool_choice`` is sent unless it is
    ``auto`` (``none``, ``required``, or ``{type: function, function: {name}}``); a response schema as
    ``response_format: {type: json_schema, json_schema: {name, schema, strict}}``.
    """
    body: dict[str, Any] = {
        "model": model,
        "messages": [_wire_message(m) for m in request.messages],
        max_tokens_field: request.max_tokens,
    }
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.tools:
        body["tools"] = [
            {
                "type": "function",
                "function": {"name": t.name, "description": t.description, "parameters": dict(t.parameters)},
            }
            for t in request.tools
        ]
        choice = request.tool_choice
        if isinstance(choice, NamedToolChoice):
            body["tool_choice"] = {"type": "function", "function": {"name": choice.name}}
        elif choice != "auto":
            body["tool_choice"] = choice
    schema = request.response_schema
    if schema is not None:
        json_schema: dict[str, Any] = {
            "name": schema.name,
            "schema": dict(schema.schema),
            "strict": schema.strict,
        }
        if schema.description:
            json_schema["description"] = schema.description
        body["response_format"] = {"type": "json_schema", "json_schema": json_schema}
    return body


def _wire_message(message: ChatMessage) -> dict[str, Any]:
    if isinstance(message, ToolResultMessage):
        return {"role": "tool", "tool_call_id": message.tool_call_id, "content": message.content}
    if isinstance(message, AssistantMessage):
        wire: dict[str, Any] = {"role": "assistant", "content": message.text or None}
        if message.tool_calls:
            wire["tool_calls"] = [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                for c in message.tool_calls
            ]
        elif wire["content"] is None:
            wire["content"] = ""
        return wire
    role = "system" if isinstance(message, SystemMessage) else "user"
    return {"role": role, "content": message.text}


def parse_openai_completion(data: dict[str, Any], *, provider: str, model: str) -> Completion:
    """Read ``choices[0]``: text (a string, or the ``text`` parts of a content list, joined), ``refusal``
    (``message.refusal`` or ``refusal`` parts), ``tool_calls`` in order, ``finish_reason`` normalized, and
    ``usage.prompt_tokens`` / ``completion_tokens``. A malformed answer raises ProviderResponseError."""
    try:
        choice = data["choices"][0]
        message = choice["message"]
    except (KeyError, IndexError, TypeError):
        raise ProviderResponseError(f"{provider} answered without choices[0].message") from None
    if not isinstance(message, dict):
        raise ProviderResponseError(f"{provider} answered with a choices[0].message that is not an object")
    text, part_refusals = _content_text(message.get("content"), provider)
    refusal = message.get("refusal")
    if not isinstance(refusal, str) or not refusal:
        refusal = "".join(part_refusals) or None
    tool_calls = _tool_calls(message.get("tool_calls"), provider)
    raw = choice.get("finish_reason")
    raw = raw if isinstance(raw, str) else None
    return Completion(
        text=text,
        usage=reported_usage(data, "prompt_tokens", "completion_tokens"),
        model=str(data.get("model") or model),
        finish_reason=_finish_reason(raw, bool(tool_calls), refusal),
        tool_calls=tool_calls,
        refusal=refusal,
        provider_finish_reason=raw,
    )


def _finish_reason(raw: str | None, has_tool_calls: bool, refusal: str | None) -> FinishReason:
    if refusal is not None:
        return FinishReason.REFUSAL
    if raw == "length":
        return FinishReason.LENGTH
    if raw == "content_filter":
        return FinishReason.CONTENT_FILTER
    if has_tool_calls and raw in _TOOL_CALL_WORDS:
        return FinishReason.TOOL_CALLS
    return FinishReason.STOP if raw in _STOP_WORDS else FinishReason.OTHER


def _content_text(content: Any, provider: str) -> tuple[str, list[str]]:
    """The text of ``content`` (a string, null, or a list of parts) and the refusal parts' texts."""
    if content is None:
        return "", []
    if isinstance(content, str):
        return content, []
    if not isinstance(content, list):
        raise ProviderResponseError(f"{provider} answered with content that is neither text nor a list")
    texts: list[str] = []
    refusals: list[str] = []
    for part in content:
        if not isinstance(part, dict):
            continue
        if part.get("type") == "refusal" and isinstance(part.get("refusal"), str):
            refusals.append(part["refusal"])
        elif isinstance(part.get("text"), str):
            texts.append(part["text"])
    return "".join(texts), refusals


def _tool_calls(raw: Any, provider: str) -> tuple[ToolCall, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ProviderResponseError(f"{provider} answered with tool_calls that is not a list")
    calls: list[ToolCall] = []
    for index, item in enumerate(raw):
        function = item.get("function") if isinstance(item, dict) else None
        name = function.get("name") if isinstance(function, dict) else None
        if not isinstance(function, dict) or not isinstance(name, str) or not name:
            raise ProviderResponseError(f"{provider} answered with tool_calls[{index}] without function.name")
        arguments = function.get("arguments")
        if not isinstance(arguments, str):  # some local servers send the object itself
            arguments = "{}" if arguments is None else json.dumps(arguments)
        call_id = item.get("id")
        if not isinstance(call_id, str) or not call_id:
            call_id = f"call_{index}"  # a few local servers omit it; the tool result needs one to refer to
        calls.append(ToolCall(call_id, name, arguments))
    return tuple(calls)
