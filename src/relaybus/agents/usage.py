"""``UsageTally``: token usage added up as plain integers, for counts that grow on every model turn."""

from __future__ import annotations

from relaybus.messages import Usage

__all__ = ["NO_USAGE", "UsageTally"]

NO_USAGE = Usage()
"""The empty usage (frozen, so one instance serves everyone)."""


class UsageTally:
    """A running sum of :class:`~relaybus.messages.Usage`; ``Usage + Usage`` validates a new pydantic model,
    a few microseconds each, which the agent loop would pay several times a turn."""

    __slots__ = ("completion", "prompt", "requests")

    def __init__(self) -> None:
        self.prompt = self.completion = self.requests = 0

    def add(self, usage: Usage) -> None:
        self.prompt += usage.prompt_tokens
        self.completion += usage.completion_tokens
        self.requests += usage.requests

    def usage(self) -> Usage:
        """The sum as a ``Usage`` (the shared empty one when nothing was added)."""
        if not (self.prompt or self.completion or self.requests):
            return NO_USAGE
        return Usage(prompt_tokens=self.prompt, completion_tokens=self.completion, requests=self.requests)
