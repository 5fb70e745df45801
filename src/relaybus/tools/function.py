"""``@tool``: a Python function (sync or async) as a tool the model may call."""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, Generic, ParamSpec, TypeVar, overload

from relaybus.exceptions import ConfigError
from relaybus.log import get_logger

from .outcome import (
    DEFAULT_MAX_OUTPUT_BYTES,
    DEFAULT_TIMEOUT_S,
    Arguments,
    ToolOutcome,
    check_max_output_bytes,
    check_timeout,
    parse_arguments,
)
from .schema import ArgumentsModel, describe_function
from .spec import DescribedBySpec, ToolSpec

__all__ = ["Tool", "tool"]

P = ParamSpec("P")
R = TypeVar("R")

_log = get_logger("relaybus.tools")


class Tool(DescribedBySpec, Generic[P, R]):
    """A Python function the model may call; made by :func:`tool`.

    ``spec`` tells the model about it: ``name`` (the function's, unless given), ``description`` (the first
    paragraph of its docstring, unless given) and ``parameters``, the JSON schema of its arguments built from
    its signature by pydantic (defaults, ``Optional``, ``Literal``, nested models, lists, ``Annotated[...,
    Field(description=...)]``; arguments documented in an ``Args:`` section get their description from it).
    Unknown arguments are refused (``additionalProperties: false``).

    :meth:`call` runs one call the model asked for and never raises for a fault of the call: arguments that
    are not JSON or do not fit the schema, an exception the function raises, a run longer than ``timeout_s``
    or a return value that is not JSON-serialisable all become an error :class:`ToolOutcome` the model can
    read and act on. Only cancellation of the calling task goes through.

    A synchronous function runs in a worker thread (``asyncio.to_thread``): it is the user's code, and may
    block (a ``requests`` call, a database driver, heavy CPU); run inline it would freeze the worker's event
    loop, and with it the heartbeats, deadlines and every other task of the process. A thread cannot be
    stopped, so a sync function that outlives ``timeout_s`` gives its timeout outcome at once but finishes in
    its thread; write a tool that may hang as ``async def``, which is cancelled at its timeout.

    Calling the ``Tool`` itself (``add(1, 2)``) calls the function, as if it were not decorated.
    """

    def __init__(
        self,
        func: Callable[P, R],
        *,
        name: str | None = None,
        description: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
    ) -> None:
        if not callable(func):
            raise ConfigError(f"@tool needs a function, got {func!r}")
        tool_name = name if name is not None else getattr(func, "__name__", "")
        owner = f"tool {tool_name!r}"
        summary, documented = describe_function(func)
        self._arguments = ArgumentsModel(func, tool_name or "tool", documented)
        self.spec = ToolSpec(
            name=tool_name,
            description=description if description is not None else summary,
            parameters=self._arguments.parameters,
        )
        self.timeout_s = check_timeout(owner, timeout_s)
        self.max_output_bytes = check_max_output_bytes(owner, max_output_bytes)
        self.func = func
        self._is_async = inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(
            getattr(func, "__call__", None)  # noqa: B004 - an object whose __call__ is async
        )
        functools.update_wrapper(self, func)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.func(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<Tool {self.name!r} timeout_s={self.timeout_s:g}>"

    async def call(self, arguments: Arguments) -> ToolOutcome:
        """Run the function with the model's ``arguments`` (JSON text or a mapping); see the class doc."""
        parsed = parse_arguments(arguments)
        if isinstance(parsed, str):
            return self._error(f"invalid arguments for {self.name}: {parsed}")
        bound = self._arguments.validate(parsed)
        if isinstance(bound, str):
            return self._error(f"invalid arguments for {self.name}: {bound}")
        args, kwargs = bound
        try:
            async with asyncio.timeout(self.timeout_s) as deadline:
                value = await self._run(args, kwargs)
        except TimeoutError as exc:
            if not deadline.expired():
                return self._raised(exc)  # the function's own TimeoutError, not the deadline
            _log.warning("tool_timeout", tool=self.name, timeout_s=self.timeout_s)
            return self._error(f"{self.name} did not finish within its timeout of {self.timeout_s:g} s")
        except Exception as exc:
            return self._raised(exc)
        return ToolOutcome.from_value(value, max_bytes=self.max_output_bytes)

    async def _run(self, args: list[Any], kwargs: dict[str, Any]) -> Any:
        if self._is_async:
            awaitable: Awaitable[Any] = self.func(*args, **kwargs)  # type: ignore[assignment]
            return await awaitable
        result = await asyncio.to_thread(self.func, *args, **kwargs)
        if inspect.isawaitable(result):  # a sync function that returns a coroutine (e.g. a partial)
            return await result
        return result

    def _raised(self, exc: Exception) -> ToolOutcome:
        _log.warning("tool_raised", tool=self.name, error=repr(exc))
        return self._error(f"{self.name} raised {type(exc).__name__}: {exc}")

    def _error(self, message: str) -> ToolOutcome:
        return ToolOutcome.error(message, max_bytes=self.max_output_bytes)


@overload
def tool(func: Callable[P, R], /) -> Tool[P, R]: ...


@overload
def tool(
    *,
    name: str | None = None,
    description: str | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
) -> Callable[[Callable[P, R]], Tool[P, R]]: ...


def tool(
    func: Callable[P, R] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
) -> Tool[P, R] | Callable[[Callable[P, R]], Tool[P, R]]:
    """Make ``func`` a :class:`Tool`: ``@tool`` or ``@tool(name=..., description=..., timeout_s=...)``.

    ``timeout_s`` (default 60) bounds each call; ``max_output_bytes`` (default 16 KiB) caps the text sent back
    to the model. Raises :class:`~relaybus.ConfigError` at decoration time for a parameter without a type
    annotation, for ``*args`` / ``**kwargs``, a type without a JSON schema or a name models do not accept.
    """

    def decorate(function: Callable[P, R]) -> Tool[P, R]:
        return Tool(
            function,
            name=name,
            description=description,
            timeout_s=timeout_s,
            max_output_bytes=max_output_bytes,
        )

    return decorate if func is None else decorate(func)
