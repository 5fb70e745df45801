"""Trace context through each bus (MemoryBus and AmqpBus on real RabbitMQ, the contract fixtures): a
delivery and its dead letter carry the publisher's trace, and the consumer's span records the settle."""

from __future__ import annotations

from uuid import uuid4

from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from relaybus.bus.base import Bus, Delivery, OutgoingMessage
from relaybus.telemetry.trace_context import format_trace_id, trace_id_of
from tests.bus.conftest import Harness, bus, harness
from tests.eventually import eventually

__all__ = ["bus", "harness"]  # the contract fixtures, used here


async def _consumed(
    bus: Bus, harness: Harness, name: str, *, dead_letter: bool
) -> tuple[str, str, list[Delivery]]:
    """A queue ``name`` bound to its own routing key and consumed, each delivery kept and dead-lettered or
    acked: the queue, the key, and the deliveries as they arrive."""
    queue = harness.name(name)
    key = f"task.{harness.run}.{name}"
    await bus.declare_queue(queue, bindings=[key])
    got: list[Delivery] = []

    async def settle(delivery: Delivery) -> None:
        got.append(delivery)
        if dead_letter:
            await delivery.dead_letter("refused on purpose")
        else:
            await delivery.ack()

    await bus.consume(queue, settle)
    return queue, key, got


async def test_a_delivery_and_its_dead_letter_carry_the_publishers_trace(
    bus: Bus, harness: Harness, spans: InMemorySpanExporter, tracer: trace.Tracer
) -> None:
    queue, key, got = await _consumed(bus, harness, "traced", dead_letter=True)
    message_id = f"traced-{uuid4()}"
    with tracer.start_as_current_span("caller") as caller:
        await bus.publish(OutgoingMessage(b"{}", routing_key=key, message_id=message_id))
    trace_id = format_trace_id(caller.get_span_context().trace_id)
    dead = (await harness.take_dead_letters([message_id]))[message_id]
    assert trace_id_of(got[0].headers) == trace_id
    assert trace_id_of(dead.headers) == trace_id  # the dead letter keeps the trace of the message it holds
    process = await eventually(
        lambda: [s for s in spans.get_finished_spans() if s.name == f"process {queue}"], timeout=10
    )
    assert process[0].kind is SpanKind.CONSUMER
    assert process[0].context.trace_id == caller.get_span_context().trace_id
    assert dict(process[0].attributes or {})["relaybus.settle"] == "dead-lettered"


async def test_the_publishing_trace_replaces_the_messages_own_and_the_callers_message_is_left_alone(
    bus: Bus, harness: Harness, tracer: trace.Tracer
) -> None:
    _, key, got = await _consumed(bus, harness, "retraced", dead_letter=False)
    stale = {"traceparent": f"00-{'ab' * 16}-{'cd' * 8}-01", "tracestate": "stale=1", "x-app": "kept"}
    message = OutgoingMessage(b"{}", routing_key=key, message_id=f"retraced-{uuid4()}", headers=dict(stale))
    with tracer.start_as_current_span("caller") as caller:
        await bus.publish(message)
    await eventually(lambda: len(got) == 1, timeout=10)
    headers = got[0].headers
    assert trace_id_of(headers) == format_trace_id(caller.get_span_context().trace_id)
    assert "tracestate" not in headers  # the caller's trace has none: the message's stale one is dropped
    assert headers["x-app"] == "kept"
    assert message.headers == stale  # the bus sent its own copy
