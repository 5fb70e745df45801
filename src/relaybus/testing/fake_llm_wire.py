"""The two wire formats of the fake LLM server: requests parsed into chat types, answers and errors rendered.

OpenAI chat completions and Anthropic Messages, as their official SDKs send and parse them. A request the
real API would refuse with a 400 (an unknown role, a tool result that answers no earlier tool call, a forced
tool that is not offered) raises :class:`BadRequest`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any, Literal

from relaybus.exceptions import ConfigError, RelaybusError
from relaybus.executor.llm.chat import (
    AssistantMessage,
    ChatMessage,
    FinishReason,
    NamedToolChoice,
    ResponseSchema,
    SystemMessage,
    ToolCall,
    ToolChoice,
    ToolResultMessage,
    UserMessage,
)
from relaybus.tools.spec import ToolSpec

from .fake_llm_scripts import ScriptedAnswer, SeenRequest

__all__ = [
    "Api",
    "BadRequest",
    "anthropic_answer",
    "error_body",
    "openai_answer",
    "parse_anthropic_request",
    "parse_openai_request",
]

Api = Literal["openai", "anthropic"]

_OPENAI_FINISH = {
    FinishReason.STOP: "stop",
    FinishReason.LENGTH: "length",
    FinishReason.TOOL_CALLS: "tool_calls",
    FinishReason.REFUSAL: "stop",  # OpenAI says a refusal in message.refusal
    FinishReason.CONTENT_FILTER: "content_filter",
    FinishReason.OTHER: "other",
}
_ANTHROPIC_STOP = {
    FinishReason.STOP: "end_turn",
    FinishReason.LENGTH: "max_tokens",
    FinishReason.TOOL_CALLS: "tool_use",
    FinishReason.REFUSAL: "refusal",
    FinishReason.CONTENT_FILTER: "refusal",
    FinishReason.OTHER: "pause_turn",
}
_ANTHROPIC_CHOICES: dict[str, ToolChoice] = {"auto": "auto", "any": "required", "none": "none"}


class BadRequest(RelaybusError):
    """The request is one the real API would answer with 400; the message says why."""


def _text_of(content: Any, where: str) -> str:
    """A string, or the ``text`` of a list of parts/blocks (other parts, such as images, are skipped)."""
    if isinstance(content, str):
        return content
    if content is None:
        return ""
    if isinstance(content, list):
        return "".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    raise BadRequest(f"{where}: content must be a string or a list of parts")


def _tool_spec(name: Any, description: Any, schema: Any, where: str) -> ToolSpec:
    try:
        return ToolSpec(name, description if isinstance(description, str) else "", schema)
    except ConfigError as exc:
        raise BadRequest(f"{where}: {exc}") from None


def _check_tool_results(messages: list[ChatMessage]) -> None:
    called: set[str] = set()
    for message in messages:
        if isinstance(message, AssistantMessage):
            called.update(call.id for call in message.tool_calls)
        elif isinstance(message, ToolResultMessage) and message.tool_call_id not in called:
            raise BadRequest(
                f"tool result for {message.tool_call_id!r}, which no earlier tool call has as its id"
            )


def _seen(
    api: Api, body: Mapping[str, Any], number: int, messages: list[ChatMessage], **fields: Any
) -> SeenRequest:
    _check_tool_results(messages)
    choice = fields.get("tool_choice", "auto")
    tools: tuple[ToolSpec, ...] = fields.get("tools", ())
    if isinstance(choice, NamedToolChoice) and choice.name not in {t.name for t in tools}:
        raise BadRequest(f"tool_choice names {choice.name!r}, which is not among the tools")
    return SeenRequest(api, tuple(messages), model=str(body["model"]), number=number, body=body, **fields)


# -- OpenAI chat completions ---------------------------------------------------------------------------------
def parse_openai_request(body: Mapping[str, Any], number: int) -> SeenRequest:
    messages: list[ChatMessage] = []
    for index, wire in enumerate(body["messages"]):
        where = f"messages[{index}]"
        role = wire.get("role") if isinstance(wire, dict) else None
        if role in ("system", "developer"):
            messages.append(SystemMessage(_text_of(wire.get("content"), where)))
        elif role == "user":
            messages.append(UserMessage(_text_of(wire.get("content"), where)))
        elif role == "assistant":
            calls = []
            for call in wire.get("tool_calls") or []:
                function = call.get("function") if isinstance(call, dict) else None
                if not isinstance(function, dict) or not isinstance(call.get("id"), str):
                    raise BadRequest(f"{where}: each tool call needs an id and a function")
                calls.append(
                    ToolCall(call["id"], str(function.get("name")), str(function.get("arguments", "")))
                )
            messages.append(AssistantMessage(_text_of(wire.get("content"), where), tuple(calls)))
        elif role == "tool":
            if not isinstance(wire.get("tool_call_id"), str):
                raise BadRequest(f"{where}: a tool message needs tool_call_id")
            messages.append(ToolResultMessage(wire["tool_call_id"], _text_of(wire.get("content"), where)))
        else:
            raise BadRequest(f"{where}: unknown role {role!r}")
    tools = []
    for index, wire in enumerate(body.get("tools") or []):
        function = wire.get("function") if isinstance(wire, dict) and wire.get("type") == "function" else None
        if not isinstance(function, dict):
            raise BadRequest(f"tools[{index}] must be {{type: function, function: {{...}}}}")
        parameters = function.get("parameters", {"type": "object", "properties": {}})
        tools.append(
            _tool_spec(function.get("name"), function.get("description"), parameters, f"tools[{index}]")
        )
    wire_choice = body.get("tool_choice", "auto")
    choice: ToolChoice
    if isinstance(wire_choice, dict):
        choice = NamedToolChoice(str((wire_choice.get("function") or {}).get("name")))
    elif wire_choice in ("auto", "none", "required"):
        choice = wire_choice
    else:
        raise BadRequest(f"tool_choice {wire_choice!r} is not auto, none, required or a named function")
    schema = None
    response_format = body.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") == "json_schema":
        spec: Any = response_format.get("json_schema") or {}
        try:
            name, description = spec.get("name"), spec.get("description")
            schema = ResponseSchema(name, spec.get("schema"), description or "", bool(spec.get("strict")))
        except ConfigError as exc:
            raise BadRequest(f"response_format: {exc}") from None
    return _seen(
        "openai", body, number, messages, tools=tuple(tools), tool_choice=choice, response_schema=schema
    )


def openai_answer(answer: ScriptedAnswer, seen: SeenRequest) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant"}
    if answer.output is not None:
        message["content"] = answer.joined_text
    elif isinstance(answer.text, str):
        message["content"] = answer.text if answer.text or not (answer.tool_calls or answer.refusal) else None
    else:
        message["content"] = [{"type": "text", "text": part} for part in answer.parts]
    if answer.refusal is not None:
        message["refusal"] = answer.refusal
    if answer.tool_calls:
        message["tool_calls"] = [
            {
                "id": answer.call_id(seen.number, i),
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments_json()},
            }
            for i, call in enumerate(answer.tool_calls)
        ]
    reason = answer.reason
    prompt_tokens, completion_tokens = answer.token_usage(seen)
    return {
        "id": f"chatcmpl-fake-{seen.number}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": seen.model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": _OPENAI_FINISH[reason] if isinstance(reason, FinishReason) else reason,
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


# -- Anthropic Messages --------------------------------------------------------------------------------------
def parse_anthropic_request(body: Mapping[str, Any], number: int) -> SeenRequest:
    system = body.get("system")
    messages: list[ChatMessage] = [SystemMessage(_text_of(system, "system"))] if system else []
    for index, wire in enumerate(body["messages"]):
        where = f"messages[{index}]"
        role = wire.get("role") if isinstance(wire, dict) else None
        if role not in ("user", "assistant"):
            raise BadRequest(f"{where}: role must be user or assistant, got {role!r}")
        content = wire.get("content")
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
        if not isinstance(blocks, list):
            raise BadRequest(f"{where}: content must be a string or a list of blocks")
        if role == "assistant":
            calls = tuple(
                ToolCall(str(b.get("id")), str(b.get("name")), json.dumps(b.get("input", {})))
                for b in blocks
                if isinstance(b, dict) and b.get("type") == "tool_use"
            )
            messages.append(AssistantMessage(_text_of(blocks, where), calls))
            continue
        for block in blocks:
            if isinstance(block, dict) and block.get("type") == "tool_result":
                result = _text_of(block.get("content"), where)
                messages.append(
                    ToolResultMessage(str(block.get("tool_use_id")), result, bool(block.get("is_error")))
                )
            elif isinstance(block, dict) and isinstance(block.get("text"), str):
                messages.append(UserMessage(block["text"]))
    tools = tuple(
        _tool_spec(t.get("name"), t.get("description"), t.get("input_schema"), f"tools[{i}]")
        for i, t in enumerate(body.get("tools") or [])
        if isinstance(t, dict)
    )
    wire_choice = body.get("tool_choice") or {"type": "auto"}
    kind = wire_choice.get("type") if isinstance(wire_choice, dict) else None
    choice: ToolChoice
    if kind == "tool":
        choice = NamedToolChoice(str(wire_choice.get("name")))
    elif isinstance(kind, str) and kind in _ANTHROPIC_CHOICES:
        choice = _ANTHROPIC_CHOICES[kind]
    else:
        raise BadRequest(f"tool_choice {wire_choice!r} is not of type auto, any, tool or none")
    return _seen("anthropic", body, number, messages, tools=tools, tool_choice=choice)


def anthropic_answer(answer: ScriptedAnswer, seen: SeenRequest) -> dict[str, Any]:
    """The Messages answer. A structured ``output`` is a ``tool_use`` of the response-schema tool: the tool
    that ``tool_choice`` forces, else the request's last tool (where relaybus puts it), else a text block."""
    content: list[dict[str, Any]] = [{"type": "text", "text": part} for part in answer.parts if part]
    if answer.refusal:
        content.append({"type": "text", "text": answer.refusal})
    reason = answer.reason
    if answer.output is not None:
        choice = seen.tool_choice
        tool = (
            choice.name
            if isinstance(choice, NamedToolChoice)
            else (seen.tools[-1].name if seen.tools else None)
        )
        if tool is None:
            content = [{"type": "text", "text": answer.joined_text}]
        else:
            content.append(
                {
                    "type": "tool_use",
                    "id": f"toolu_fake_{seen.number}_out",
                    "name": tool,
                    "input": dict(answer.output),
                }
            )
            reason = answer.finish_reason or FinishReason.TOOL_CALLS
    for i, call in enumerate(answer.tool_calls):
        arguments = call.arguments_object()
        if arguments is None:
            raise ConfigError(f"tool call {call.name!r}: the Anthropic format needs arguments as an object")
        call_id = answer.call_id(seen.number, i, "toolu_fake")
        content.append({"type": "tool_use", "id": call_id, "name": call.name, "input": arguments})
    prompt_tokens, completion_tokens = answer.token_usage(seen)
    return {
        "id": f"msg_fake_{seen.number}",
        "type": "message",
        "role": "assistant",
        "model": seen.model,
        "content": content,
        "stop_reason": _ANTHROPIC_STOP[reason] if isinstance(reason, FinishReason) else reason,
        "stop_sequence": None,
        "usage": {"input_tokens": prompt_tokens, "output_tokens": completion_tokens},
    }


def error_body(api: Api, kind: str, message: str, status: int) -> dict[str, Any]:
    """An error in the format's own shape (what the SDKs read ``type`` and ``message`` from)."""
    if api == "anthropic":
        return {"type": "error", "error": {"type": kind, "message": message}}
    return {"error": {"message": message, "type": kind, "code": status}}
