"""The demo editor's offline model: deterministic, it calls the three tools in one turn, then summarizes.

``relaybus demo`` without an LLM configured runs it in process (:class:`~relaybus.testing.ScriptedProvider`)
or, with worker processes, behind a :class:`~relaybus.testing.FakeLLMServer` that the editor's process
reaches over HTTP as its OpenAI-compatible model. Any other agent loop sees what a real model would send.
"""

from __future__ import annotations

import json

from relaybus.testing.fake_llm_scripts import ScriptedAnswer, ScriptedToolCall, SeenRequest

__all__ = ["GUIDE_WORDS", "editor_model"]

GUIDE_WORDS = 750
"""The length of the guide the editor is told about (five sections of about 150 words)."""

_CUT = 90


def editor_model(seen: SeenRequest) -> ScriptedAnswer | str:
    """The editor's answer to ``seen``: the tool calls first, then a summary quoting their results."""
    results = seen.tool_results
    if not results:
        return ScriptedAnswer(
            tool_calls=[
                ScriptedToolCall("research", {"prompt": "Three facts about relaybus for a guide's summary"}),
                ScriptedToolCall("outline", {"prompt": "Outline the relaybus user guide in one line"}),
                ScriptedToolCall("reading_time", {"words": GUIDE_WORDS}),
            ]
        )
    facts, outline, minutes = (_text(m.content) for m in results[:3])
    return (
        f"The relaybus user guide ({minutes} to read) follows this outline: {outline}. "
        f"The researcher adds: {facts}."
    )


def _text(content: str) -> str:
    """A tool result as a short phrase: the planner's JSON shows its outline."""
    try:
        value = json.loads(content)
    except ValueError:
        value = content
    if isinstance(value, dict) and "outline" in value:
        value = value["outline"]
    text = str(value).replace("\n", " ")
    return text if len(text) <= _CUT else text[: _CUT - 3] + "..."
