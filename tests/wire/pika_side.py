"""A client and a worker written with pika from docs/wire.md alone: no relaybus import in this module.

Both are blocking pika code, run in a thread by the tests (``asyncio.to_thread``), as another program would
run beside relaybus. The names, arguments and headers here are the ones docs/wire.md states.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

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


@dataclass
class Streamed:
    """A streamed task's messages as they came: (queue, headers, JSON body) of each event, then the result."""

    events: list[tuple[str, dict[str, Any], dict[str, Any]]]
    result: dict[str, Any] | None


def stream(
    url: str, body: bytes, *, routing_key: str, own_events_queue: bool, timeout: float = 20.0
) -> Streamed:
    """Publish one task with ``relaybus-stream: 1`` and collect its events and result: on a private reply
    queue, and with ``own_events_queue`` on an exclusive ``relaybus.events.<32 hex>`` queue named by the
    ``relaybus-events-to`` header."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        _declare_topology(channel)
        reply_to = f"relaybus.reply.pika-{uuid.uuid4().hex}"
        queues = [reply_to]
        headers: dict[str, Any] = {**SCHEMA, "relaybus-stream": "1"}
        if own_events_queue:
            events_to = f"relaybus.events.{uuid.uuid4().hex}"
            queues.append(events_to)
            headers["relaybus-events-to"] = events_to
        got = Streamed(events=[], result=None)
        for queue in queues:
            channel.queue_declare(queue, exclusive=True)

            def keep(
                _c: Any, method: Any, props: pika.BasicProperties, raw: bytes, queue: str = queue
            ) -> None:
                message_headers = dict(props.headers or {})
                if "relaybus-event" in message_headers:
                    got.events.append((queue, message_headers, json.loads(raw)))
                else:
                    got.result = json.loads(raw)

            channel.basic_consume(queue, keep, auto_ack=True)
        channel.basic_publish(
            EXCHANGE,
            routing_key,
            body,
            pika.BasicProperties(
                content_type="application/json", delivery_mode=2, headers=headers, reply_to=reply_to
            ),
            mandatory=True,
        )
        started = time.monotonic()
        while got.result is None and time.monotonic() - started < timeout:
            connection.process_data_events(time_limit=0.05)
        return got
    finally:
        connection.close()


def task_body(topic: str, **fields: Any) -> tuple[str, bytes]:
    """A new task id and the JSON body of a task with it."""
    task_id = str(uuid.uuid4())
    return task_id, json.dumps({"id": task_id, "topic": topic, **fields}).encode()


def serve(
    url: str, setup: Callable[[BlockingChannel], None], ready: threading.Event, stop: threading.Event
) -> None:
    """Connect, declare the exchanges, let ``setup`` declare and consume, set ``ready``, and process
    deliveries until ``stop`` is set."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = connection.channel()
        _declare_topology(channel)
        setup(channel)
        ready.set()
        while not stop.is_set():
            connection.process_data_events(time_limit=0.05)
    finally:
        connection.close()


class _Runs(Protocol):
    ready: threading.Event
    stop: threading.Event

    def run(self) -> None: ...


@contextlib.contextmanager
def running(thing: _Runs) -> Iterator[None]:
    """Run ``thing`` in a thread of its own while the block runs."""
    thread = threading.Thread(target=thing.run, daemon=True)
    thread.start()
    if not thing.ready.wait(20):
        raise TimeoutError(f"{type(thing).__name__} did not start within 20 s")
    try:
        yield
    finally:
        thing.stop.set()
        thread.join(10)


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
        serve(self.url, self._setup, self.ready, self.stop)

    def _setup(self, channel: BlockingChannel) -> None:
        channel.confirm_delivery()
        queue = f"relaybus.agent.{self.name}"
        channel.queue_declare(queue, durable=True, arguments=AGENT_QUEUE_ARGUMENTS)
        channel.queue_bind(queue, EXCHANGE, routing_key=f"task.{self.topic_pattern}")
        channel.queue_bind(queue, EXCHANGE, routing_key=f"agent.{self.name}")
        control = channel.queue_declare("", exclusive=True).method.queue
        channel.queue_bind(control, EXCHANGE, routing_key="event.relaybus.cancel")
        channel.basic_qos(prefetch_count=8)
        channel.basic_consume(queue, self._on_task)
        channel.basic_consume(control, self._on_cancel, auto_ack=True)

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


@dataclass
class EventTap:
    """A private queue bound to ``bindings`` on ``relaybus``; keeps each (routing key, headers, JSON body).
    With ``ping``, asks every live worker for a heartbeat once the queue is bound."""

    url: str
    bindings: tuple[str, ...]
    ping: bool = False
    got: list[tuple[str, dict[str, Any], Any]] = field(default_factory=list)
    ready: threading.Event = field(default_factory=threading.Event)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        serve(self.url, self._setup, self.ready, self.stop)

    def _setup(self, channel: BlockingChannel) -> None:
        queue = channel.queue_declare("", exclusive=True).method.queue
        for binding in self.bindings:
            channel.queue_bind(queue, EXCHANGE, routing_key=binding)
        channel.basic_consume(queue, self._on, auto_ack=True)
        if self.ping:
            properties = pika.BasicProperties(content_type="application/json", headers=SCHEMA)
            channel.basic_publish(EXCHANGE, "event.relaybus.worker.ping", b"{}", properties)

    def _on(self, _channel: BlockingChannel, method: Any, props: pika.BasicProperties, body: bytes) -> None:
        self.got.append((method.routing_key, dict(props.headers or {}), json.loads(body)))
