"""The A2A JSON-RPC endpoint: ``POST /a2a`` (the agent named in the request) and ``POST /agents/<name>/a2a``.

A2A 1.0 methods (``SendMessage``, ``SendStreamingMessage``, ``GetTask``, ``CancelTask``, ``SubscribeToTask``)
need ``A2A-Version: 1.0`` (header or query parameter); the 0.3 names (``message/send``, ``message/stream``,
``tasks/get``, ``tasks/cancel``, ``tasks/resubscribe``) are answered for ``A2A-Version: 0.3`` or no version
at all (the spec reads an empty version as 0.3). A method under the other version's name, or another
version, gets ``VersionNotSupportedError`` (-32009). Errors are JSON-RPC error objects with HTTP 200, as in
the official SDK's server; 1.0 errors carry a ``google.rpc.ErrorInfo`` detail with the A2A reason.

``SendMessage`` waits for the task to end unless ``configuration.returnImmediately`` (1.0) is true or
``configuration.blocking`` (0.3) is false. Streams begin with the whole Task and end after its final status;
between them come the task's events (model text as chunks of the ``stream`` artifact, steps as WORKING
status updates: see :mod:`~relaybus.gateway.a2a_events`).
On the shared endpoint a request names its agent in ``tenant`` or ``metadata.agent``; with neither, the one
live agent is meant, and with several the request is refused with their names.
"""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

from aiohttp import web
from pydantic import ValidationError

from relaybus.log import get_logger
from relaybus.messages import NAME_RE, TaskEvent

from .a2a_events import EventMapper
from .a2a_mapping import (
    TERMINAL_STATES,
    a2a_task,
    stream_events,
    task_from_message,
    task_page,
    task_state,
    to_v03,
)
from .a2a_types import (
    A2A_VERSION,
    A2A_VERSION_V03,
    A2AError,
    ErrorCode,
    GetTaskParams,
    ListTasksParams,
    SendMessageParams,
    TaskIdParams,
    send_params_from_v03,
)
from .directory import AgentDirectory
from .tasks import TaskRecord, TaskRegistry, TooManyTasks
from .web import EventStream, HttpProblem, json_response, read_body, validation_details

__all__ = ["VERSION_HEADER", "A2AEndpoint"]

VERSION_HEADER = "A2A-Version"
_V03_NAMES = {
    "message/send": "SendMessage",
    "message/stream": "SendStreamingMessage",
    "tasks/get": "GetTask",
    "tasks/cancel": "CancelTask",
    "tasks/resubscribe": "SubscribeToTask",
}
_PUSH_METHODS = frozenset(
    {
        "CreateTaskPushNotificationConfig",
        "GetTaskPushNotificationConfig",
        "ListTaskPushNotificationConfigs",
        "DeleteTaskPushNotificationConfig",
        "tasks/pushNotificationConfig/set",
        "tasks/pushNotificationConfig/get",
        "tasks/pushNotificationConfig/list",
        "tasks/pushNotificationConfig/delete",
    }
)
_UNSUPPORTED = frozenset({"GetExtendedAgentCard", "agent/getAuthenticatedExtendedCard"})
_ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"


def _major_minor(version: str) -> str:
    parts = version.strip().split(".")
    return ".".join(parts[:2]) if len(parts) >= 2 else (f"{parts[0]}.0" if parts[0] else "")


class _Call:
    """One JSON-RPC call being answered: its id, its protocol version and its agent (None on /a2a)."""

    def __init__(self, request: web.Request, agent: str | None) -> None:
        self.request = request
        self.agent = agent
        self.id: str | int | None = None
        self.v03 = True

    def envelope(self, result: Any) -> dict[str, Any]:
        return {"jsonrpc": "2.0", "id": self.id, "result": result}

    def error(self, exc: A2AError) -> web.Response:
        error: dict[str, Any] = {"code": int(exc.code), "message": exc.message}
        if not self.v03:
            error["data"] = [{"@type": _ERROR_INFO, "reason": exc.code.name, "domain": "a2a-protocol.org"}]
        return json_response({"jsonrpc": "2.0", "id": self.id, "error": error})

    def task(self, record: TaskRecord, history_length: int | None = None, *, wrap: bool = False) -> Any:
        task = a2a_task(record, history_length=history_length)
        if self.v03:
            return to_v03(task)
        return {"task": task} if wrap else task


class A2AEndpoint:
    """Answers the JSON-RPC calls; see the module docstring. ``wait_limit_s`` bounds a blocking send."""

    def __init__(
        self,
        registry: TaskRegistry,
        directory: AgentDirectory,
        *,
        max_body_bytes: int,
        wait_limit_s: float,
        keepalive_s: float,
    ) -> None:
        self._registry = registry
        self._directory = directory
        self._max_body_bytes = max_body_bytes
        self._wait_limit_s = wait_limit_s
        self._keepalive_s = keepalive_s
        self._log = get_logger("relaybus.gateway.a2a")

    async def handle(self, request: web.Request) -> web.StreamResponse:
        agent = request.match_info.get("agent")
        if agent is not None and not NAME_RE.match(agent):
            raise HttpProblem(404, f"no agent is named {agent!r}")
        call = _Call(request, agent)
        try:
            method, params = await self._parse(call)
            return await self._dispatch(call, method, params)
        except A2AError as exc:
            return call.error(exc)
        except TooManyTasks as exc:
            return call.error(A2AError(ErrorCode.INTERNAL_ERROR, str(exc)))

    async def _parse(self, call: _Call) -> tuple[str, Any]:
        try:
            body = await read_body(call.request, self._max_body_bytes)
        except HttpProblem as exc:
            raise A2AError(ErrorCode.INVALID_REQUEST, exc.detail) from None
        try:
            envelope = json.loads(body)
        except ValueError as exc:
            raise A2AError(ErrorCode.PARSE_ERROR, f"the body is not JSON: {exc}") from None
        if not isinstance(envelope, dict):
            raise A2AError(
                ErrorCode.INVALID_REQUEST, "send one JSON-RPC request object (batches are not supported)"
            )
        request_id = envelope.get("id")
        if isinstance(request_id, str | int) and not isinstance(request_id, bool):
            call.id = request_id
        elif request_id is not None:
            raise A2AError(ErrorCode.INVALID_REQUEST, "id must be a string, an integer or null")
        method = envelope.get("method")
        if envelope.get("jsonrpc") != "2.0" or not isinstance(method, str) or not method:
            raise A2AError(
                ErrorCode.INVALID_REQUEST, 'a JSON-RPC request has "jsonrpc": "2.0" and a "method"'
            )
        params = envelope.get("params", {})
        if not isinstance(params, dict):
            raise A2AError(ErrorCode.INVALID_PARAMS, "params must be a JSON object")
        self._check_version(call, method)
        return method, params

    def _check_version(self, call: _Call, method: str) -> None:
        asked = call.request.headers.get(VERSION_HEADER) or call.request.query.get(VERSION_HEADER) or ""
        version = _major_minor(asked) or A2A_VERSION_V03
        family = A2A_VERSION_V03 if "/" in method else A2A_VERSION  # 0.3 names are "group/verb"
        call.v03 = version == A2A_VERSION_V03  # answer in the form the client reads
        if version != family:
            raise A2AError(
                ErrorCode.VERSION_NOT_SUPPORTED,
                f"{method} is an A2A {family} method but the request asks for A2A {version}; this gateway "
                f"speaks 1.0 (send {VERSION_HEADER}: 1.0) and 0.3 (the default)",
            )

    async def _dispatch(self, call: _Call, method: str, params: dict[str, Any]) -> web.StreamResponse:
        name = _V03_NAMES.get(method, method)  # the version matches the name's family (_check_version)
        if name == "SendMessage":
            return await self._send(call, params, stream=False)
        if name == "SendStreamingMessage":
            return await self._send(call, params, stream=True)
        if name == "GetTask":
            query = self._params(GetTaskParams, params)
            return json_response(call.envelope(call.task(self._find(call, query.id), query.history_length)))
        if name == "CancelTask":
            return await self._cancel(call, self._params(TaskIdParams, params))
        if name == "SubscribeToTask":
            record = self._find(call, self._params(TaskIdParams, params).id)
            if task_state(record) in TERMINAL_STATES:
                raise A2AError(ErrorCode.UNSUPPORTED_OPERATION, f"task {record.id} has ended: get it instead")
            return await self._stream(call, record)
        if name == "ListTasks":
            query = self._params(ListTasksParams, params)
            agent = call.agent or query.tenant or None
            records = [r for r in self._registry.records() if agent is None or r.task.agent == agent]
            return json_response(call.envelope(task_page(records, query)))
        if method in _PUSH_METHODS:
            raise A2AError(
                ErrorCode.PUSH_NOTIFICATION_NOT_SUPPORTED, "this gateway sends no push notifications"
            )
        if method in _UNSUPPORTED:
            raise A2AError(ErrorCode.UNSUPPORTED_OPERATION, f"{method} is not supported by this gateway")
        raise A2AError(ErrorCode.METHOD_NOT_FOUND, f"no method {method!r}")

    @staticmethod
    def _params(model: type[Any], params: dict[str, Any]) -> Any:
        try:
            return model.model_validate(params)
        except ValidationError as exc:
            problems = "; ".join(f"{d['loc']}: {d['msg']}" for d in validation_details(exc))
            raise A2AError(ErrorCode.INVALID_PARAMS, f"invalid params: {problems}") from None

    def _find(self, call: _Call, task_id: str) -> TaskRecord:
        try:
            record = self._registry.get(UUID(task_id))
        except ValueError:
            record = None
        if record is None or (call.agent is not None and record.task.agent != call.agent):
            raise A2AError(
                ErrorCode.TASK_NOT_FOUND, f"no task {task_id!r} (unknown, or its result has expired)"
            )
        return record

    def _agent_of(self, call: _Call, params: SendMessageParams) -> str:
        if call.agent is not None:
            return call.agent
        named = params.tenant or (params.metadata or {}).get("agent")
        if isinstance(named, str) and named:
            if not NAME_RE.match(named):
                raise A2AError(ErrorCode.INVALID_PARAMS, f"{named!r} is not an agent name")
            return named
        live = list(self._directory.agents())
        if len(live) == 1:
            return live[0]
        raise A2AError(
            ErrorCode.INVALID_PARAMS,
            "name the agent in `tenant` or `metadata.agent` (live agents: "
            f"{', '.join(live) or 'none'}), or use /agents/<name>/a2a",
        )

    async def _send(self, call: _Call, params: dict[str, Any], *, stream: bool) -> web.StreamResponse:
        if call.v03:
            params = send_params_from_v03(params)
        request = self._params(SendMessageParams, params)
        if request.message.task_id:
            self._find(call, request.message.task_id)  # TaskNotFoundError when unknown
            raise A2AError(
                ErrorCode.UNSUPPORTED_OPERATION,
                "a relaybus task takes one message: send a new message without taskId (same contextId)",
            )
        task, context = task_from_message(request, self._agent_of(call, request))
        record, _ = self._registry.submit(task, context=context)
        self._log.debug("a2a_task_submitted", task_id=str(task.id), agent=task.agent)
        if stream:
            return await self._stream(call, record)
        if not request.configuration.return_immediately:
            await self._registry.wait_finished(record, self._wait_limit_s)
        history = request.configuration.history_length
        return json_response(call.envelope(call.task(record, history, wrap=True)))

    async def _cancel(self, call: _Call, params: TaskIdParams) -> web.Response:
        record = self._find(call, params.id)
        if record.is_finished:
            raise A2AError(
                ErrorCode.TASK_NOT_CANCELABLE, f"task {record.id} has ended already ({task_state(record)})"
            )
        await self._registry.cancel(record.id, "cancelled by an A2A client")
        return json_response(call.envelope(call.task(record)))

    async def _stream(self, call: _Call, record: TaskRecord) -> web.StreamResponse:
        # The first event and the transitions after it are taken together, before any await, so a phase
        # change while the response opens is neither lost nor shown twice.
        first = call.envelope(call.task(record, wrap=True))
        seen = len(record.transitions)
        events = EventStream(call.request)
        try:
            await events.open()
            await events.send(first)
            mapped = EventMapper(record)
            async for update in self._registry.progress(record, seen, idle_s=self._keepalive_s):
                if update is None:
                    await events.comment()
                    continue
                responses = (
                    [mapped(update)] if isinstance(update, TaskEvent) else stream_events(record, update)
                )
                for event in responses:
                    await events.send(call.envelope(to_v03(event) if call.v03 else event))
            await events.close()
        except ConnectionResetError:
            self._log.debug("a2a_stream_client_gone", task_id=str(record.id))
        return events.response
