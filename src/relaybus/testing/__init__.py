"""What users need to test their own agents, with the API they deploy with.

- :class:`AgentTestHarness`: real workers on an in-process :class:`~relaybus.MemoryBus`;
  ``await h.run(task)`` returns the result exactly as a deployed orchestrator would see it.
- :class:`FakeExecutor`: an executor whose answers a test chooses (no HTTP at all).
- :class:`FakeLLMServer`: a real HTTP server on 127.0.0.1 speaking the OpenAI and Anthropic APIs, with latency
  and faults (429 with Retry-After, 500, slow, dropped connections) a test can set, scripted answers
  (:class:`ScriptedAnswer`: text, tool calls, refusals, finish reasons) and every request recorded.
- :class:`ScriptedProvider`: the same scripted answers as an in-process LLM provider (no HTTP).
"""

from .agents import AgentTestHarness, CapturedEvent, FakeExecutor
from .fake_llm import FakeLLMServer, Fault, FaultKind, RecordedCall
from .fake_llm_scripts import Script, ScriptedAnswer, ScriptedProvider, ScriptedToolCall, SeenRequest

__all__ = [
    "AgentTestHarness",
    "CapturedEvent",
    "FakeExecutor",
    "FakeLLMServer",
    "Fault",
    "FaultKind",
    "RecordedCall",
    "Script",
    "ScriptedAnswer",
    "ScriptedProvider",
    "ScriptedToolCall",
    "SeenRequest",
]
