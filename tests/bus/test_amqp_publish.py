"""The deadline of ``AmqpBus``'s publishes (one watchdog per bus), and the message it builds."""

from __future__ import annotations

import asyncio
import uuid

import aio_pika
import pytest

from relaybus import ConnectionFailed
from relaybus.bus import OutgoingMessage
from relaybus.bus.amqp import AmqpBus
from relaybus.bus.amqp_publish import DeadlineWatchdog, amqp_properties


async def test_each_publish_times_out_at_its_own_deadline_and_the_others_finish() -> None:
    watchdog = DeadlineWatchdog()
    loop = asyncio.get_running_loop()
    now = loop.time()
    never = asyncio.Event()
    timed_out: list[tuple[float, float]] = []  # (deadline, when), in the order they timed out

    async def bounded(delay: float, finish_after: float | None) -> str:
        async def publish() -> str:
            if finish_after is None:
                await never.wait()
            await asyncio.sleep(finish_after or 0)
            return "confirmed"

        try:
            return await watchdog.bound(publish(), now + delay)
        except TimeoutError:
            timed_out.append((delay, loop.time() - now))
            return "timeout"

    # The later deadline is watched first: the earlier one must re-arm the timer.
    results = await asyncio.gather(
        bounded(0.6, None), bounded(0.05, None), bounded(0.3, 0.05), bounded(5.0, 0.2)
    )
    assert results == ["timeout", "timeout", "confirmed", "confirmed"]
    assert [deadline for deadline, _ in timed_out] == [0.05, 0.6]
    assert all(when >= deadline for deadline, when in timed_out)
    assert watchdog._waiting == {}
    assert watchdog._expired == set()
    watchdog.close()


async def test_a_cancellation_from_elsewhere_stays_a_cancellation_and_the_task_is_not_left_cancelled() -> (
    None
):
    watchdog = DeadlineWatchdog()
    started = asyncio.Event()

    async def publish() -> None:
        started.set()
        await asyncio.Event().wait()

    deadline = asyncio.get_running_loop().time() + 5
    task = asyncio.create_task(watchdog.bound(publish(), deadline))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    async def times_out_then_goes_on() -> str:
        with pytest.raises(TimeoutError):
            await watchdog.bound(publish(), asyncio.get_running_loop().time() + 0.05)
        assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]
        await asyncio.sleep(0.01)  # not cancelled again
        return "went on"

    assert await times_out_then_goes_on() == "went on"
    watchdog.close()


@pytest.mark.integration
async def test_a_publish_never_confirmed_fails_at_the_reconnect_timeout_and_the_next_one_is_confirmed(
    amqp_url: str,
) -> None:
    queue = f"relaybus.test.publish.deadline.{uuid.uuid4().hex[:8]}"
    async with AmqpBus(amqp_url, reconnect_timeout=0.5) as bus:
        await bus.declare_queue(queue, durable=False)
        channel = bus._publisher.channel
        assert channel is not None
        real = channel.get_underlay_channel

        class Unconfirmed:
            async def basic_publish(self, *args: object, **kwargs: object) -> None:
                await asyncio.Event().wait()

        async def unconfirmed() -> object:
            return Unconfirmed()

        channel.get_underlay_channel = unconfirmed  # type: ignore[method-assign]
        began = asyncio.get_running_loop().time()
        with pytest.raises(
            ConnectionFailed, match=r"routing key '.*': the connection .* not restored within 0.5 s"
        ):
            await bus.publish(OutgoingMessage(routing_key=queue, body=b"lost", exchange=""))
        assert asyncio.get_running_loop().time() - began >= 0.5
        channel.get_underlay_channel = real  # type: ignore[method-assign]
        await bus.publish(OutgoingMessage(routing_key=queue, body=b"kept", exchange=""))
        assert await bus.queue_backlog(queue) == 1


@pytest.mark.parametrize(
    "message",
    [
        OutgoingMessage(b"{}", routing_key="task.t", message_id="m", correlation_id="c", reply_to="r"),
        OutgoingMessage(b"x", routing_key="q", exchange="", headers={"a": 1, "tracestate": "old=1"}),
        OutgoingMessage(b"x", routing_key="q", priority=3, persistent=False, content_type=None, reply_to=""),
    ],
)
def test_the_properties_are_those_aio_pika_would_send_with_the_trace_headers_in_place(
    message: OutgoingMessage,
) -> None:
    trace = {"traceparent": f"00-{'ab' * 16}-{'cd' * 8}-01"}
    headers = {k: v for k, v in message.headers.items() if k != "tracestate"} | trace
    expected = aio_pika.Message(
        message.body,
        headers=headers,
        content_type=message.content_type,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT
        if message.persistent
        else aio_pika.DeliveryMode.NOT_PERSISTENT,
        priority=message.priority,
        correlation_id=message.correlation_id,
        reply_to=message.reply_to,
        message_id=message.message_id,
        user_id="guest",
    ).properties
    assert amqp_properties(message, "guest", trace) == expected
    assert amqp_properties(message, "guest", None).headers == dict(message.headers)
