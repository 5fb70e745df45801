"""Tools an agent's model may call: Python functions, other agents on the bus, MCP servers.

``@tool`` makes a function a :class:`Tool`; :class:`AgentTool` delegates to another agent over the bus;
:class:`MCPServer` serves every tool of an MCP server (extra ``relaybus[mcp]``). Each kind has a ``spec``
(:class:`ToolSpec`, what providers send to the model) and an ``async call(...)`` that returns a
:class:`ToolOutcome` and never raises for a fault of the call. :class:`Toolbox` holds one agent's tools by
name for the agent loop.
"""

from .agent_tool import AgentTool, Delegate
from .function import Tool, tool
from .mcp import MCPConnectionError, MCPServer, MCPTool
from .outcome import DEFAULT_MAX_OUTPUT_BYTES, DEFAULT_TIMEOUT_S, Arguments, ToolOutcome
from .spec import TOOL_NAME_RE, ToolSpec
from .toolbox import AnyTool, Toolbox

__all__ = [
    "DEFAULT_MAX_OUTPUT_BYTES",
    "DEFAULT_TIMEOUT_S",
    "TOOL_NAME_RE",
    "AgentTool",
    "AnyTool",
    "Arguments",
    "Delegate",
    "MCPConnectionError",
    "MCPServer",
    "MCPTool",
    "Tool",
    "ToolOutcome",
    "ToolSpec",
    "Toolbox",
    "tool",
]
