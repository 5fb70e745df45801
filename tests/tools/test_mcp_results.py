"""How an MCP server's listing and results become specs and outcomes (no server process needed here)."""

from __future__ import annotations

from mcp.types import CallToolResult, EmbeddedResource, ImageContent, TextContent, TextResourceContents
from mcp.types import Tool as MCPToolInfo

from relaybus import MCPServer
from relaybus.tools import ToolOutcome
from relaybus.tools.mcp import result_outcome

OBJECT = {"type": "object", "properties": {}}


def test_listed_names_are_prefixed_made_acceptable_to_models_and_odd_tools_skipped() -> None:
    server = MCPServer.stdio(["unused"], tool_prefix="fs_")
    tools = server._make_tools(
        [
            MCPToolInfo(name="read.file", description="Read a file", input_schema=OBJECT),
            MCPToolInfo(name="read/file", input_schema=OBJECT),  # the same name once made acceptable
            MCPToolInfo(name="scalar", input_schema={"type": "string"}),  # not an arguments object
            MCPToolInfo(name="x" * 100, title="Long", input_schema=OBJECT),
        ]
    )
    assert [(t.name, t.remote_name, t.description) for t in tools] == [
        ("fs_read_file", "read.file", "Read a file"),
        ("fs_" + "x" * 61, "x" * 100, "Long"),
    ]


def test_text_is_joined_embedded_text_included_and_other_content_named() -> None:
    result = CallToolResult(
        content=[
            TextContent(text="first"),
            EmbeddedResource(resource=TextResourceContents(uri="file:///a.txt", text="from a file")),
            ImageContent(data="aGk=", mime_type="image/png"),
        ],
        structured_content={"ignored": "the text is what the model reads"},
    )
    assert result_outcome("read", result, 1000) == ToolOutcome(
        "first\nfrom a file\n[image content, not shown]"
    )


def test_structured_content_alone_goes_as_json_and_a_reported_error_is_an_error_outcome() -> None:
    structured = CallToolResult(content=[], structured_content={"result": 3})
    assert result_outcome("add", structured, 1000) == ToolOutcome('{"result":3}')
    failed = CallToolResult(content=[TextContent(text="disk full")], is_error=True)
    assert result_outcome("save", failed, 1000) == ToolOutcome("save: disk full", is_error=True)
    silent = CallToolResult(content=[], is_error=True)
    assert result_outcome("save", silent, 1000).content == "save: the tool reported an error"
    assert result_outcome("empty", CallToolResult(content=[]), 1000) == ToolOutcome("")
