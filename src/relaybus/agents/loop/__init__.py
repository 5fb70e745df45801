"""The agent loop: a model turn, every tool call of that turn at once, the results back, the next turn.

:func:`run_agent_loop` is what :meth:`~relaybus.agents.AgentContext.run_loop` (and so the default ``handle``
of an agent with tools) runs; :func:`open_toolboxes` starts each agent's tools when its worker starts.
"""

from .calls import ToolCallRecord, TurnCalls, run_tool_calls
from .runner import run_agent_loop
from .structured import StructuredOutput, structured_output
from .toolboxes import open_toolboxes

__all__ = [
    "StructuredOutput",
    "ToolCallRecord",
    "TurnCalls",
    "open_toolboxes",
    "run_agent_loop",
    "run_tool_calls",
    "structured_output",
]
