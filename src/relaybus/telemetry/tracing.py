"""OpenTelemetry spans after the semantic conventions, for the hooks of :mod:`relaybus.telemetry.hooks`.

- ``execute_task <agent or topic>`` around each task the orchestrator sends outside any trace, from its
  publish to its result (:func:`start_trace`: the orchestrator then knows the trace id its message carries);
- ``publish <exchange>`` (PRODUCER) around every publish, whose context goes out in the message's
  ``traceparent`` (the default exchange is ``amq.default``, as the conventions name it);
- ``process <queue>`` (CONSUMER) around every handled delivery, a child of the context the message
  carries and linked to it, with the settle outcome (``relaybus.settle``: acked, nacked, dead-lettered);
- ``invoke_agent <agent>`` around an agent's ``handle``, with the tokens the task spent;
- ``chat <model>`` (CLIENT) around each request to a model, so one per retry attempt, with provider,
  request and response model, tokens and finish reasons;
- ``execute_tool <tool>`` around each tool call of the agent loop.

relaybus never configures the SDK (the CLI does, see :mod:`relaybus.telemetry.otel_setup`): until an
application sets a tracer provider, the tracer is OpenTelemetry's no-op one and no span is made, but the trace
context still travels (see :mod:`relaybus.telemetry.trace_context`). Control traffic (worker heartbeats and
pings) is neither traced nor given a trace context. Failures set the span's status to ERROR with an
exception event.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Link, NoOpTracerProvider, ProxyTracerProvider, SpanKind, Status, StatusCode

from relaybus.bus.base import WORKER_EVENT_PREFIX, Delivery, Handler, OutgoingMessage
from relaybus.bus.core import DeliveryFields

from .trace_context import (
    TRACEPARENT_HEADER,
    context_from_headers,
    current_trace_id,
    format_trace_id,
    has_trace,
    new_trace_context,
    trace_headers,
)

if TYPE_CHECKING:
    from relaybus.agents.agent import Agent
    from relaybus.agents.context import AgentContext
    from relaybus.executor.llm.base import ChatRequest, Completion, LLMProvider
    from relaybus.messages import AgentTask
    from relaybus.tools import ToolOutcome

__all__ = [
    "chat_attempt",
    "consumer",
    "execute_tool",
    "invoke_agent",
    "publish",
    "start_trace",
    "tracing_enabled",
]

T = TypeVar("T")
B = TypeVar("B")
_last_tracer: list[Any] = [None, None]  # the provider relaybus's tracer was last taken from, and that tracer
SYSTEM = "rabbitmq"
_UNKNOWN = object()


def tracing_enabled() -> bool:
    """True once the application has set a tracer provider (the OpenTelemetry SDK's, in practice).

    Read straight from the API's global when it has one (``get_tracer_provider`` looks the environment up on
    every call, which cost more than the rest of a publish's tracing). A provider named only by
    ``OTEL_PYTHON_TRACER_PROVIDER`` counts once the API has loaded it (the first ``get_tracer_provider``)."""
    provider = getattr(trace, "_TRACER_PROVIDER", _UNKNOWN)
    if provider is None:
        return False
    if provider is _UNKNOWN:
        provider = trace.get_tracer_provider()
    return not isinstance(provider, ProxyTracerProvider | NoOpTracerProvider)


def _tracer() -> trace.Tracer:
    """relaybus's tracer from the current provider (taken again when the provider changes; the API's proxy
    tracer would keep the first provider's for good)."""
    provider = trace.get_tracer_provider()
    if _last_tracer[0] is not provider:
        _last_tracer[1] = provider.get_tracer("relaybus")
        _last_tracer[0] = provider
    tracer: trace.Tracer = _last_tracer[1]
    return tracer


@contextmanager
def start_trace(name: str) -> Iterator[str]:
    """Run the block in a trace and give its id (32 hex digits): the current trace if there is one; else a
    new root span ``name`` when tracing, else a new trace context (what ``relaybus submit`` and ``relaybus
    run`` print, so that every task they publish is found under one trace id)."""
    current = current_trace_id()
    if current is not None:
        yield current
    elif tracing_enabled():
        with _tracer().start_as_current_span(name) as span:
            yield format_trace_id(span.get_span_context().trace_id)
    else:
        token = otel_context.attach(new_trace_context(otel_context.get_current()))
        try:
            yield str(current_trace_id())
        finally:
            otel_context.detach(token)


# -- messaging ---------------------------------------------------------------------------------------------


def _messaging_attributes(
    operation: str, kind: str, destination: str, message: OutgoingMessage | Delivery
) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "messaging.system": SYSTEM,
        "messaging.operation.name": operation,
        "messaging.operation.type": kind,
        "messaging.destination.name": destination,
        "messaging.rabbitmq.destination.routing_key": message.routing_key,
        "messaging.message.body.size": len(message.body),
    }
    if message.message_id is not None:
        attributes["messaging.message.id"] = message.message_id
    if message.correlation_id is not None:
        attributes["messaging.message.conversation_id"] = message.correlation_id
    return attributes


async def publish(
    fn: Callable[[B, OutgoingMessage, Mapping[str, str] | None], Awaitable[None]],
    bus: B,
    message: OutgoingMessage,
) -> None:
    """``fn(bus, message, trace)``, ``trace`` being the headers the bus sends in place of the message's own
    trace headers (None: control traffic, sent as it is), inside a ``publish`` span when tracing. The bus
    merges them into the header table it builds anyway, so a publish copies neither the headers nor the
    message here.

    The parent is the current trace; outside any, the trace the message already carries (a dead letter
    replayed keeps its trace); else the message starts a trace of its own.
    """
    if message.routing_key.startswith(WORKER_EVENT_PREFIX):  # control traffic: no trace
        await fn(bus, message, None)
        return
    parent = otel_context.get_current()
    if TRACEPARENT_HEADER in message.headers and not has_trace(parent):
        parent = context_from_headers(message.headers, parent)
    if not tracing_enabled():
        await fn(bus, message, trace_headers(parent))
        return
    destination = message.exchange or "amq.default"
    attributes = _messaging_attributes("publish", "send", destination, message)
    span = _tracer().start_span(
        f"publish {destination}", parent, kind=SpanKind.PRODUCER, attributes=attributes
    )
    with trace.use_span(span, end_on_exit=True):
        await fn(bus, message, trace_headers(trace.set_span_in_context(span, parent)))


class _Settling(DeliveryFields[Delivery]):
    """A delivery that remembers how its handler settled it (for the ``process`` span)."""

    __slots__ = ("outcome",)

    def __init__(self, delivery: Delivery) -> None:
        self._message = delivery
        self._headers = delivery.headers
        self.outcome = "unsettled"

    def __getattr__(self, name: str) -> Any:  # anything a bus's delivery has beyond the protocol
        return getattr(self._message, name)

    @property
    def redelivered(self) -> bool:
        return self._message.redelivered

    @property
    def delivery_count(self) -> int:
        return self._message.delivery_count

    async def ack(self) -> None:
        await self._message.ack()
        self.outcome = "acked"

    async def nack(self, *, requeue: bool = True) -> None:
        await self._message.nack(requeue=requeue)
        self.outcome = "requeued" if requeue else "rejected"

    async def dead_letter(self, reason: str) -> None:
        await self._message.dead_letter(reason)
        self.outcome = "dead-lettered"


def consumer(queue: str, handler: Handler) -> Handler:
    """``handler`` run inside the trace each delivery carries, in a ``process <queue>`` span when tracing."""

    async def traced(delivery: Delivery) -> None:
        if delivery.routing_key.startswith(WORKER_EVENT_PREFIX):  # control traffic: no trace
            await handler(delivery)
            return
        parent = context_from_headers(delivery.headers)
        if not tracing_enabled():
            token = otel_context.attach(parent)
            try:
                await handler(delivery)
            finally:
                otel_context.detach(token)
            return
        remote = trace.get_current_span(parent).get_span_context()
        attributes = _messaging_attributes("process", "process", queue, delivery)
        if delivery.delivery_count:
            attributes["messaging.rabbitmq.message.delivery_count"] = delivery.delivery_count
        span = _tracer().start_span(
            f"process {queue}",
            parent,
            kind=SpanKind.CONSUMER,
            attributes=attributes,
            links=[Link(remote)] if remote.is_valid else None,
        )
        settling = _Settling(delivery)
        with trace.use_span(span, end_on_exit=True):
            try:
                await handler(settling)
            finally:
                span.set_attribute("relaybus.settle", settling.outcome)

    return traced


# -- GenAI ---------------------------------------------------------------------------------------------------


async def invoke_agent(agent: Agent, task: AgentTask, ctx: AgentContext) -> Any:
    """``agent.handle(task, ctx)`` in an ``invoke_agent <agent>`` span with the tokens the task spent."""
    if not tracing_enabled():
        return await agent.handle(task, ctx)
    attributes = {
        "gen_ai.operation.name": "invoke_agent",
        "gen_ai.agent.name": agent.name,
        "gen_ai.conversation.id": str(task.id),
        "relaybus.task.topic": task.topic,
        "relaybus.worker": ctx.worker,
    }
    with _tracer().start_as_current_span(f"invoke_agent {agent.name}", attributes=attributes) as span:
        try:
            return await agent.handle(task, ctx)
        except BaseException as exc:
            if not isinstance(exc, Exception):  # cancelled (deadline, cancel request, shutdown)
                span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            span.set_attribute("error.type", type(exc).__name__)
            raise
        finally:
            usage = ctx.usage
            span.set_attribute("gen_ai.usage.input_tokens", usage.prompt_tokens)
            span.set_attribute("gen_ai.usage.output_tokens", usage.completion_tokens)


async def chat_attempt(
    fn: Callable[[LLMProvider, ChatRequest, T], Awaitable[Completion | Exception]],
    provider: LLMProvider,
    request: ChatRequest,
    relay: T,
) -> Completion | Exception:
    """One request to a model (``fn``, which returns the provider's exception rather than raising it) in a
    ``chat <model>`` span: the answer's model, tokens and finish reason, or the error."""
    if not tracing_enabled():
        return await fn(provider, request, relay)
    model = str(getattr(provider, "model", "") or provider.name)
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": str(getattr(provider, "kind", "") or provider.name),
        "gen_ai.request.model": model,
        "gen_ai.request.max_tokens": request.max_tokens,
        "relaybus.provider": provider.name,
    }
    if request.temperature is not None:
        attributes["gen_ai.request.temperature"] = request.temperature
    with _tracer().start_as_current_span(
        f"chat {model}", kind=SpanKind.CLIENT, attributes=attributes
    ) as span:
        answer = await fn(provider, request, relay)
        if isinstance(answer, Exception):
            status = getattr(getattr(answer, "response", None), "status_code", None)
            span.set_attribute("error.type", str(status) if status is not None else type(answer).__name__)
            span.record_exception(answer)
            span.set_status(Status(StatusCode.ERROR, f"{type(answer).__name__}: {answer}"[:200]))
            return answer
        span.set_attribute("gen_ai.response.model", answer.model)
        span.set_attribute("gen_ai.usage.input_tokens", answer.usage.prompt_tokens)
        span.set_attribute("gen_ai.usage.output_tokens", answer.usage.completion_tokens)
        span.set_attribute("gen_ai.response.finish_reasons", [str(answer.finish_reason.value)])
        return answer


async def execute_tool(
    fn: Callable[..., Awaitable[tuple[ToolOutcome, float]]], toolbox: Any, call: Any, *rest: Any
) -> tuple[ToolOutcome, float]:
    """One tool call of the agent loop (``fn(toolbox, call, ...)``) in an ``execute_tool <tool>`` span; an
    outcome that is an error sets the span's status to ERROR."""
    if not tracing_enabled():
        return await fn(toolbox, call, *rest)
    attributes = {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": call.name,
        "gen_ai.tool.call.id": call.id,
        "gen_ai.tool.type": "function",
    }
    with _tracer().start_as_current_span(f"execute_tool {call.name}", attributes=attributes) as span:
        outcome, seconds = await fn(toolbox, call, *rest)
        if outcome.is_error:
            span.set_attribute("error.type", "tool_error")
            span.set_status(Status(StatusCode.ERROR, outcome.content[:200]))
        return outcome, seconds
