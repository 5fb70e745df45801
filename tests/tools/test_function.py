"""``@tool``: a function's signature becomes the JSON schema the model sees; each call gives an outcome."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import dataclass
from datetime import date
from typing import Annotated, Literal

import pytest
from pydantic import BaseModel, Field

from relaybus import ConfigError, Tool, tool
from relaybus.tools import ToolOutcome, ToolSpec


class Address(BaseModel):
    street: str
    city: str = "Paris"


class Point(BaseModel):
    x: int
    y: int


@tool
async def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@tool(name="find_people", description="Find people by city.", timeout_s=5)
def search(city: str, limit: int = 10, kind: Literal["adult", "child"] | None = None) -> list[str]:
    return [f"{city}:{limit}:{kind}"]


# --- the schema -------------------------------------------------------------------------------------------


def test_name_description_and_required_arguments_come_from_the_function() -> None:
    assert add.spec == ToolSpec(
        name="add",
        description="Add two integers.",
        parameters={
            "type": "object",
            "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
            "required": ["a", "b"],
            "additionalProperties": False,
        },
    )


def test_decorator_arguments_override_name_and_description_and_set_the_timeout() -> None:
    assert (search.name, search.description, search.timeout_s) == ("find_people", "Find people by city.", 5.0)
    props = search.spec.parameters["properties"]
    assert props["limit"] == {"type": "integer", "default": 10}
    assert props["kind"] == {
        "anyOf": [{"enum": ["adult", "child"], "type": "string"}, {"type": "null"}],
        "default": None,
    }
    assert search.spec.parameters["required"] == ["city"]


def test_nested_models_and_lists_are_described_under_defs() -> None:
    @tool
    def route(points: list[Point], home: Address, tags: list[str] | None = None) -> int:
        """Plan a route."""
        return len(points)

    schema = route.spec.parameters
    assert schema["properties"]["points"] == {"type": "array", "items": {"$ref": "#/$defs/Point"}}
    assert schema["properties"]["home"] == {"$ref": "#/$defs/Address"}
    assert schema["$defs"]["Address"]["required"] == ["street"]
    assert schema["$defs"]["Address"]["properties"]["city"] == {"type": "string", "default": "Paris"}
    assert schema["properties"]["tags"]["anyOf"] == [
        {"type": "array", "items": {"type": "string"}},
        {"type": "null"},
    ]
    assert "title" not in schema
    assert "title" not in schema["properties"]["tags"]


def test_the_docstring_gives_the_summary_and_documents_the_arguments() -> None:
    @tool
    def weather(
        city: str, days: Annotated[int, Field(ge=1, le=7, description="Forecast length.")] = 1
    ) -> str:
        """Tell the weather
        of a city.

        A longer explanation that the model is not shown.

        Args:
            city: The city's name,
                in English.
            days: Ignored: the annotation's description wins.

        Returns:
            A sentence.
        """
        return city

    assert weather.description == "Tell the weather of a city."
    props = weather.spec.parameters["properties"]
    assert props["city"] == {"type": "string", "description": "The city's name, in English."}
    assert props["days"] == {
        "type": "integer",
        "minimum": 1,
        "maximum": 7,
        "default": 1,
        "description": "Forecast length.",
    }


def test_sphinx_style_parameters_are_read_too() -> None:
    @tool
    def greet(name: str) -> str:
        """Greet someone.

        :param name: Who to greet.
        """
        return f"hello {name}"

    assert greet.spec.parameters["properties"]["name"]["description"] == "Who to greet."


def test_parameters_named_like_pydantic_attributes_are_fine() -> None:
    @tool
    def store(json: str, schema: int = 0, model_config: bool = False) -> str:
        """Store a document."""
        return f"{json}/{schema}/{model_config}"

    assert list(store.spec.parameters["properties"]) == ["json", "schema", "model_config"]


@pytest.mark.parametrize(
    ("define", "message"),
    [
        (lambda: tool(lambda x: x), "'x' has no type annotation"),
        (lambda: tool(_untyped), "'b' has no type annotation"),
        (lambda: tool(_var_args), "*args"),
        (lambda: tool(_var_kwargs), "**options"),
        (lambda: tool(_weird_type), "has no JSON schema"),
        (lambda: tool(name="has space")(_var_free), "1-64 letters"),
        (lambda: tool(timeout_s=0)(_var_free), "timeout_s"),
        (lambda: tool(max_output_bytes=10)(_var_free), "max_output_bytes"),
    ],
)
def test_what_cannot_be_described_to_a_model_is_refused_when_decorated(define: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("*", r"\*")):
        define()  # type: ignore[operator]


def _untyped(a: int, b):  # type: ignore[no-untyped-def]
    return a


def _var_args(*args: int) -> int:
    return 0


def _var_kwargs(a: int, **options: int) -> int:
    return 0


def _weird_type(lock: threading.Lock) -> int:  # type: ignore[valid-type]
    return 0


def _var_free() -> int:
    return 0


# --- calls ------------------------------------------------------------------------------------------------


async def test_a_call_takes_the_models_json_text_or_a_mapping() -> None:
    assert await add.call('{"a": 2, "b": 3}') == ToolOutcome("5")
    assert await add.call({"a": 2, "b": 3}) == ToolOutcome("5")
    assert await add.call(b'{"a": "2", "b": 3}') == ToolOutcome("5")  # pydantic's lax mode, as in the schema


async def test_the_tool_is_still_the_function() -> None:
    assert await add(1, 2) == 3
    assert search("Oslo") == ["Oslo:10:None"]
    assert isinstance(add, Tool)


async def test_nested_models_arrive_as_instances() -> None:
    seen: list[object] = []

    @tool
    def locate(home: Address, points: list[Point]) -> dict[str, object]:
        """Locate."""
        seen.extend([home, *points])
        return {"city": home.city, "n": len(points)}

    outcome = await locate.call({"home": {"street": "rue X"}, "points": [{"x": 1, "y": 2}]})
    assert outcome == ToolOutcome('{"city":"Paris","n":1}')
    assert seen == [Address(street="rue X"), Point(x=1, y=2)]


@pytest.mark.parametrize(
    ("arguments", "reason"),
    [
        ("{not json", "the arguments are not valid JSON"),
        ("[1, 2]", "must be a JSON object, not list"),
        ('{"a": 1}', "b: Field required"),
        (
            '{"a": "one", "b": 2}',
            "a: Input should be a valid integer, unable to parse string as an integer (got 'one')",
        ),
        ('{"a": 1, "b": 2, "c": 3}', "c: Extra inputs are not permitted"),
    ],
)
async def test_arguments_that_do_not_fit_are_an_error_outcome_with_pydantics_reason(
    arguments: str, reason: str
) -> None:
    outcome = await add.call(arguments)
    assert outcome.is_error
    assert outcome.content.startswith("invalid arguments for add: ")
    assert reason in outcome.content


async def test_an_exception_of_the_function_is_an_error_outcome() -> None:
    @tool
    async def fail(reason: str) -> None:
        """Fail."""
        raise LookupError(reason)

    assert await fail.call({"reason": "no such user"}) == ToolOutcome(
        "fail raised LookupError: no such user", is_error=True
    )


async def test_an_async_function_is_cancelled_at_its_timeout() -> None:
    finished = []

    @tool(timeout_s=0.05)
    async def hang() -> None:
        """Hang."""
        await asyncio.sleep(30)
        finished.append(True)

    outcome = await hang.call(None)
    assert outcome == ToolOutcome("hang did not finish within its timeout of 0.05 s", is_error=True)
    assert finished == []


async def test_a_timeout_error_the_function_raises_itself_is_not_mistaken_for_the_deadline() -> None:
    @tool
    async def upstream() -> None:
        """Call upstream."""
        raise TimeoutError("upstream took too long")

    outcome = await upstream.call({})
    assert outcome.content == "upstream raised TimeoutError: upstream took too long"


async def test_a_blocking_sync_function_runs_in_a_thread_and_leaves_the_event_loop_free() -> None:
    threads: list[str] = []

    @tool
    def slow(seconds: float) -> str:
        """Block."""
        threads.append(threading.current_thread().name)
        time.sleep(seconds)
        return "done"

    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(tick())
    outcome = await slow.call({"seconds": 0.3})
    ticker.cancel()
    assert outcome == ToolOutcome("done")
    assert threads
    assert threads[0] != threading.current_thread().name
    assert ticks >= 5, "the event loop was blocked while the sync tool ran"


async def test_a_sync_function_past_its_timeout_gives_its_outcome_without_waiting_for_the_thread() -> None:
    release = threading.Event()

    @tool(timeout_s=0.05)
    def stuck() -> str:
        """Block until released."""
        release.wait(10)
        return "late"

    try:
        outcome = await stuck.call({})
    finally:
        release.set()
    assert outcome.is_error
    assert "within its timeout of 0.05 s" in outcome.content


async def test_a_cancelled_call_is_cancelled_not_turned_into_an_outcome() -> None:
    @tool
    async def wait() -> None:
        """Wait."""
        await asyncio.sleep(30)

    call = asyncio.create_task(wait.call({}))
    await asyncio.sleep(0.01)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call


# --- the output -------------------------------------------------------------------------------------------


@dataclass
class Row:
    id: int
    day: date


async def test_outputs_are_json_except_strings_which_go_as_they_are() -> None:
    @tool
    def echo(kind: str) -> object:
        """Echo a value of the kind asked for."""
        return {
            "str": "line 1\nline 2",
            "model": Point(x=1, y=2),
            "dataclass": Row(1, date(2024, 5, 1)),
            "none": None,
            "list": [Point(x=0, y=0), 1.5, True],
        }[kind]

    assert (await echo.call({"kind": "str"})).content == "line 1\nline 2"
    assert (await echo.call({"kind": "model"})).content == '{"x":1,"y":2}'
    assert (await echo.call({"kind": "dataclass"})).content == '{"id":1,"day":"2024-05-01"}'
    assert (await echo.call({"kind": "none"})).content == "null"
    assert json.loads((await echo.call({"kind": "list"})).content) == [{"x": 0, "y": 0}, 1.5, True]


async def test_an_output_that_is_not_json_serialisable_is_an_error_outcome() -> None:
    @tool
    def leak() -> object:
        """Return something odd."""
        return threading.Lock()

    outcome = await leak.call({})
    assert outcome.is_error
    assert outcome.content.startswith("the tool returned a lock, which cannot be sent as JSON")


async def test_a_long_output_is_cut_to_the_cap_which_the_text_states() -> None:
    @tool(max_output_bytes=1000)
    def dump(n: int) -> str:
        """Dump n characters."""
        return "é" * n  # two bytes each: the cut must not split one

    small = await dump.call({"n": 500})
    assert (small.content, small.truncated) == ("é" * 500, False)
    big = await dump.call({"n": 5000})
    assert big.truncated
    assert not big.is_error
    assert len(big.content.encode()) <= 1000
    assert big.content.endswith(
        "[truncated: the output was 10000 bytes; tool results are capped at 1000 bytes]"
    )
    assert big.content.startswith("é" * 100)
