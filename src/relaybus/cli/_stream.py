"""``relaybus submit --stream``: a task's events printed as they arrive.

Model text (``delta``) goes to stdout as it comes, flushed at once; the steps (``progress`` lines, the agent
loop's ``tool_call`` / ``tool_result``, each with the agent that made it) go to stderr, one line each, dim
when stderr is a terminal and plain when piped. Control characters in text shown on a terminal are
replaced, so a model cannot move the cursor or change the colours. With ``--json`` every event is one JSON
line on stdout instead, the ``result`` event (with the whole result) last.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TextIO

from relaybus.bus.base import Bus, HeaderValue
from relaybus.bus.rpc import ReplyRouter
from relaybus.messages import AgentTask, ExecutionResult, TaskEvent
from relaybus.orchestrator.streaming import result_event, stream_request

__all__ = ["EventPrinter", "stream_task"]

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_DIM, _RESET = "\x1b[2m", "\x1b[0m"
_STEP_CHARS = 200


def _clean(text: str) -> str:
    return _CONTROL.sub("?", text)


class EventPrinter:
    """Prints one task's events: text on ``out``, steps on ``err`` (see the module docstring)."""

    def __init__(self, out: TextIO, err: TextIO, *, as_json: bool = False) -> None:
        self._out = out
        self._err = err
        self._json = as_json
        self._out_tty = out.isatty()
        self._err_tty = err.isatty()
        self._mid_line = False  # text printed on out without its newline yet
        self.ended = False  # the result event was printed

    def __call__(self, event: TaskEvent) -> None:
        self.ended = self.ended or event.kind == "result"
        if self._json:
            self._out.write(event.model_dump_json(exclude_none=True) + "\n")
            self._out.flush()
        elif event.kind == "delta":
            text = _clean(event.text) if self._out_tty else event.text
            self._out.write(text)
            self._out.flush()
            self._mid_line = not text.endswith("\n")
        elif event.kind == "result":
            if self._mid_line:
                self._out.write("\n")
                self._out.flush()
                self._mid_line = False
        else:
            self._step(event)

    def end(self, result: ExecutionResult) -> None:
        """Print the result event of ``result`` unless the stream printed one (the task was never sent:
        no agent for its topic, the broker refused it)."""
        if not self.ended:
            self(result_event(result.task_id, 1, result))

    def _step(self, event: TaskEvent) -> None:
        data = event.data if isinstance(event.data, Mapping) else {}
        if event.kind == "tool_call":
            line = f"tool call {event.text}({str(data.get('arguments', ''))[:_STEP_CHARS]})"
        elif event.kind == "tool_result":
            failed = " failed" if data.get("is_error") else ""
            line = f"tool {event.text}{failed}: {str(data.get('content', ''))[:_STEP_CHARS]}"
        else:
            line = event.text[: _STEP_CHARS * 5]
        who = f"[{event.agent}] " if event.agent else ""
        line = " ".join(f"{who}{line}".split()) if self._err_tty else f"{who}{line}".replace("\n", " ")
        if self._err_tty:
            line = f"{_DIM}{_clean(line)}{_RESET}"
        if self._mid_line and self._out_tty and self._err_tty:
            self._err.write("\n")  # the same terminal: start the step on a line of its own
        self._err.write(line + "\n")
        self._err.flush()


async def stream_task(
    bus: Bus,
    task: AgentTask,
    *,
    timeout: float,  # noqa: ASYNC109 - the budget becomes a TIMEOUT result
    headers: Mapping[str, HeaderValue],
    printer: EventPrinter,
) -> ExecutionResult:
    """Send ``task`` asking for its events, print them with ``printer`` as they come, return the result
    (a TIMEOUT result past ``timeout``). Publish errors (``NoRouteError``, ``BusError``) propagate."""
    result: ExecutionResult | None = None
    async with ReplyRouter(bus) as router:
        async for event in stream_request(router, task, timeout=timeout, headers=headers):
            printer(event)
            result = event.result
    assert result is not None  # a stream always ends with the result event
    return result
