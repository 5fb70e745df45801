"""``TaskExecutor.chat``: one model turn of the agent loop, on the executor's providers and limits."""

from __future__ import annotations

import asyncio

import pytest

from relaybus.exceptions import ExecutorError
from relaybus.executor import ChatRequest, Completion, ExecutorConfig, TaskExecutor
from relaybus.executor.lazy import LazyTaskExecutor
from relaybus.executor.llm.chat import FinishReason, ToolCall, UserMessage
from relaybus.executor.llm.stream import StreamDelta, TextDelta
from relaybus.messages import Usage
from relaybus.testing import FakeLLMServer, ScriptedAnswer, ScriptedProvider, ScriptedToolCall
from relaybus.tools import ToolSpec

HI = (UserMessage("hi"),)
ADD = ToolSpec("add", "Add two integers.")


class Gate:
    """A provider whose calls wait until released, counting how many are inside at once."""

    name = "gate"

    def __init__(self) -> None:
        self.inside = 0
        self.most = 0
        self.release = asyncio.Event()

    async def complete(self, request: ChatRequest) -> Completion:
        self.inside += 1
        self.most = max(self.most, self.inside)
        try:
            await self.release.wait()
        finally:
            self.inside -= 1
        return Completion(text="ok", usage=Usage(prompt_tokens=1, completion_tokens=1, requests=1), model="g")


async def test_a_turn_sends_the_conversation_with_the_executors_budget_and_returns_the_answer() -> None:
    provider = ScriptedProvider([ScriptedAnswer(tool_calls=[ScriptedToolCall("add", {"a": 1})])])
    config = ExecutorConfig(max_tokens=77, temperature=0.3)
    async with TaskExecutor(config, provider=provider) as executor:
        turn = await executor.chat(HI, tools=[ADD], agent="solver")
    assert turn.ok
    assert turn.failure is None
    assert turn.completion is not None
    assert turn.completion.tool_calls == (ToolCall("call_1_0", "add", '{"a": 1}'),)
    (sent,) = provider.requests
    assert sent == turn.request
    assert (sent.max_tokens, sent.temperature, sent.tools) == (77, 0.3, (ADD,))
    assert turn.attempts == 1
    assert turn.usage.requests == 1
    assert turn.provider == "scripted/scripted"


async def test_turns_share_the_executors_concurrency_limit() -> None:
    gate = Gate()
    async with TaskExecutor(ExecutorConfig(max_concurrency=2), provider=gate) as executor:
        turns = [asyncio.create_task(executor.chat(HI)) for _ in range(5)]
        async with asyncio.timeout(5):
            while gate.inside < 2:
                await asyncio.sleep(0.01)
        for _ in range(20):
            await asyncio.sleep(0)  # give the others every chance to get in
        assert gate.inside == 2
        gate.release.set()
        results = await asyncio.gather(*turns)
    assert all(t.ok for t in results)
    assert gate.most == 2


async def test_a_turn_past_its_timeout_is_a_retryable_timeout_failure() -> None:
    async with TaskExecutor(provider=Gate()) as executor:
        turn = await executor.chat(HI, timeout_s=0.1)
    assert not turn.ok
    assert turn.completion is None
    assert turn.failure is not None
    assert turn.failure.type == "Timeout"
    assert turn.failure.retryable


@pytest.mark.parametrize(
    ("answer", "tools", "error_type"),
    [
        (ScriptedAnswer(text="cut", finish_reason=FinishReason.LENGTH), [ADD], "OutputTruncated"),
        (ScriptedAnswer(refusal="no"), [ADD], "Refused"),
        (ScriptedAnswer(tool_calls=[ScriptedToolCall("add")]), [], "UnexpectedToolCalls"),
    ],
)
async def test_an_answer_that_cannot_be_used_is_the_turns_failure_with_the_answer_kept(
    answer: ScriptedAnswer, tools: list[ToolSpec], error_type: str
) -> None:
    async with TaskExecutor(provider=ScriptedProvider([answer])) as executor:
        turn = await executor.chat(HI, tools=tools)
    assert turn.failure is not None
    assert turn.failure.type == error_type
    assert turn.completion is not None
    assert turn.usage.requests == 1


async def test_a_provider_that_fails_is_the_turns_failure_and_chat_never_raises_for_it() -> None:
    async with TaskExecutor(provider=ScriptedProvider([])) as executor:  # no answer at all
        turn = await executor.chat(HI)
    assert turn.completion is None
    assert turn.failure is not None
    assert turn.failure.type == "ConfigError"
    assert "no answer left" in turn.failure.message


async def test_chat_after_close_is_an_executor_error() -> None:
    executor = TaskExecutor(provider=ScriptedProvider(["x"]))
    await executor.close()
    with pytest.raises(ExecutorError, match="closed"):
        await executor.chat(HI)


async def test_the_workers_lazy_executor_chats_through_the_executor_it_makes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RELAYBUS_LLM_PROVIDER", "echo")
    lazy = LazyTaskExecutor()
    try:
        turn = await lazy.chat((UserMessage("ping"),), tools=[ADD])
    finally:
        await lazy.close()
    assert turn.completion is not None
    assert turn.completion.text == "echo: ping"
    assert turn.request.tools == (ADD,)


async def test_chat_streams_the_turn_to_on_delta_and_answers_the_same() -> None:
    async with FakeLLMServer(chunk_size=3) as server:
        config = ExecutorConfig.from_env(
            {"RELAYBUS_LLM_PROVIDER": "openai", "OPENAI_BASE_URL": server.openai_base_url}
        )
        async with TaskExecutor(config) as executor:
            deltas: list[StreamDelta] = []
            streamed = await executor.chat(HI, on_delta=deltas.append)
            plain = await executor.chat(HI)
        assert server.streams == 1
    assert streamed.ok
    assert streamed.completion is not None
    assert plain.completion is not None
    assert streamed.completion.text == plain.completion.text == "fake reply: hi"
    assert len(deltas) > 1
    assert "".join(d.text for d in deltas if isinstance(d, TextDelta)) == "fake reply: hi"
