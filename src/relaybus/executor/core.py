"""``TaskExecutor``: runs tasks in the ``llm``, ``api``, ``script`` or a registered custom mode.

One executor per process is the intended use: it owns one shared ``httpx.AsyncClient``, one concurrency limit
and one rate limiter per provider, all shared by every task it runs.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self
from uuid import UUID

import httpx

from relaybus.exceptions import ExecutorError
from relaybus.log import FilteringBoundLogger, get_logger
from relaybus.messages import AgentTask, ExecutionResult, ExecutionStatus, Usage
from relaybus.secrets import mask_secrets
from relaybus.tools.spec import ToolSpec

from .api import ApiBackend
from .backend import ExecutionBackend, RunContext
from .config import ExecutorConfig, ProviderConfig
from .http import make_client
from .llm.backend import LlmBackend, Route
from .llm.base import ChatRequest, LLMProvider
from .llm.chat import ChatMessage, ResponseSchema, ToolChoice
from .llm.errors import CallFailure, unusable_answer
from .llm.factory import build_provider
from .llm.stream import DeltaCallback
from .protocol import ChatTurn
from .ratelimit import RateLimiter
from .script import Script, ScriptBackend
from .script_args import ScriptArgs

__all__ = ["TaskExecutor"]

_MODE_NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,99}$")


def _now() -> datetime:
    return datetime.now(UTC)


class TaskExecutor:
    """Runs :class:`AgentTask` s and reports each one as an :class:`ExecutionResult`; never raises for a task.

    ``TaskExecutor()`` reads its configuration from the environment (:meth:`ExecutorConfig.from_env`); pass an
    :class:`ExecutorConfig` for library use. ``provider`` / ``fallback`` replace the providers the config
    describes (their rate limits still come from ``config.provider`` / ``config.fallback``); ``client``
    replaces the shared HTTP client (the executor then does not close it); ``modes`` registers custom modes
    before the default mode is checked.

    What callers may rely on:

    - The mode is ``mode`` if given, else ``task.mode``, else ``config.default_mode`` (``llm``). An unknown
      mode in a task gives a REJECTED result naming the registered ones; an unknown default mode raises
      :class:`ExecutorError` at construction.
    - At most ``max_concurrency`` tasks run at once; the others wait for a slot. The timeout
      (``task.timeout_s`` or ``config.default_timeout_s``) counts from getting a slot, excludes waiting for a
      rate limiter, and ends the task with TIMEOUT.
    - :meth:`chat` runs one model turn of the agent loop on the same providers, within the same concurrency
      limit, and reports it as a :class:`~relaybus.executor.protocol.ChatTurn`.
    - ``cancel(task_id)`` ends a running task with CANCELLED. Cancelling the caller's asyncio task instead
      stops the work (HTTP request, child process group) and propagates ``CancelledError``.
    - An exception raised by a backend becomes a FAILURE result naming it; keys are masked in every message.
    - Built-in modes: ``llm`` (:class:`~relaybus.executor.llm.LlmBackend`: the provider, retries, rate limit,
      fallback; output is the completion text), ``api`` (:mod:`relaybus.executor.api`: only to
      ``api_allowed_hosts``) and ``script`` (:mod:`relaybus.executor.script`: only commands added with
      :meth:`register_script`). :meth:`register_mode` adds more.
    - Use ``async with TaskExecutor(...) as executor:`` (or ``await executor.close()``) to close the client,
      and use one executor within one event loop (its locks and connection pool belong to that loop).
    """

    def __init__(
        self,
        config: ExecutorConfig | None = None,
        *,
        provider: LLMProvider | None = None,
        fallback: LLMProvider | None = None,
        client: httpx.AsyncClient | None = None,
        modes: Mapping[str, ExecutionBackend] | None = None,
    ) -> None:
        self.config = config if config is not None else ExecutorConfig.from_env(os.environ)
        cfg = self.config
        self._owns_client = client is None
        self.client = client or make_client(
            transport=cfg.http_transport,
            max_connections=cfg.pool_size,
            connect_timeout_s=cfg.connect_timeout_s,
        )
        self._slots = asyncio.Semaphore(cfg.max_concurrency)
        # The caller's tasks inside ``execute``, by task id, and those ``cancel`` was asked to stop.
        self._running: dict[UUID, set[asyncio.Task[Any]]] = {}
        self._cancel_requested: set[tuple[asyncio.Task[Any], UUID]] = set()
        self._closed = False
        self._log = get_logger("relaybus.executor")
        self._chat_logs: dict[str, FilteringBoundLogger] = {}  # bound once per agent: chat is per turn
        self._rate_limited = any(
            c is not None and (c.requests_per_minute or c.tokens_per_minute)
            for c in (cfg.provider, cfg.fallback)
        )
        self._secrets = tuple(  # kept wrapped: vars(executor) and tracebacks with locals must not show them
            key for key in (cfg.provider.secret, cfg.fallback.secret if cfg.fallback else None) if key
        )
        self._backends: dict[str, ExecutionBackend] = {}
        self.llm = LlmBackend(
            self._route(provider, cfg.provider),
            self._route(fallback, cfg.fallback)
            if (fallback is not None or cfg.fallback is not None)
            else None,
            retry=cfg.retry,
            max_tokens=cfg.max_tokens,
            temperature=cfg.temperature,
            secrets=self._secrets,
            fallback_after_failures=cfg.fallback_after_failures,
            primary_cooldown_s=cfg.primary_cooldown_s,
        )
        self.api = ApiBackend(
            self.client, allowed_hosts=cfg.api_allowed_hosts, max_response_bytes=cfg.api_max_response_bytes
        )
        self.scripts = ScriptBackend(max_output_bytes=cfg.script_max_output_bytes)
        self.register_mode("llm", self.llm)
        self.register_mode("api", self.api)
        self.register_mode("script", self.scripts)
        for name, backend in (modes or {}).items():
            self.register_mode(name, backend, replace=True)
        if cfg.default_mode not in self._backends:
            raise ExecutorError(
                f"default mode {cfg.default_mode!r} is not registered: use one of {self.modes} or pass "
                f"TaskExecutor(modes={{{cfg.default_mode!r}: backend}})"
            )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> TaskExecutor:
        """An executor configured from ``env`` (default ``os.environ``), see ``ExecutorConfig.from_env``."""
        return cls(ExecutorConfig.from_env(os.environ if env is None else env))

    def _route(self, provider: LLMProvider | None, config: ProviderConfig | None) -> Route:
        config = config or ProviderConfig()
        limiter = RateLimiter(config.requests_per_minute, config.tokens_per_minute)
        return Route(provider or build_provider(config, self.client), limiter)

    @property
    def modes(self) -> tuple[str, ...]:
        return tuple(sorted(self._backends))

    def register_mode(self, name: str, backend: ExecutionBackend, *, replace: bool = False) -> None:
        """Run tasks whose mode is ``name`` with ``backend``; raises :class:`ExecutorError` on a bad name,
        an object that is not a backend, or (unless ``replace``) a name already registered."""
        if not isinstance(name, str) or not _MODE_NAME.match(name):
            raise ExecutorError(f"mode name {name!r} is invalid: use 1-100 letters, digits, '_', '-' or '.'")
        if not isinstance(backend, ExecutionBackend):
            raise ExecutorError(
                f"{backend!r} is not an execution backend: it needs an async method run(task, ctx) "
                "(see relaybus.executor.ExecutionBackend)"
            )
        if name in self._backends and not replace:
            raise ExecutorError(f"mode {name!r} is already registered; pass replace=True to replace it")
        self._backends[name] = backend

    def register_script(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        args: ScriptArgs | None = None,
    ) -> Script:
        """Let ``script``-mode tasks run ``argv`` as ``name`` (see :mod:`relaybus.executor.script`), with the
        task arguments ``args`` declares (:class:`~relaybus.executor.script_args.ScriptArgs`; by default any,
        after ``--``).

        Raises :class:`ExecutorError` for a bad name, a shell string instead of a list, or a missing program.
        """
        return self.scripts.register(name, argv, env=env, cwd=cwd, args=args)

    def __repr__(self) -> str:
        return (
            f"TaskExecutor(provider={self.llm.primary.provider.name!r}, modes={list(self.modes)}, "
            f"max_concurrency={self.config.max_concurrency})"
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the shared HTTP client (when the executor created it). Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._owns_client:
            await self.client.aclose()

    @property
    def in_flight(self) -> int:
        """Tasks currently inside :meth:`execute` (running or waiting for a slot)."""
        return sum(len(runners) for runners in self._running.values())

    def cancel(self, task_id: UUID) -> bool:
        """End the running task ``task_id`` with a CANCELLED result; False when no such task is running."""
        found = False
        for runner in self._running.get(task_id, ()):
            if not runner.done() and (runner, task_id) not in self._cancel_requested:
                self._cancel_requested.add((runner, task_id))
                runner.cancel()
                found = True
        return found

    async def execute(
        self,
        task: AgentTask,
        agent: str | None = None,
        mode: str | None = None,
        *,
        system_prompt: str | None = None,
        on_delta: DeltaCallback | None = None,
    ) -> ExecutionResult:
        """Run ``task`` and return how it ended (see the class docstring for the guarantees).

        ``on_delta`` streams the answer: in ``llm`` mode it gets the model's deltas as they arrive (see
        :meth:`LlmBackend.chat <relaybus.executor.llm.LlmBackend.chat>`); other modes get it as
        ``ctx.on_delta``. The result is the same with or without it.
        """
        if self._closed:
            raise ExecutorError("this TaskExecutor is closed; create a new one (or execute before close())")
        started = _now()
        mode_name = mode or task.mode or self.config.default_mode
        log = self._log.bind(task_id=str(task.id), agent=agent, mode=mode_name)
        backend = self._backends.get(mode_name)
        if backend is None:
            result = ExecutionResult.failed(
                task.id,
                ExecutionStatus.REJECTED,
                "UnknownMode",
                f"mode {mode_name!r} is not registered in this executor: use one of {', '.join(self.modes)}, "
                f"or register it with executor.register_mode({mode_name!r}, backend)",
                attempts=0,
            )
            return self._finish(result, task, agent, started, log)
        ctx = RunContext(agent=agent, system_prompt=system_prompt, log=log, on_delta=on_delta)
        # In the caller's task, no Task of its own: ``cancel`` cancels the caller's task while, and only
        # while, it is in here, and that one cancellation is taken back (``uncancel``) into a CANCELLED
        # result; any other cancellation propagates. A Task and two loop turns fewer per call.
        runner = asyncio.current_task()
        assert runner is not None
        key = (runner, task.id)
        self._running.setdefault(task.id, set()).add(runner)
        try:
            try:
                result = await self._run(backend, task, ctx)
            except asyncio.CancelledError:
                if key not in self._cancel_requested or runner.uncancel() > 0:
                    raise
                result = ExecutionResult.failed(
                    task.id, ExecutionStatus.CANCELLED, "Cancelled", "cancelled by TaskExecutor.cancel()"
                )
            else:
                if key in self._cancel_requested:  # the backend swallowed our cancellation: its result stands
                    runner.uncancel()
        finally:
            self._cancel_requested.discard(key)
            runners = self._running.get(task.id)
            if runners is not None:
                runners.discard(runner)
                if not runners:
                    del self._running[task.id]
        return self._finish(result, task, agent, started, log)

    async def chat(
        self,
        messages: Sequence[ChatMessage],
        *,
        tools: Sequence[ToolSpec] = (),
        tool_choice: ToolChoice = "auto",
        response_schema: ResponseSchema | None = None,
        agent: str | None = None,
        timeout_s: float | None = None,
        on_delta: DeltaCallback | None = None,
    ) -> ChatTurn:
        """One model turn through the ``llm`` mode's providers (rate limit, retries, fallback); never raises
        for a failed call.

        The request gets the executor's ``max_tokens`` and ``temperature``. The turn waits for one of the
        ``max_concurrency`` slots, like a task, and is bounded by ``timeout_s`` (default
        ``config.default_timeout_s``; time waiting for a configured rate limit excluded): past it, the turn's
        failure is ``Timeout``. An answer that cannot be used is the turn's failure, see
        :class:`~relaybus.executor.protocol.ChatTurn`. Raises :class:`~relaybus.ConfigError` for a request
        that is not valid (e.g. two tools with one name) and :class:`ExecutorError` once closed.
        ``on_delta`` streams the turn (see :meth:`LlmBackend.chat <relaybus.executor.llm.LlmBackend.chat>`).
        """
        if self._closed:
            raise ExecutorError("this TaskExecutor is closed; create a new one (or chat before close())")
        llm = self.llm
        request = ChatRequest(
            tuple(messages),
            tuple(tools),
            tool_choice,
            response_schema,
            max_tokens=llm.max_tokens,
            temperature=llm.temperature,
        )
        ctx = RunContext(agent=agent, log=self._chat_log(agent))
        budget = timeout_s or self.config.default_timeout_s
        async with self._slots:
            scope = asyncio.timeout(budget)
            if self._rate_limited:
                # Waiting for a configured rate limit is queueing, not the turn's work: keep it out of the
                # budget. Without limits the wait is at most a server's Retry-After, which counts.
                ctx._scope = scope
            try:
                async with scope:
                    outcome = await llm.chat(request, ctx, on_delta=on_delta)
            except TimeoutError:
                timeout = CallFailure(
                    "Timeout",
                    f"the model did not answer within {budget:g} s (the executor's default_timeout_s / "
                    "RELAYBUS_TASK_TIMEOUT_S)",
                    True,
                )
                return ChatTurn(request, None, timeout, 1, Usage(requests=1))
        completion = outcome.completion
        if completion is None:
            return ChatTurn(request, None, outcome.failure, outcome.attempts, outcome.usage)
        failure = unusable_answer(completion, request, outcome.provider or "")
        usage = completion.usage
        if usage.requests != outcome.attempts:  # a retry or a fallback: count every request made
            usage = outcome.usage
        return ChatTurn(request, completion, failure, outcome.attempts, usage, outcome.provider)

    def _chat_log(self, agent: str | None) -> FilteringBoundLogger:
        if agent is None:
            return self._log
        log = self._chat_logs.get(agent)
        if log is None:
            log = self._chat_logs[agent] = self._log.bind(agent=agent)
        return log

    async def _run(self, backend: ExecutionBackend, task: AgentTask, ctx: RunContext) -> ExecutionResult:
        async with self._slots:
            timeout_s = task.timeout_s or self.config.default_timeout_s
            scope = asyncio.timeout(timeout_s)
            ctx._scope = scope
            try:
                async with scope:
                    outcome = await backend.run(task, ctx)
            except TimeoutError as exc:
                if not scope.expired():  # raised by the backend itself, not our deadline
                    return self._exception_result(task, ctx, exc)
                return ExecutionResult.failed(
                    task.id,
                    ExecutionStatus.TIMEOUT,
                    "Timeout",
                    f"the task did not finish within {timeout_s:g} s (task.timeout_s, or the executor's "
                    "default_timeout_s / RELAYBUS_TASK_TIMEOUT_S)",
                    retryable=True,
                )
            except Exception as exc:
                return self._exception_result(task, ctx, exc)
        if isinstance(outcome, ExecutionResult):
            return outcome if outcome.task_id == task.id else outcome.model_copy(update={"task_id": task.id})
        return ExecutionResult.success(task.id, outcome)

    def _exception_result(self, task: AgentTask, ctx: RunContext, exc: Exception) -> ExecutionResult:
        ctx.log.error("backend_raised", error_type=type(exc).__name__, exc_info=exc)
        message = mask_secrets(f"{type(exc).__name__} raised while running the task: {exc}", *self._secrets)
        return ExecutionResult.failed(task.id, ExecutionStatus.FAILURE, type(exc).__name__, message)

    def _finish(
        self,
        result: ExecutionResult,
        task: AgentTask,
        agent: str | None,
        started: datetime,
        log: FilteringBoundLogger,
    ) -> ExecutionResult:
        result = result.model_copy(
            update={
                "agent": result.agent or agent,
                "started_at": result.started_at or started,
                "finished_at": _now(),
            }
        )
        if result.ok:
            log.debug("task_finished", status=result.status.value, attempts=result.attempts)
        else:
            assert result.error is not None
            log.info(
                "task_finished",
                status=result.status.value,
                error_type=result.error.type,
                retryable=result.error.retryable,
                attempts=result.attempts,
            )
        return result
