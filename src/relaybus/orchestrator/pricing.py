"""Token prices per model, and which model a task ran on, for the cost columns of a plan's results.

Prices are whatever a user configures (a plan file's ``prices:`` section or the ``prices=`` argument of
``ProjectOrchestrator``); relaybus ships none, since they change. A task's model is, in this order: the
``"model"`` string of its output when the output is a JSON object (agents and providers may report it there),
the task's ``metadata["model"]``, else the orchestrator's default model (``RELAYBUS_LLM_MODEL`` in the CLI).
A model with no price, and no ``"*"`` entry to fall back to, costs nothing: the cost shows as unknown, not 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from relaybus.messages import AgentTask, Usage

__all__ = ["WILDCARD", "ModelPrice", "Prices", "model_of", "price_of"]

WILDCARD = "*"
"""The price key used for a model that has no entry of its own."""


class ModelPrice(BaseModel):
    """US dollars (or any one currency) per million prompt and completion tokens."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    prompt_per_million: Annotated[float, Field(ge=0, le=1e6)] = 0.0
    completion_per_million: Annotated[float, Field(ge=0, le=1e6)] = 0.0

    def cost(self, usage: Usage) -> float:
        return (
            usage.prompt_tokens * self.prompt_per_million
            + usage.completion_tokens * self.completion_per_million
        ) / 1_000_000


Prices = Mapping[str, ModelPrice]


def model_of(task: AgentTask, output: JsonValue, default: str | None = None) -> str | None:
    """The model a task ran on, by the rule in the module docstring; None when nothing says."""
    if isinstance(output, dict):
        model = output.get("model")
        if isinstance(model, str) and model:
            return model
    return task.metadata.get("model") or default


def price_of(prices: Prices, model: str | None) -> ModelPrice | None:
    if model is not None and model in prices:
        return prices[model]
    return prices.get(WILDCARD)
