"""The baseline: a hand-written aio-pika RPC server and client with relaybus's delivery guarantees.

Same guarantees as relaybus: a durable quorum task queue, persistent messages, publisher confirms on both
sides (the server acks a task only after its reply is confirmed), manual acks, one process each side, a
private reply queue per client matched by correlation id. JSON in, JSON out (stdlib ``json``), no
validation, no logging: what a careful engineer writes by hand, so the figure relaybus is measured against.

The client's reply queue is exclusive and classic by default (lost with the client's connection or a broker
restart); with ``--durable-reply`` it is what relaybus's callers have (``relaybus.bus.rpc``): a durable quorum
queue with an expiry, in which a result outlives a broker restart, so the broker persists every result to a
replicated log before it confirms it.

    python -m bench.raw_amqp serve --queue Q [--prefetch N] [--llm-url URL]
    python -m bench.raw_amqp client --queue Q --points '[[n, window], ...]' [--durable-reply]

The server declares ``Q`` (idempotent; the parent deletes it at the end) and consumes it. With ``--llm-url``
each task is one chat completion over a shared ``aiohttp`` session (the I/O-bound baseline). Both sides use
aio-pika's robust connection, so a broker restart by someone sharing it does not kill the baseline.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

from bench.common import amqp_url, emit, measure_points, rpc_peer_parser, run_measured, wait_for_stop_signal

# The arguments relaybus gives an agent's queue (DESIGN.md), so the broker does the same work for both.
QUEUE_ARGUMENTS: dict[str, Any] = {
    "x-queue-type": "quorum",
    "x-delivery-limit": 5,
    "x-dead-letter-exchange": "relaybus.dlx",
    "x-dead-letter-strategy": "at-least-once",
    "x-overflow": "reject-publish",
}
# What relaybus's anonymous reply queue is (``ReplyRouter(name=None)``): quorum, with a 300 s expiry.
DURABLE_REPLY_ARGUMENTS: dict[str, Any] = {**QUEUE_ARGUMENTS, "x-expires": 300_000}
REPLY_PREFETCH = 256  # what relaybus's ReplyRouter uses


async def declare_task_queue(channel: aio_pika.abc.AbstractChannel, name: str) -> aio_pika.abc.AbstractQueue:
    return await channel.declare_queue(name, durable=True, arguments=QUEUE_ARGUMENTS)


async def serve(queue_name: str, prefetch: int, llm_url: str | None) -> None:
    connection = await aio_pika.connect_robust(amqp_url())
    session: Any = None
    if llm_url is not None:
        import aiohttp

        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=max(prefetch, 100)))
    try:
        consume_channel = await connection.channel(publisher_confirms=False)
        await consume_channel.set_qos(prefetch_count=prefetch)
        publish_channel = await connection.channel(publisher_confirms=True)
        exchange = publish_channel.default_exchange
        queue = await declare_task_queue(consume_channel, queue_name)

        async def on_message(message: AbstractIncomingMessage) -> None:
            task = json.loads(message.body)
            if session is not None:
                payload = {"model": "fake", "messages": [{"role": "user", "content": task["prompt"]}]}
                async with session.post(f"{llm_url}/chat/completions", json=payload) as response:
                    answer = await response.json()
                output: Any = answer["choices"][0]["message"]["content"]
            else:
                output = None
            reply = json.dumps({"task_id": task["id"], "status": "success", "output": output}).encode()
            await exchange.publish(
                aio_pika.Message(
                    reply,
                    content_type="application/json",
                    correlation_id=message.correlation_id,
                    message_id=f"result-{task['id']}",
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                ),
                routing_key=message.reply_to or "",
                mandatory=True,
            )
            await message.ack()

        await queue.consume(on_message, no_ack=False)
        emit("READY", {"queue": queue_name})
        await wait_for_stop_signal()
    finally:
        if session is not None:
            await session.close()
        await connection.close()


class RawClient:
    """Publishes tasks to the server's queue and matches replies by correlation id on a private queue."""

    def __init__(self, queue_name: str, *, durable_reply: bool = False) -> None:
        self.queue_name = queue_name
        self.durable_reply = durable_reply
        self._pending: dict[str, asyncio.Future[bytes]] = {}

    async def __aenter__(self) -> RawClient:
        self.connection = await aio_pika.connect_robust(amqp_url())
        self.channel = await self.connection.channel(publisher_confirms=True)
        self._consume_channel = consume_channel = await self.connection.channel(publisher_confirms=False)
        await consume_channel.set_qos(prefetch_count=REPLY_PREFETCH)
        name = f"bench.raw.reply.{uuid.uuid4().hex}"
        if self.durable_reply:
            self.reply_queue = await consume_channel.declare_queue(
                name, durable=True, arguments=DURABLE_REPLY_ARGUMENTS
            )
        else:
            self.reply_queue = await consume_channel.declare_queue(name, exclusive=True)
        await self.reply_queue.consume(self._on_reply, no_ack=False)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.durable_reply:  # its consumer first, so that the broker does not cancel it
            await self._consume_channel.close()
            await self.channel.queue_delete(self.reply_queue.name)
        await self.connection.close()

    async def _on_reply(self, message: AbstractIncomingMessage) -> None:
        future = self._pending.pop(message.correlation_id or "", None)
        if future is not None and not future.done():
            future.set_result(message.body)
        await message.ack()

    async def call(self, prompt: str = "") -> bytes:
        task_id = str(uuid.uuid4())
        future = asyncio.get_running_loop().create_future()
        self._pending[task_id] = future
        body = json.dumps({"id": task_id, "topic": "bench.raw", "prompt": prompt}).encode()
        await self.channel.default_exchange.publish(
            aio_pika.Message(
                body,
                content_type="application/json",
                message_id=task_id,
                correlation_id=task_id,
                reply_to=self.reply_queue.name,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            ),
            routing_key=self.queue_name,
            mandatory=True,
        )
        return await future


async def client(
    queue_name: str, points: list[list[int]], prompt: str, server_pid: int | None, durable_reply: bool
) -> None:
    async with RawClient(queue_name, durable_reply=durable_reply) as rpc:
        await measure_points(rpc.call, points, prompt, server_pid)


def main() -> None:
    parser = rpc_peer_parser("bench.raw_amqp", llm=True, durable_reply=True)
    args = parser.parse_args()
    if args.cmd == "serve":
        run_measured(serve(args.queue, args.prefetch, args.llm_url))
    else:
        points = json.loads(args.points)
        run_measured(client(args.queue, points, args.prompt, args.server_pid, args.durable_reply))


if __name__ == "__main__":
    main()
