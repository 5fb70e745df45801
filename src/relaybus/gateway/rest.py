"""The plain REST API for callers that do not speak A2A: ``POST /tasks``, ``GET /tasks/{id}``,
``GET /tasks/{id}/events`` (Server-Sent Events) and ``DELETE /tasks/{id}``.

What a caller may rely on:

- ``POST /tasks`` takes an ``AgentTask`` as JSON (validated like a message on the bus: 413 over the size
  limit, 415 without ``Content-Type: application/json``, 400 for a body that is not JSON, 422 with the
  failing fields for one that is not a valid task). It answers 202 with the task's :class:`TaskView` and a
  ``Location``; with ``?wait=S`` it waits up to S seconds and answers 200 with the result when the task ended
  by then (else 202). Posting a task id again returns that task instead of running it twice. 503 with
  ``Retry-After`` when the gateway already waits for its maximum of tasks.
- ``GET /tasks/{id}``: the view (with ``result`` once finished) while the result is kept, else 404.
- ``GET /tasks/{id}/events``: one ``status`` event per phase change (``id:`` numbers them, and a
  ``Last-Event-ID`` resumes after one), between them the task's :class:`~relaybus.TaskEvent` s as they come
  (SSE event ``delta``, ``progress``, ``tool_call`` or ``tool_result``, data the TaskEvent as JSON, no
  ``id:``; a stream resumed past ``working`` gets only the new ones), then one ``result`` event with the
  ``ExecutionResult``; then the stream ends. Comments keep an idle stream open.
- ``DELETE /tasks/{id}``: cancels it (the worker running it is told to stop); 200 with the finished view,
  409 when it had already ended, 404 when unknown.
"""

from __future__ import annotations

import math
from datetime import datetime
from uuid import UUID

from aiohttp import web
from pydantic import BaseModel, ConfigDict, ValidationError

from relaybus.messages import AgentTask, ExecutionResult, TaskEvent

from .tasks import TaskPhase, TaskRecord, TaskRegistry, TooManyTasks
from .web import EventStream, HttpProblem, json_response, read_body, validation_details

__all__ = ["RestHandlers", "TaskView"]


class TaskView(BaseModel):
    """A task as the REST API shows it: where it is and, once ``finished``, its result."""

    model_config = ConfigDict(frozen=True)

    id: UUID
    phase: TaskPhase
    topic: str
    agent: str | None
    submitted_at: datetime
    updated_at: datetime
    result: ExecutionResult | None = None

    @classmethod
    def of(cls, record: TaskRecord, *, with_result: bool = True) -> TaskView:
        # Built from values the registry already validated: no second validation on every response.
        return cls.model_construct(
            id=record.id,
            phase=record.phase,
            topic=record.task.topic,
            agent=record.task.agent,
            submitted_at=record.transitions[0].at,
            updated_at=record.updated_at,
            result=record.result if with_result else None,
        )


class RestHandlers:
    """The REST routes over one :class:`~relaybus.gateway.tasks.TaskRegistry`; see the module docstring."""

    def __init__(
        self, registry: TaskRegistry, *, max_body_bytes: int, max_wait_s: float, keepalive_s: float
    ) -> None:
        self._registry = registry
        self._max_body_bytes = max_body_bytes
        self._max_wait_s = max_wait_s
        self._keepalive_s = keepalive_s

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/tasks", self.submit)
        app.router.add_get("/tasks/{task_id}", self.get)
        app.router.add_delete("/tasks/{task_id}", self.cancel)
        app.router.add_get("/tasks/{task_id}/events", self.events)

    def _wait_s(self, request: web.Request) -> float | None:
        text = request.query.get("wait")
        if text is None:
            return None
        try:
            wait = float(text)
        except ValueError:
            wait = math.nan
        if not 0 < wait <= self._max_wait_s:
            raise HttpProblem(
                400, f"wait must be a number of seconds above 0 and at most {self._max_wait_s:g}"
            )
        return wait

    async def submit(self, request: web.Request) -> web.Response:
        wait_s = self._wait_s(request)
        body = await read_body(request, self._max_body_bytes)
        try:
            task = AgentTask.model_validate_json(body)
        except ValidationError as exc:
            details = validation_details(exc)
            if any(d["type"] == "json_invalid" for d in details):
                raise HttpProblem(400, f"the body is not JSON: {details[0]['msg']}") from None
            raise HttpProblem(422, "the body is not a valid AgentTask", errors=details) from None
        try:
            record, _ = self._registry.submit(task)
        except TooManyTasks as exc:
            raise HttpProblem(503, str(exc), headers={"Retry-After": "1"}) from None
        if wait_s is not None:
            await self._registry.wait_finished(record, wait_s)
        status = 200 if record.is_finished else 202
        return json_response(TaskView.of(record), status=status, headers={"Location": f"/tasks/{record.id}"})

    def _record(self, request: web.Request) -> TaskRecord:
        text = request.match_info["task_id"]
        try:
            task_id = UUID(text)
        except ValueError:
            raise HttpProblem(400, f"{text!r} is not a task id (a UUID)") from None
        record = self._registry.get(task_id)
        if record is None:
            raise HttpProblem(404, f"no task {task_id} (unknown, or its result has expired)")
        return record

    async def get(self, request: web.Request) -> web.Response:
        return json_response(TaskView.of(self._record(request)))

    async def cancel(self, request: web.Request) -> web.Response:
        record = self._record(request)
        if record.is_finished:
            raise HttpProblem(409, f"task {record.id} has ended already; nothing to cancel")
        await self._registry.cancel(record.id, "cancelled through the gateway's REST API")
        return json_response(TaskView.of(record))

    async def events(self, request: web.Request) -> web.StreamResponse:
        record = self._record(request)
        start = 0
        last_id = request.headers.get("Last-Event-ID", "")
        if last_id.isdigit():
            start = int(last_id) + 1
        stream = EventStream(request)
        await stream.open()
        index = start
        try:
            events_from = 0 if start <= 1 else len(record.events)  # a resumed stream past WORKING: new ones
            async for transition in self._registry.progress(
                record, start, events_from, idle_s=self._keepalive_s
            ):
                if transition is None:
                    await stream.comment()
                    continue
                if isinstance(transition, TaskEvent):  # a step of the running task
                    await stream.send(transition, event=transition.kind)
                    continue
                view = TaskView.of(record, with_result=False).model_copy(
                    update={"phase": transition.phase, "updated_at": transition.at}
                )
                await stream.send(view, event="status", event_id=str(index))
                index += 1
            if record.result is not None:
                await stream.send(record.result, event="result")
            await stream.close()
        except ConnectionResetError:
            pass  # the client went away; the task goes on
        return stream.response
