"""The A2A 1.0 request objects the gateway reads, and the 0.3 ones translated into them.

The models follow ``specification/a2a.proto`` of A2A 1.0 in its ProtoJSON form (camelCase names, enums by
their names such as ``ROLE_USER``), as the official ``a2a-sdk`` 1.x sends them. Like that SDK, unknown fields
are ignored (a newer client's additions do not break an older server). A2A 0.3 requests (``message/send``,
``tasks/get``, ...: ``kind`` discriminators, lower-case enums) are translated into the same models by
:func:`send_params_from_v03` (0.3 ``tasks/get`` and ``tasks/cancel`` already use the 1.0 field names).
"""

from __future__ import annotations

import enum
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, JsonValue, model_validator
from pydantic.alias_generators import to_camel

from relaybus.exceptions import RelaybusError

__all__ = [
    "A2A_VERSION",
    "A2A_VERSION_V03",
    "A2AError",
    "ErrorCode",
    "GetTaskParams",
    "ListTasksParams",
    "Message",
    "Part",
    "SendConfiguration",
    "SendMessageParams",
    "TaskIdParams",
    "send_params_from_v03",
]

A2A_VERSION = "1.0"
"""The protocol version the gateway speaks (``A2A-Version: 1.0``)."""
A2A_VERSION_V03 = "0.3"
"""The earlier version still answered, assumed when a request carries no ``A2A-Version``."""


class _Params(BaseModel):
    model_config = ConfigDict(extra="ignore", alias_generator=to_camel, populate_by_name=True, frozen=True)


class Part(_Params):
    """One piece of a message: exactly one of ``text``, ``raw`` (base64), ``url`` or ``data`` (any JSON)."""

    text: str | None = None
    raw: str | None = None
    url: str | None = None
    data: JsonValue = None
    metadata: dict[str, JsonValue] | None = None
    filename: str | None = None
    media_type: str | None = None

    @property
    def is_data(self) -> bool:
        # ``"data": null`` is a data part holding null, not a missing field.
        return "data" in self.model_fields_set

    @model_validator(mode="after")
    def _one_content(self) -> Part:
        present = [self.text is not None, self.raw is not None, self.url is not None, self.is_data]
        if sum(present) != 1:
            raise ValueError("a part holds exactly one of text, raw, url or data")
        return self


class Message(_Params):
    """A message from the client (``role`` ``ROLE_USER``)."""

    message_id: str = Field(min_length=1, max_length=200)
    context_id: str | None = Field(default=None, max_length=200)
    task_id: str | None = Field(default=None, max_length=200)
    role: str = "ROLE_USER"
    parts: list[Part] = Field(min_length=1)
    metadata: dict[str, JsonValue] | None = None
    extensions: list[str] | None = None
    reference_task_ids: list[str] | None = None


class SendConfiguration(_Params):
    accepted_output_modes: list[str] | None = None
    history_length: int | None = Field(default=None, ge=0)
    return_immediately: bool = False


class SendMessageParams(_Params):
    """``SendMessage`` / ``SendStreamingMessage`` params; ``tenant`` names the agent on ``/a2a``."""

    tenant: str | None = None
    message: Message
    configuration: SendConfiguration = Field(default_factory=SendConfiguration)
    metadata: dict[str, JsonValue] | None = None


class ListTasksParams(_Params):
    """``ListTasks`` params (A2A 1.0; 0.3 had no such method)."""

    tenant: str | None = None
    context_id: str | None = None
    status: str | None = None
    page_size: int = Field(default=50, ge=1, le=100)
    page_token: str | None = None
    history_length: int | None = Field(default=None, ge=0)
    status_timestamp_after: AwareDatetime | None = None
    include_artifacts: bool = False


class TaskIdParams(_Params):
    """``CancelTask`` / ``SubscribeToTask`` params."""

    tenant: str | None = None
    id: str = Field(min_length=1, max_length=200)


class GetTaskParams(TaskIdParams):
    history_length: int | None = Field(default=None, ge=0)


# -- A2A 0.3 ------------------------------------------------------------------------------------------------
_ROLE_V03 = {"user": "ROLE_USER", "agent": "ROLE_AGENT"}


def _part_from_v03(part: Any) -> Any:
    if not isinstance(part, dict):
        return part  # let validation say what is wrong
    kind = part.get("kind")
    common = {"metadata": part.get("metadata")}
    if kind == "text":
        return {"text": part.get("text"), **common}
    if kind == "data":
        return {"data": part.get("data"), "mediaType": "application/json", **common}
    if kind == "file":
        found = part.get("file")
        file: dict[str, Any] = found if isinstance(found, dict) else {}
        content = {"raw": file["bytes"]} if "bytes" in file else {"url": file.get("uri")}
        return {**content, "filename": file.get("name"), "mediaType": file.get("mimeType"), **common}
    return {"kind": kind}  # unknown kind: fails validation with "exactly one of ..."


def send_params_from_v03(params: Any) -> Any:
    """0.3 ``MessageSendParams`` as 1.0 ``SendMessageRequest`` data. A 0.3 send waits unless
    ``configuration.blocking`` is false (what the 0.3 reference server does)."""
    if not isinstance(params, dict):
        return params
    message = params.get("message")
    if isinstance(message, dict):
        parts = message.get("parts")
        message = {
            **{k: v for k, v in message.items() if k != "kind"},
            "role": _ROLE_V03.get(str(message.get("role")), message.get("role")),
            "parts": [_part_from_v03(p) for p in parts] if isinstance(parts, list) else parts,
        }
    configuration = params.get("configuration")
    configuration = configuration if isinstance(configuration, dict) else {}
    blocking = configuration.get("blocking") is not False
    translated = {
        "message": message,
        "configuration": {
            "acceptedOutputModes": configuration.get("acceptedOutputModes"),
            "historyLength": configuration.get("historyLength"),
            "returnImmediately": not blocking,
        },
        "metadata": params.get("metadata"),
    }
    return translated


class ErrorCode(enum.IntEnum):
    """JSON-RPC error codes: the standard ones and A2A's own (A2A 1.0, section 5.4)."""

    PARSE_ERROR = -32700
    INVALID_REQUEST = -32600
    METHOD_NOT_FOUND = -32601
    INVALID_PARAMS = -32602
    INTERNAL_ERROR = -32603
    TASK_NOT_FOUND = -32001
    TASK_NOT_CANCELABLE = -32002
    PUSH_NOTIFICATION_NOT_SUPPORTED = -32003
    UNSUPPORTED_OPERATION = -32004
    CONTENT_TYPE_NOT_SUPPORTED = -32005
    VERSION_NOT_SUPPORTED = -32009


class A2AError(RelaybusError):
    """A request the gateway answers with a JSON-RPC error: ``code`` and a message saying what to fix."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
