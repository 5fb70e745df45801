"""An httpx.MockTransport that answers from a list and keeps every request (provider tests, no network)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx

Handler = Callable[[httpx.Request], httpx.Response]


class Recorder:
    """Answers the n-th request with the n-th response (the last one again once they run out)."""

    def __init__(self, *responses: httpx.Response | Handler) -> None:
        self.responses = list(responses)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        response = self.responses[min(len(self.requests), len(self.responses)) - 1]
        return response(request) if callable(response) else response

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.MockTransport(self))

    def body(self, index: int = 0) -> Any:
        return json.loads(self.requests[index].content)


def openai_answer(
    message: dict[str, Any], finish_reason: str | None = "stop", **usage: int
) -> httpx.Response:
    """A chat completion whose choices[0] has ``message`` and ``finish_reason``."""
    choice = {"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish_reason}
    return httpx.Response(
        200,
        json={
            "model": "m",
            "choices": [choice],
            "usage": usage or {"prompt_tokens": 7, "completion_tokens": 2},
        },
    )
