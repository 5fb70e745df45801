"""``relaybus submit --stream``: the text printed as it arrives (read from a pipe while the model still
writes), the steps on stderr, JSON lines with ``--json``; and the printer on its own."""

from __future__ import annotations

import asyncio
import io
import json
import uuid
from collections.abc import AsyncIterator

import pytest

from relaybus import ExecutionResult, TaskEvent
from relaybus.cli._stream import EventPrinter
from relaybus.testing import FakeLLMServer
from tests.agents import processes
from tests.agents.processes import Fleet

from .support import start_cli_async

fleet = processes.fleet
PROMPT = " ".join(f"w{i}" for i in range(40))
REPLY = f"fake reply: {PROMPT}"


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def event(seq: int, kind: str, text: str = "", **fields: object) -> TaskEvent:
    return TaskEvent(task_id=uuid.UUID(int=1), seq=seq, kind=kind, text=text, **fields)  # type: ignore[arg-type]


def test_text_goes_to_stdout_and_steps_to_stderr_plain_when_piped() -> None:
    out, err = io.StringIO(), io.StringIO()
    printer = EventPrinter(out, err)
    printer(event(1, "progress", "reading files", agent="reviewer"))
    printer(event(2, "delta", "Looks "))
    printer(event(3, "tool_call", "grep", data={"arguments": '{"q": "x"}'}, agent="reviewer"))
    printer(event(4, "tool_result", "grep", data={"content": "3 hits", "is_error": False}))
    printer(event(5, "delta", "good"))
    printer(event(6, "result", result=ExecutionResult.success(uuid.UUID(int=1), "Looks good")))
    assert out.getvalue() == "Looks good\n"
    assert err.getvalue().splitlines() == [
        "[reviewer] reading files",
        '[reviewer] tool call grep({"q": "x"})',
        "tool grep: 3 hits",
    ]


def test_on_a_terminal_steps_are_dim_and_control_characters_are_replaced() -> None:
    out, err = Tty(), Tty()
    printer = EventPrinter(out, err)
    printer(event(1, "delta", "red \x1b[31malert"))
    printer(event(2, "progress", "step \x1b[2J"))
    assert out.getvalue() == "red ?[31malert"
    assert err.getvalue() == "\n\x1b[2mstep ?[2J\x1b[0m\n"  # on a line of its own after the text


def test_json_prints_one_line_per_event() -> None:
    out, err = io.StringIO(), io.StringIO()
    printer = EventPrinter(out, err, as_json=True)
    printer(event(1, "delta", "hi"))
    printer(event(2, "result", result=ExecutionResult.success(uuid.UUID(int=1), "hi")))
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["kind"] for line in lines] == ["delta", "result"]
    assert lines[1]["result"]["output"] == "hi"
    assert err.getvalue() == ""


@pytest.fixture
async def server() -> AsyncIterator[FakeLLMServer]:
    async with FakeLLMServer(chunk_size=2, chunk_delay_s=0.01) as fake:
        yield fake


async def start_submit(fleet: Fleet, *args: str) -> asyncio.subprocess.Process:
    argv = ("submit", "--topic", fleet.topic("write.cli"), "--prompt", PROMPT, *args)
    return await start_cli_async(*argv, env={"RELAYBUS_AMQP_URL": fleet.amqp_url})


@pytest.mark.integration
async def test_submit_stream_prints_the_text_while_the_model_still_writes(
    fleet: Fleet, server: FakeLLMServer
) -> None:
    await fleet.start(
        "Writer", env={"RELAYBUS_LLM_PROVIDER": "openai", "OPENAI_BASE_URL": server.openai_base_url}
    )
    proc = await start_submit(fleet, "--stream")
    assert proc.stdout is not None
    async with asyncio.timeout(60):
        first = await proc.stdout.read(1)
        still_writing = server.streams_open == 1
        rest, err = await proc.communicate()
    assert first == b"f"
    assert still_writing  # the first byte came through the pipe before the model's stream ended
    assert (first + rest).decode() == REPLY + "\n"
    assert proc.returncode == 0, err.decode()


@pytest.mark.integration
async def test_submit_stream_json_prints_events_then_the_result(fleet: Fleet, server: FakeLLMServer) -> None:
    await fleet.start(
        "Writer", env={"RELAYBUS_LLM_PROVIDER": "openai", "OPENAI_BASE_URL": server.openai_base_url}
    )
    proc = await start_submit(fleet, "--stream", "--json")
    async with asyncio.timeout(60):
        out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    events = [TaskEvent.model_validate_json(line) for line in out.decode().splitlines()]
    assert events[-1].kind == "result"
    assert events[-1].result is not None
    assert events[-1].result.output == REPLY
    assert "".join(e.text for e in events if e.kind == "delta") == REPLY


@pytest.mark.integration
async def test_submit_stream_json_for_a_topic_nobody_serves_prints_the_rejected_result(fleet: Fleet) -> None:
    argv = ("submit", "--topic", fleet.topic("nobody.serves.this"), "--stream", "--json")
    proc = await start_cli_async(*argv, env={"RELAYBUS_AMQP_URL": fleet.amqp_url})
    async with asyncio.timeout(60):
        out, err = await proc.communicate()
    assert proc.returncode == 1
    [line] = out.decode().splitlines()
    only = TaskEvent.model_validate_json(line)
    assert only.kind == "result"
    assert only.result is not None
    assert only.result.status.value == "rejected"
    assert "relaybus: error:" in err.decode()
