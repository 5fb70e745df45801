"""A client and a worker written with pika from docs/wire.md alone: no relaybus import in this module.

Both are blocking pika code, run in a thread by the tests (``asyncio.to_thread``), as another program would
run beside relaybus. The names, arguments and headers here are the ones docs/wire.md states.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import pika
from pika.adapters.blocking_connection import BlockingChannel

EXCHANGE = "relaybus"
DEAD_LETTER_EXCHANGE = "relaybus.dlx"
SCHEMA = {"relaybus-schema": 1}
DIRECT_REPLY_TO = "amq.rabbitmq.reply-to"
AGENT_QUEUE_ARGUMENTS = {
    "x-queue-type": "quorum",
    "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE,
    "x-dead-letter-strategy": "at-least-once",
    "x-overflow": "reject-publish",
    "x-delivery-limit": 5,
}


@dataclass
class Reply:
    """What came back to the client: the AMQP properties, the JSON body, and the seconds it took."""

    properties: pika.BasicProperties
    body: dict[str, Any]
    seconds: float


def _declare_topology(channel: BlockingChannel) -> None:
    channel.exchange_declare(EXCHANGE, "topic", durable=True)
    channel.exchange_declare(DEAD_LETTER_EXCHANGE, "fanout", durable=True)


def call(
    url: str,
    body: bytes,
    *,
    routing_key: str,
    headers: dict[str, Any] | None = None,
    content_type: str = "application/json",
    message_id: str | None = None,
    correlation_id: str | None = None,
    direct: bool = False,
    timeout: float = 20.0,
) -> Reply | None:
    """Publish one task (confirmed, mandatory) and wait up to ``timeout`` for its result: on a private
    ``relaybus.reply.pika-*`` queue, or by direct reply-to. None when nothing came."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        _declare_topology(channel)
        if direct:
            reply_to = DIRECT_REPLY_TO
        else:
            reply_to = f"relaybus.reply.pika-{uuid.uuid4().hex}"
            channel.queue_declare(reply_to, exclusive=True)
        replies: list[tuple[pika.BasicProperties, bytes]] = []
        channel.basic_consume(reply_to, lambda _c, _m, p, b: replies.append((p, b)), auto_ack=True)
        started = time.monotonic()
        channel.basic_publish(
            EXCHANGE,
            routing_key,
            body,
            pika.BasicProperties(
                content_type=content_type,
                delivery_mode=2,
                headers=SCHEMA if headers is None else headers,
                message_id=message_id,
                correlation_id=correlation_id,
                reply_to=reply_to,
            ),
            mandatory=True,
        )
        while not replies and time.monotonic() - started < timeout:
            connection.process_data_events(time_limit=0.05)
        if not replies:
            return None
        properties, raw = replies[0]
        return Reply(properties, json.loads(raw), time.monotonic() - started)
    finally:
        connection.close()


def task_body(topic: str, **fields: Any) -> tuple[str, bytes]:
    """A new task id and the JSON body of a task with it."""
    task_id = str(uuid.uuid4())
    return task_id, json.dumps({"id": task_id, "topic": topic, **fields}).encode()


@dataclass
class PikaWorker:
    """Hosts agent ``name`` for ``topic_pattern``: answers each task with ``{"upper": prompt.upper()}``."""

    url: str
    name: str
    topic_pattern: str
    seen: list[dict[str, Any]] = field(default_factory=list)
    cancels: list[dict[str, Any]] = field(default_factory=list)
    ready: threading.Event = field(default_factory=threading.Event)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        connection = pika.BlockingConnection(pika.URLParameters(self.url))
        try:
            channel = connection.channel()
            channel.confirm_delivery()
            _declare_topology(channel)
            queue = f"relaybus.agent.{self.name}"
            channel.queue_declare(queue, durable=True, arguments=AGENT_QUEUE_ARGUMENTS)
            channel.queue_bind(queue, EXCHANGE, routing_key=f"task.{self.topic_pattern}")
            channel.queue_bind(queue, EXCHANGE, routing_key=f"agent.{self.name}")
            control = channel.queue_declare("", exclusive=True).method.queue
            channel.queue_bind(control, EXCHANGE, routing_key="event.relaybus.cancel")
            channel.basic_qos(prefetch_count=8)
            channel.basic_consume(queue, self._on_task)
            channel.basic_consume(control, self._on_cancel, auto_ack=True)
            self.ready.set()
            while not self.stop.is_set():
                connection.process_data_events(time_limit=0.05)
        finally:
            connection.close()

    def _on_cancel(self, _channel: BlockingChannel, _method: Any, _props: Any, body: bytes) -> None:
        self.cancels.append(json.loads(body))

    def _on_task(
        self, channel: BlockingChannel, method: Any, props: pika.BasicProperties, body: bytes
    ) -> None:
        task = json.loads(body)
        self.seen.append({"task": task, "headers": dict(props.headers or {}), "reply_to": props.reply_to})
        now = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())
        result = {
            "task_id": task["id"],
            "status": "success",
            "output": {"upper": task.get("prompt", "").upper()},
            "agent": self.name,
            "worker": "pika",
            "started_at": now,
            "finished_at": now,
        }
        if props.reply_to:
            channel.basic_publish(
                "",
                props.reply_to,
                json.dumps(result).encode(),
                pika.BasicProperties(
                    content_type="application/json",
                    delivery_mode=2,
                    headers=SCHEMA,
                    correlation_id=props.correlation_id or task["id"],
                    message_id=f"result-{task['id']}",
                ),
            )
        channel.basic_ack(method.delivery_tag)
