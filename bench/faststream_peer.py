"""The FastStream peer: an RPC server and client written the way FastStream's users write them.

    python -m bench.faststream_peer serve --queue Q [--prefetch N]
    python -m bench.faststream_peer client --queue Q --points '[[n, window], ...]'

Same guarantees as relaybus and the raw aio-pika baseline: the task queue is the same durable quorum queue
(the arguments of ``bench.raw_amqp.QUEUE_ARGUMENTS``), messages are persistent, publishes wait for the
broker's confirm (FastStream's channel has publisher confirms on), and the server acks a task only after its
handler returned, that is after the reply's publish was confirmed. FastStream's own ``broker.request`` uses
direct reply-to, which allows one request in flight per channel and loses a reply when the caller's
channel drops; so the client does what FastStream's maintainers advise for concurrent RPC
(airtai/faststream#1318): a subscriber on a reply queue of its own, matched by correlation id.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

from faststream.rabbit import Channel, QueueType, RabbitBroker, RabbitMessage, RabbitQueue

from bench.common import amqp_url, emit, measure_points, rpc_peer_parser, run_measured, wait_for_stop_signal
from bench.raw_amqp import QUEUE_ARGUMENTS, REPLY_PREFETCH


def task_queue(name: str) -> RabbitQueue:
    arguments = {key: value for key, value in QUEUE_ARGUMENTS.items() if key != "x-queue-type"}
    return RabbitQueue(name, queue_type=QueueType.QUORUM, durable=True, arguments=arguments)  # type: ignore[arg-type]


async def serve(queue_name: str, prefetch: int) -> None:
    # FastStream's logger would print a line per message; a user measuring throughput turns it down too.
    broker = RabbitBroker(amqp_url(), logger=None)

    @broker.subscriber(task_queue(queue_name), channel=Channel(prefetch_count=prefetch))
    async def handle(task: dict[str, Any], message: RabbitMessage) -> None:
        reply = {"task_id": task["id"], "status": "success", "output": None}
        await broker.publish(
            reply,
            routing_key=message.reply_to,
            correlation_id=message.correlation_id,
            message_id=f"result-{task['id']}",
            persist=True,
            mandatory=True,
        )

    async with broker:
        await broker.start()
        emit("READY", {"queue": queue_name})
        await wait_for_stop_signal()


class FastStreamClient:
    """Publishes tasks with FastStream and matches replies by correlation id on a reply queue of its own."""

    def __init__(self, queue_name: str) -> None:
        self.queue_name = queue_name
        self.reply_queue = f"bench.faststream.reply.{uuid.uuid4().hex}"
        self._pending: dict[str, asyncio.Future[Any]] = {}
        self.broker = RabbitBroker(amqp_url(), logger=None)
        reply_queue = RabbitQueue(self.reply_queue, exclusive=True, auto_delete=True)

        @self.broker.subscriber(reply_queue, channel=Channel(prefetch_count=REPLY_PREFETCH))
        async def on_reply(body: dict[str, Any], message: RabbitMessage) -> None:
            future = self._pending.pop(message.correlation_id or "", None)
            if future is not None and not future.done():
                future.set_result(body)

    async def __aenter__(self) -> FastStreamClient:
        await self.broker.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.broker.stop()

    async def call(self, prompt: str = "") -> Any:
        task_id = str(uuid.uuid4())
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[task_id] = future
        await self.broker.publish(
            {"id": task_id, "topic": "bench.faststream", "prompt": prompt},
            routing_key=self.queue_name,
            correlation_id=task_id,
            message_id=task_id,
            reply_to=self.reply_queue,
            persist=True,
            mandatory=True,
        )
        return await future


async def client(queue_name: str, points: list[list[int]], prompt: str, server_pid: int | None) -> None:
    async with FastStreamClient(queue_name) as rpc:
        await measure_points(rpc.call, points, prompt, server_pid)


def main() -> None:
    parser = rpc_peer_parser("bench.faststream_peer", llm=False)
    args = parser.parse_args()
    if args.cmd == "serve":
        run_measured(serve(args.queue, args.prefetch))
    else:
        run_measured(client(args.queue, json.loads(args.points), args.prompt, args.server_pid))


if __name__ == "__main__":
    main()
