"""The fake LLM server's streamed answers: a whole answer cut into the SSE events each API streams.

The events are made from the answer the server would give unstreamed (``openai_answer`` /
``anthropic_answer``), so both ways say the same. Text and tool arguments are cut every ``chunk_size``
characters.
"""

from __future__ import annotations

import json
from typing import Any

from .fake_llm_wire import Api

__all__ = ["anthropic_events", "malformed_event", "openai_events", "stream_error_event"]


def _pieces(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def _data(payload: Any) -> bytes:
    return b"data: " + json.dumps(payload, ensure_ascii=False).encode() + b"\n\n"


def _event(type_: str, **fields: Any) -> bytes:
    """An Anthropic event: the SSE event name is its ``type``."""
    return f"event: {type_}\n".encode() + _data({"type": type_, **fields})


def openai_events(answer: dict[str, Any], chunk_size: int, include_usage: bool) -> list[bytes]:
    """``chat.completion.chunk`` events: the role, the content, the refusal, each tool call (``id`` and
    ``name`` first, then its arguments), the finish reason; with ``include_usage`` a last chunk with no
    choices and the usage (every other chunk has ``usage: null``, as OpenAI sends); then ``[DONE]``."""
    head: dict[str, Any] = {key: answer[key] for key in ("id", "created", "model")}
    head["object"] = "chat.completion.chunk"
    if include_usage:
        head["usage"] = None
    choice = answer["choices"][0]
    message = choice["message"]
    content = message.get("content")
    text = "".join(p["text"] for p in content) if isinstance(content, list) else (content or "")
    deltas: list[dict[str, Any]] = [{"role": "assistant", "content": ""}]
    deltas += [{"content": piece} for piece in _pieces(text, chunk_size)]
    deltas += [{"refusal": piece} for piece in _pieces(message.get("refusal") or "", chunk_size)]
    for index, call in enumerate(message.get("tool_calls") or []):
        function = call["function"]
        first = {"index": index, "id": call["id"], "type": "function"}
        deltas.append({"tool_calls": [{**first, "function": {"name": function["name"], "arguments": ""}}]})
        deltas += [
            {"tool_calls": [{"index": index, "function": {"arguments": piece}}]}
            for piece in _pieces(function["arguments"], chunk_size)
        ]
    chunks = [{**head, "choices": [{"index": 0, "delta": d, "finish_reason": None}]} for d in deltas]
    chunks.append({**head, "choices": [{"index": 0, "delta": {}, "finish_reason": choice["finish_reason"]}]})
    if include_usage:
        chunks.append({**head, "choices": [], "usage": answer["usage"]})
    return [_data(chunk) for chunk in chunks] + [b"data: [DONE]\n\n"]


def anthropic_events(message: dict[str, Any], chunk_size: int) -> list[bytes]:
    """``message_start`` (input tokens), a ``ping``, per block ``content_block_start`` / ``_delta``
    (``text_delta``, or ``input_json_delta`` with the input's JSON) / ``_stop``, then ``message_delta``
    (``stop_reason``, output tokens) and ``message_stop``."""
    usage = message["usage"]
    start = {**message, "content": [], "stop_reason": None, "stop_sequence": None}
    start["usage"] = {"input_tokens": usage["input_tokens"], "output_tokens": 1}
    events = [_event("message_start", message=start), _event("ping")]
    for index, block in enumerate(message["content"]):
        if block["type"] == "text":
            opening: dict[str, Any] = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": piece} for piece in _pieces(block["text"], chunk_size)]
        else:
            opening = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
            arguments = json.dumps(block["input"], ensure_ascii=False)
            deltas = [{"type": "input_json_delta", "partial_json": p} for p in _pieces(arguments, chunk_size)]
        events.append(_event("content_block_start", index=index, content_block=opening))
        events += [_event("content_block_delta", index=index, delta=delta) for delta in deltas]
        events.append(_event("content_block_stop", index=index))
    stop = {"stop_reason": message["stop_reason"], "stop_sequence": None}
    events.append(_event("message_delta", delta=stop, usage={"output_tokens": usage["output_tokens"]}))
    events.append(_event("message_stop"))
    return events


def stream_error_event(api: Api, error_type: str | None) -> bytes:
    """An error sent inside the stream: Anthropic's ``event: error`` (default ``overloaded_error``), or the
    ``data: {"error": ...}`` OpenAI-compatible servers send (default ``server_error``)."""
    if api == "anthropic":
        kind = error_type or "overloaded_error"
        return _event("error", error={"type": kind, "message": f"{kind} (injected fault)"})
    kind = error_type or "server_error"
    return _data({"error": {"message": f"{kind} (injected fault)", "type": kind, "code": None}})


def malformed_event() -> bytes:
    """A ``data:`` line that is not JSON."""
    return b"data: {this is not json\n\n"
