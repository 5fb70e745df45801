"""The machine-readable contract: docs/asyncapi.yaml and docs/schemas.json are what the code generates,
and the AsyncAPI document is valid AsyncAPI 3.0 for the AsyncAPI project's own parser and for the spec's
JSON Schema."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from relaybus.bus.amqp_cluster import queue_arguments
from relaybus.bus.base import DEFAULT_DELIVERY_LIMIT
from relaybus.bus.core import QueueDeclaration
from relaybus.cli import main
from relaybus.contract import asyncapi_document, json_schemas
from relaybus.contract.asyncapi import AGENT_QUEUE_ARGUMENTS
from relaybus.contract.render import asyncapi_text, json_schemas_text
from relaybus.messages import AgentTask, CancelRequest, ExecutionResult, WorkerHeartbeat

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
TOOLS = REPO / ".tools" / "asyncapi"
REGENERATE = "regenerate it: relaybus schema {kind} > docs/{file}"


def test_docs_asyncapi_yaml_is_what_the_code_generates() -> None:
    assert (DOCS / "asyncapi.yaml").read_text() == asyncapi_text(), REGENERATE.format(
        kind="asyncapi", file="asyncapi.yaml"
    )


def test_docs_schemas_json_is_what_the_code_generates() -> None:
    assert (DOCS / "schemas.json").read_text() == json_schemas_text(), REGENERATE.format(
        kind="json", file="schemas.json"
    )


def test_the_cli_prints_both_documents(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema", "asyncapi"]) == 0
    assert capsys.readouterr().out == asyncapi_text()
    assert main(["schema", "asyncapi", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == asyncapi_document()
    assert main(["schema", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == json_schemas()


def test_the_json_schemas_are_the_models_with_what_a_reader_requires() -> None:
    defs = json_schemas()["$defs"]
    assert defs["AgentTask"]["required"] == ["id", "topic"]
    assert defs["ExecutionResult"]["required"] == ["task_id", "status"]
    assert defs["CancelRequest"]["required"] == ["task_id"]
    assert set(defs["WorkerHeartbeat"]["required"]) == {
        "worker", "host", "pid", "agents", "in_flight", "capacity", "interval_s"
    }  # fmt: skip
    validator = jsonschema.Draft202012Validator({**json_schemas(), "$ref": "#/$defs/AgentTask"})
    validator.validate(json.loads(AgentTask(topic="a.b").model_dump_json()))
    assert not validator.is_valid({"topic": "a.b"})  # no id
    assert not validator.is_valid({"id": "6d1f9a0e-3b0c-4a5e-9f51-3c1a3d1a0b11", "topic": "a b"})
    for model in (ExecutionResult, CancelRequest, WorkerHeartbeat):
        assert model.__name__ in defs


def test_the_agent_queue_arguments_in_the_contract_are_the_ones_relaybus_declares() -> None:
    declared = QueueDeclaration("relaybus.agent.x", (), True, DEFAULT_DELIVERY_LIMIT, None)
    assert queue_arguments(declared, None) == AGENT_QUEUE_ARGUMENTS  # one node; a cluster adds its group size
    channel = asyncapi_document()["channels"]["agentQueue"]
    assert channel["x-queue-arguments"] == AGENT_QUEUE_ARGUMENTS


def test_every_message_says_its_headers_properties_and_amqp_bindings() -> None:
    document = asyncapi_document()
    messages = document["components"]["messages"]
    assert set(messages) >= {"task", "result", "event", "cancel", "heartbeat", "deadLetter"}
    for message in messages.values():
        assert message["headers"]["required"][0] == "relaybus-schema"
        assert message["bindings"]["amqp"]["bindingVersion"] == "0.3.0"
    task_properties = messages["task"]["x-amqp-properties"]
    assert task_properties["message_id"]["required"] is True
    assert {"reply_to", "correlation_id", "content_type", "delivery_mode"} <= set(task_properties)
    assert messages["deadLetter"]["headers"]["required"] == ["relaybus-schema", "relaybus-error"]
    send_task = document["operations"]["sendTask"]
    assert send_task["bindings"]["amqp"]["mandatory"] is True
    assert send_task["reply"]["address"]["location"] == "$message.header#/reply_to"


def _asyncapi_tools() -> Path:
    """The AsyncAPI parser from npm in .tools/asyncapi (``make .tools/asyncapi/.installed``, run here when
    it is missing)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.fail("node and npm are needed to validate docs/asyncapi.yaml: apt-get install nodejs npm")
    if not (TOOLS / ".installed").exists():
        subprocess.run(["make", "-s", ".tools/asyncapi/.installed"], cwd=REPO, check=True, timeout=600)
    return TOOLS / "node_modules"


def _parse(document: Path) -> tuple[int, list[dict[str, Any]], str]:
    """Run the AsyncAPI parser on ``document``: its exit code, its diagnostics and its stderr."""
    check = subprocess.run(
        ["node", str(Path(__file__).with_name("asyncapi_check.js")), str(document)],
        env={**os.environ, "NODE_PATH": str(_asyncapi_tools())},
        capture_output=True,
        text=True,
        timeout=120,
    )
    diagnostics = [json.loads(line) for line in check.stdout.splitlines() if line.startswith("{")]
    return check.returncode, diagnostics, check.stderr


def test_the_asyncapi_document_passes_the_asyncapi_parser_with_no_error() -> None:
    code, diagnostics, stderr = _parse(DOCS / "asyncapi.yaml")
    errors = [d for d in diagnostics if d["severity"] == 0]
    assert errors == []
    assert code == 0, stderr


def test_the_asyncapi_parser_does_find_errors_in_a_broken_document(tmp_path: Path) -> None:
    broken: dict[str, Any] = asyncapi_document()
    broken["operations"]["sendTask"]["channel"] = {"$ref": "#/channels/nowhere"}
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(broken))
    code, diagnostics, _ = _parse(path)
    assert code == 1
    assert any("nowhere" in d["message"] for d in diagnostics if d["severity"] == 0)


def test_the_asyncapi_document_is_valid_against_the_asyncapi_3_json_schema() -> None:
    spec = json.loads((_asyncapi_tools() / "@asyncapi" / "specs" / "schemas" / "3.0.0.json").read_text())
    validator = jsonschema.Draft7Validator(spec)
    document = yaml.safe_load((DOCS / "asyncapi.yaml").read_text())
    assert [error.message for error in validator.iter_errors(document)] == []
    document["channels"]["tasks"]["bindings"]["amqp"]["is"] = "exchange-ish"
    assert not validator.is_valid(document)
