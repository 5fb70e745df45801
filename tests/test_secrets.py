"""Passwords and keys stay out of text meant for people."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import functools
import secrets
from collections.abc import Iterator, Mapping
from types import FunctionType, MethodType, ModuleType

import pytest
from pydantic import SecretStr

from relaybus import AgentTask, AgentWorker, MemoryBus, ProjectOrchestrator, TaskExecutor
from relaybus.agents import Agent
from relaybus.bus.amqp import AmqpBus
from relaybus.secrets import Secret, mask_secrets, mask_url
from relaybus.testing import FakeLLMServer


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("amqp://guest:hunter2@host:5672/vh", "amqp://guest:***@host:5672/vh"),
        ("amqps://u:p%40ss@[::1]:5671/", "amqps://u:***@[::1]:5671/"),
        ("amqp://host/", "amqp://host/"),
        ("memory://", "memory://"),
        ("amqp://u:p1@h1:5672/,amqps://v:p2@h2/vh", "amqp://u:***@h1:5672/,amqps://v:***@h2/vh"),
    ],
)
def test_mask_url(url: str, masked: str) -> None:
    assert mask_url(url) == masked


def test_mask_secrets_hides_urls_keys_and_named_values() -> None:
    text = "connect amqp://bob:s3cret@h/ with sk-abcdefghijklmnop and token tok-123456"
    out = mask_secrets(text, "tok-123456")
    assert "s3cret" not in out
    assert "sk-abcdefghijklmnop" not in out
    assert "tok-123456" not in out
    assert "bob" in out
    assert mask_secrets("token tok-123456", Secret("tok-123456")) == "token ***"  # a Secret as it is


def test_secret_never_shows_itself() -> None:
    secret = Secret("sk-live-123456789")
    assert "123456789" not in repr(secret)
    assert "123456789" not in str(secret)
    assert "123456789" not in f"{secret}"
    assert secret.reveal() == "sk-live-123456789"
    assert secret == Secret("sk-live-123456789")
    assert not Secret("")


# -- no object keeps a secret unwrapped ---------------------------------------------------------------------

_LEAVES = (
    type(None),
    bool,
    int,
    float,
    complex,
    type,
    ModuleType,
    asyncio.AbstractEventLoop,
    Secret,
    SecretStr,
)


def _shown(obj: object) -> str:
    if isinstance(obj, str):
        return obj
    if isinstance(obj, bytes | bytearray):
        return obj.decode("latin-1")
    texts = []
    for show in (repr, str):
        try:
            texts.append(show(obj))
        except Exception as exc:  # a half-built object may fail to show itself; what it says still counts
            texts.append(repr(exc))
    return "\n".join(texts)


def _children(obj: object) -> Iterator[tuple[str, object]]:
    """(path step, value) for what a debugger shows inside ``obj``."""
    if isinstance(obj, Mapping):
        for key, value in list(obj.items()):
            yield f"[{key!r:.40}]", key
            yield f"[{key!r:.40}]", value
        return
    if isinstance(obj, list | tuple | set | frozenset | collections.deque):
        for index, item in enumerate(list(obj)):
            yield f"[{index}]", item
        return
    if isinstance(obj, FunctionType):
        for cell, name in zip(obj.__closure__ or (), obj.__code__.co_freevars, strict=True):
            with contextlib.suppress(ValueError):  # an empty cell
                yield f".<closure {name}>", cell.cell_contents
        yield ".__defaults__", obj.__defaults__
        yield ".__kwdefaults__", obj.__kwdefaults__
    if isinstance(obj, MethodType):
        yield ".__self__", obj.__self__
        yield ".__func__", obj.__func__
    if isinstance(obj, functools.partial):
        yield ".func", obj.func
        yield ".args", obj.args
        yield ".keywords", obj.keywords
    if dataclasses.is_dataclass(obj):
        for f in dataclasses.fields(obj):
            yield f".{f.name}", getattr(obj, f.name, None)
    for name, value in list(getattr(obj, "__dict__", {}).items()):
        yield f".{name}", value
    for klass in type(obj).__mro__:
        for name in getattr(klass, "__slots__", ()):
            if name not in ("__dict__", "__weakref__") and hasattr(obj, name):
                yield f".{name}", getattr(obj, name)


def raw_secret_paths(
    root: object, secrets: Mapping[str, str], *, name: str = "root", max_depth: int = 10
) -> list[str]:
    """``label at path`` for each attribute under ``root`` whose str or repr shows one of ``secrets``' values.

    Follows ``vars()``, ``__slots__``, dataclass fields, container items, closure cells and bound methods,
    breadth first (so each object is reached by its shortest path), up to ``max_depth`` levels. Stops at
    :class:`Secret` / ``SecretStr`` (wrapped: they never show their value), and at classes, modules and the
    event loop (shared by the whole process, not held by the object).
    """
    found: list[str] = []
    seen: set[int] = set()
    todo: collections.deque[tuple[str, object, int]] = collections.deque([(name, root, 0)])
    while todo:
        path, obj, depth = todo.popleft()
        if id(obj) in seen or isinstance(obj, _LEAVES):
            continue
        seen.add(id(obj))
        shown = _shown(obj)
        found += [f"{label} at {path}" for label, value in secrets.items() if value in shown]
        if depth < max_depth and not isinstance(obj, str | bytes | bytearray):
            todo.extend((path + step, child, depth + 1) for step, child in _children(obj))
    return found


def test_the_walk_finds_a_secret_kept_in_plain_text_anywhere_it_looks() -> None:
    key = "sk-plain-0123456789"

    @dataclasses.dataclass
    class Holder:
        items: list[object]

    class Slotted:
        __slots__ = ("value",)

        def __init__(self, value: object) -> None:
            self.value = value

    def closure() -> str:
        return key

    assert raw_secret_paths(Holder([{"k": Slotted(Secret(key))}]), {"key": key}) == []
    for hiding_place in (
        Holder([{"k": Slotted(key)}]),
        Holder([("x", functools.partial(print, key))]),
        Slotted(closure),
        Holder([Slotted(key).__init__]),
        Slotted(Slotted(key.encode())),
    ):
        assert raw_secret_paths(hiding_place, {"key": key}), hiding_place


class _Writer(Agent):
    name = "writer"
    topics = ("write.#",)


async def test_no_executor_provider_bus_worker_or_orchestrator_keeps_a_raw_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What a process builds holds keys and passwords only inside Secret: a debugger, a traceback with locals
    or ``print(vars(x))`` shows everything else.

    The AmqpBus is not connected: once it is, aio-pika's connection object keeps the URL with its password
    (``RobustConnection.url``), which relaybus cannot wrap.
    """
    hidden = {
        "OPENAI_API_KEY": f"sk-test-{secrets.token_hex(16)}",
        "ANTHROPIC_API_KEY": f"sk-ant-test-{secrets.token_hex(16)}",
        "AMQP password": f"pw-{secrets.token_hex(16)}",
    }
    async with FakeLLMServer(api_key=hidden["OPENAI_API_KEY"]) as server:
        env = {
            "RELAYBUS_LLM_PROVIDER": "openai",
            "OPENAI_BASE_URL": server.openai_base_url,
            "OPENAI_API_KEY": hidden["OPENAI_API_KEY"],
            "RELAYBUS_LLM_FALLBACK_PROVIDER": "anthropic",
            "ANTHROPIC_BASE_URL": server.base_url,
            # a key the server refuses: the fallback is called and answers 401
            "ANTHROPIC_API_KEY": hidden["ANTHROPIC_API_KEY"],
        }
        for name, value in env.items():
            monkeypatch.setenv(name, value)  # the worker's default executor reads the environment
        amqp = AmqpBus(f"amqp://relaybus:{hidden['AMQP password']}@127.0.0.1:5672/")
        async with (
            TaskExecutor.from_env(env) as executor,
            MemoryBus() as bus,
            AgentWorker(bus, [_Writer()]) as worker,
            ProjectOrchestrator(bus) as orchestrator,
        ):
            server.inject("server_error", times=1, status=400)  # not retried: the task goes to the fallback
            direct = [await executor.execute(AgentTask(topic="t.x", prompt=f"p{i}")) for i in range(2)]
            remote = await orchestrator.execute_tasks(
                [AgentTask(topic="write.x", prompt=f"q{i}") for i in range(3)]
            )
            assert [r.ok for r in direct + remote] == [False, True, True, True, True], direct + remote
            assert "401" in str(direct[0].error)  # both providers were called
            roots = {"executor": executor, "amqp_bus": amqp, "memory_bus": bus, "worker": worker}
            leaks = [
                leak
                for name, root in {**roots, "orchestrator": orchestrator}.items()
                for leak in raw_secret_paths(root, hidden, name=name)
            ]
    assert not leaks, "\n".join(leaks)
