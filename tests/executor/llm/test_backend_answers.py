"""The llm mode reports answers it cannot pass off as a success: truncated, refused, filtered, tool calls."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from relaybus.executor import (
    ChatRequest,
    ExecutorConfig,
    FinishReason,
    ProviderConfig,
    RetryPolicy,
    TaskExecutor,
    UserMessage,
)
from relaybus.executor.backend import RunContext
from relaybus.messages import AgentTask, ExecutionStatus
from relaybus.tools.spec import ToolSpec

from ..mock_http import Recorder, openai_answer

TASK = AgentTask(topic="t", prompt="p")
TOOL_CALL = {"id": "call_1", "type": "function", "function": {"name": "search", "arguments": "{}"}}


def executor(mock: Recorder, **cfg: Any) -> TaskExecutor:
    cfg.setdefault("retry", RetryPolicy(max_attempts=3, base_delay_s=0.001, max_delay_s=0.01))
    config = ExecutorConfig(provider=ProviderConfig(kind="openai", base_url="http://llm.local/v1"), **cfg)
    return TaskExecutor(config, client=mock.client())


@pytest.mark.parametrize(
    ("answer", "error_type", "output", "in_message"),
    [
        (
            openai_answer({"content": "The answer is"}, "length"),
            "OutputTruncated",
            "The answer is",
            "max_tokens=1024",
        ),
        (openai_answer({"content": None, "refusal": "I won't."}), "Refused", "I won't.", "I won't."),
        (
            openai_answer({"content": "partly"}, "content_filter"),
            "ContentFiltered",
            "partly",
            "content filter",
        ),
        (
            openai_answer({"content": "", "tool_calls": [TOOL_CALL]}, "tool_calls"),
            "UnexpectedToolCalls",
            "",
            "called tools (search) but the request offered none",
        ),
    ],
)
async def test_unusable_answers_fail_without_retry_and_keep_the_text(
    answer: httpx.Response, error_type: str, output: str, in_message: str
) -> None:
    mock = Recorder(answer)
    async with executor(mock, fallback=ProviderConfig(kind="echo")) as ex:
        result = await ex.execute(TASK)
    assert result.status is ExecutionStatus.FAILURE
    assert result.error is not None
    assert result.error.type == error_type
    assert not result.error.retryable
    assert in_message in result.error.message
    assert result.output == output
    assert len(mock.requests) == 1  # neither retried nor sent to the fallback
    assert result.attempts == 1
    assert (result.usage.prompt_tokens, result.usage.completion_tokens, result.usage.requests) == (7, 2, 1)


async def test_an_unknown_finish_reason_with_text_is_still_a_success() -> None:
    mock = Recorder(openai_answer({"content": "done"}, "eos"))
    async with executor(mock) as ex:
        result = await ex.execute(TASK)
    assert result.ok
    assert result.output == "done"


async def test_chat_returns_tool_calls_when_tools_were_offered() -> None:
    mock = Recorder(
        httpx.Response(503), openai_answer({"content": None, "tool_calls": [TOOL_CALL]}, "tool_calls")
    )
    request = ChatRequest((UserMessage("find it"),), (ToolSpec("search", "Search."),))
    async with executor(mock) as ex:
        outcome = await ex.llm.chat(request, RunContext())
    assert outcome.completion is not None
    assert outcome.failure is None
    assert outcome.completion.finish_reason is FinishReason.TOOL_CALLS
    assert [call.name for call in outcome.completion.tool_calls] == ["search"]
    assert outcome.attempts == 2
    assert outcome.provider == "openai/gpt-4o-mini"
    assert outcome.usage.requests == 2
    assert mock.body(1)["tools"][0]["function"]["name"] == "search"


async def test_chat_reports_the_failure_of_every_route() -> None:
    mock = Recorder(httpx.Response(500))
    async with executor(mock, retry=RetryPolicy(max_attempts=1)) as ex:
        outcome = await ex.llm.chat(ChatRequest.from_prompt("x"), RunContext())
    assert outcome.completion is None
    assert outcome.failure is not None
    assert outcome.failure.type == "ProviderServerError"
    assert outcome.attempts == 1
    assert outcome.usage.requests == 1
