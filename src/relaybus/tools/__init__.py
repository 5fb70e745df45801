"""Tools an agent's model may call: Python functions, other agents on the bus, MCP servers."""

from .spec import TOOL_NAME_RE, ToolSpec

__all__ = ["TOOL_NAME_RE", "ToolSpec"]
