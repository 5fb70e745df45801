"""Helpers the sub-commands share: the ``--amqp-url`` flag, connecting, loading ``module:Class`` specs, and
turning expected errors into one clear line on stderr instead of a traceback.

Exit codes: 0 success, 1 the work failed (a failed task, an unreachable broker, no route), 2 bad usage or
configuration (a wrong flag, URL or ``module:Class``). :class:`BadUsage` (flags that do not go together) is
printed after the sub-command's usage, like argparse's own errors; any other :class:`CliError` is one line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import importlib
import inspect
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any

from relaybus.agents.agent import Agent, validate_agent
from relaybus.bus.base import Bus
from relaybus.exceptions import BrokerRefused, ConfigError, ConnectionFailed, RelaybusError
from relaybus.log import get_logger
from relaybus.secrets import mask_secrets

__all__ = [
    "AMQP_URL_ENV",
    "DEFAULT_AMQP_URL",
    "BadUsage",
    "CliError",
    "add_amqp_url",
    "freeze_startup_heap",
    "load_agent",
    "load_object",
    "non_negative_float",
    "open_bus",
    "positive_float",
    "positive_int",
    "run_async",
]

AMQP_URL_ENV = "RELAYBUS_AMQP_URL"
DEFAULT_AMQP_URL = "amqp://guest:guest@localhost:5672/"


class CliError(Exception):
    """An expected failure: ``message`` is printed as one line, the process exits with ``code``."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class BadUsage(CliError):
    """The command line itself is wrong (a flag's value, flags that exclude each other): exit 2, after the
    sub-command's usage."""

    def __init__(self, message: str) -> None:
        super().__init__(message, 2)


def add_amqp_url(parser: argparse.ArgumentParser, env: Mapping[str, str] | None = None) -> None:
    """Add ``--amqp-url``, defaulting to ``$RELAYBUS_AMQP_URL``, then ``amqp://guest:guest@localhost:5672/``."""
    source = os.environ if env is None else env
    parser.add_argument(
        "--amqp-url",
        default=source.get(AMQP_URL_ENV) or DEFAULT_AMQP_URL,
        metavar="URL",
        help=f"RabbitMQ URL (default ${AMQP_URL_ENV}, else amqp://guest:***@localhost:5672/)",
    )


async def open_bus(url: str, *, wait: bool = False) -> Bus:
    """Connect to ``url``; a bad URL or an unreachable broker becomes a :class:`CliError` (one line).

    With ``wait``, a broker that does not answer is tried again with backoff (1 s doubling to 30 s), a
    ``waiting_for_broker`` warning per attempt; one that answers and refuses (credentials, vhost) is not."""
    from relaybus.bus.connect import connect
    from relaybus.bus.signing import SignedBus, SigningKey
    from relaybus.secrets import mask_url

    scheme = url.strip().partition("://")[0].lower() if "://" in url else ""
    if scheme not in ("amqp", "amqps", "memory"):
        raise CliError(
            f"--amqp-url {mask_url(url)!r} is not a RabbitMQ URL: give amqp://user:password@host:5672/vhost "
            f"(or amqps://... for TLS), on the command line or in ${AMQP_URL_ENV}"
        )
    try:
        key = SigningKey.from_env(os.environ)  # the one place that reads $RELAYBUS_SIGNING_KEY
    except ConfigError as exc:
        raise CliError(str(exc), 2) from None
    delay, attempt = _FIRST_RETRY_S, 0
    while True:
        try:
            with _quiet_driver_logs():
                bus = await connect(url)
            # With a key, workers require signed tasks and callers signed results (relaybus.bus.signing).
            return bus if key is None else SignedBus(bus, key)
        except ConfigError as exc:
            raise CliError(str(exc), 2) from None
        except ConnectionFailed as exc:
            if not wait or isinstance(exc, BrokerRefused):
                raise CliError(str(exc), 1) from None
            attempt += 1
            get_logger("relaybus.cli").warning(
                "waiting_for_broker",
                url=mask_url(url),
                attempt=attempt,
                retry_in_s=delay,
                error=str(exc),
                hint="start RabbitMQ, or pass --exit-if-down to exit instead of waiting",
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, _MAX_RETRY_S)
        except RelaybusError as exc:
            raise CliError(str(exc), 1) from None


_FIRST_RETRY_S = 1.0
_MAX_RETRY_S = 30.0


@contextlib.contextmanager
def _quiet_driver_logs() -> Iterator[None]:
    # aiormq logs a failed first connection itself; the CliError below already says it in one clear line.
    loggers = [logging.getLogger(name) for name in ("aiormq", "aio_pika")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _importable_cwd() -> None:
    # Like `python -m`: modules in the current directory can be named on the command line.
    cwd = os.getcwd()
    if "" not in sys.path and cwd not in sys.path:
        sys.path.insert(0, cwd)


def _module_not_found(module: str, exc: ModuleNotFoundError) -> bool:
    missing = exc.name or ""
    return missing == module or module.startswith(missing + ".")


def load_object(spec: str, *, example: str = "examples.agents:Reviewer") -> Any:
    """Import ``module:attribute`` and return the attribute; CliError (one line) when that fails."""
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise CliError(f"{spec!r} is not of the form module:Class (for example {example})")
    _importable_cwd()
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if _module_not_found(module_name, exc):
            raise CliError(
                f"cannot import {module_name!r} from {spec!r}: no such module; run relaybus from the "
                "directory that contains it, or add that directory to PYTHONPATH"
            ) from None
        raise CliError(f"importing {module_name!r} failed: {_describe(exc)}") from None
    except Exception as exc:  # the user's module raised while importing: say what and where, in one line
        raise CliError(f"importing {module_name!r} failed: {_describe(exc)}") from None
    target: Any = module
    for part in attribute.split("."):
        if not hasattr(target, part):
            hint = _agent_names(module)
            raise CliError(
                f"module {module_name!r} has no attribute {attribute!r}"
                + (f"; the agents it defines are: {hint}" if hint else "")
            )
        target = getattr(target, part)
    return target


def load_agent(spec: str) -> Agent:
    """The agent a ``module:Class`` spec names: an Agent subclass (made with no arguments) or an instance."""
    target = load_object(spec)
    if inspect.isclass(target) and issubclass(target, Agent):
        try:
            agent = target()
        except Exception as exc:
            raise CliError(
                f"could not create {spec}(): {_describe(exc)}; an agent class named on the command line "
                "must be constructible without arguments"
            ) from None
    elif isinstance(target, Agent):
        agent = target
    else:
        kind = "class" if inspect.isclass(target) else type(target).__name__
        raise CliError(f"{spec} is a {kind} that is not a relaybus Agent: subclass relaybus.Agent")
    try:
        return validate_agent(agent)
    except ConfigError as exc:
        raise CliError(f"{spec}: {exc}") from None


def _agent_names(module: Any) -> str:
    names = [
        name
        for name, value in vars(module).items()
        if inspect.isclass(value) and issubclass(value, Agent) and value is not Agent
    ]
    return ", ".join(sorted(names))


def _describe(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {mask_secrets(str(exc))}"
    if isinstance(exc, SyntaxError) and exc.filename:
        text += f" ({exc.filename}:{exc.lineno})"
    return text.splitlines()[0] if text else type(exc).__name__


EVENT_LOOP_ENV = "RELAYBUS_EVENT_LOOP"


def event_loop_factory(environ: Mapping[str, str]) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The event loop the CLI runs on: uvloop when installed (``relaybus[speed]``), else asyncio's own.

    ``RELAYBUS_EVENT_LOOP=asyncio`` keeps asyncio's loop even with uvloop installed; ``uvloop`` insists on
    it (a clear error when it is missing). ``None`` means asyncio's default loop.
    """
    choice = environ.get(EVENT_LOOP_ENV, "auto").strip().lower() or "auto"
    if choice not in ("auto", "asyncio", "uvloop"):
        raise CliError(f"{EVENT_LOOP_ENV}={choice!r} is not an event loop: use auto, asyncio or uvloop")
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise CliError(
                f"{EVENT_LOOP_ENV}=uvloop but uvloop is not installed: pip install 'relaybus[speed]'"
            ) from None
        return None
    return uvloop.new_event_loop


# Young objects a collection waits for (CPython's default is 700). Results, deliveries and their dicts die by
# reference count within a task; the default would run the collector every dozen tasks or so.
_GC_YOUNG_THRESHOLD = 10_000


def freeze_startup_heap() -> int:
    """For a long-running process once it has started (a worker, the gateway): move everything alive now
    (modules, agents, schemas, the connection) out of the cyclic collector's sight (``gc.freeze``) and let
    it wait for 10,000 new objects instead of 700; returns how many objects were frozen.

    Its full passes otherwise walk the whole startup heap each time, 50-120 ms apiece: about 10% of a busy
    worker's CPU (bench/PROFILE.md). Collection itself stays on, for cycles that agent code makes.
    """
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(_GC_YOUNG_THRESHOLD, middle, old)
    return gc.get_freeze_count()


def run_async(main: Callable[[], Awaitable[int]]) -> int:
    """Run ``main`` in this process's one event loop; CliError and RelaybusError become one line on stderr."""

    async def guarded() -> int:
        return await main()

    try:
        with asyncio.Runner(loop_factory=event_loop_factory(os.environ)) as runner:
            return runner.run(guarded())
    except BadUsage:
        raise  # the command line reports it, with the sub-command's usage
    except CliError as exc:
        print(f"relaybus: error: {exc.message}", file=sys.stderr)
        return exc.code
    except ConfigError as exc:
        print(f"relaybus: error: {mask_secrets(str(exc))}", file=sys.stderr)
        return 2
    except RelaybusError as exc:
        print(f"relaybus: error: {mask_secrets(str(exc))}", file=sys.stderr)
        return 1


def positive_int(text: str) -> int:
    """argparse type: an integer of at least 1."""
    value = _number(text, int)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return int(value)


def positive_float(text: str) -> float:
    """argparse type: a number of seconds above 0."""
    value = _number(text, float)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {text}")
    return value


def non_negative_float(text: str) -> float:
    """argparse type: a number of seconds, 0 or more."""
    value = _number(text, float)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def _number(text: str, kind: type[int] | type[float]) -> float:
    try:
        return kind(text)
    except ValueError:
        noun = "a whole number" if kind is int else "a number"
        raise argparse.ArgumentTypeError(f"{text!r} is not {noun}") from None
