"""Message buses: the ``Bus`` protocol, ``MemoryBus`` (in process) and ``AmqpBus`` (RabbitMQ).

``AmqpBus`` is imported on first use (PEP 562), so that importing ``relaybus.bus`` does not load aio-pika.
"""

from typing import TYPE_CHECKING

from relaybus._lazy import lazy_exports

from .base import (
    DEAD_LETTER_EXCHANGE,
    DEAD_LETTER_QUEUE,
    DEFAULT_DELIVERY_LIMIT,
    DEFAULT_EXCHANGE,
    ERROR_HEADER,
    EXCHANGE,
    SCHEMA_HEADER,
    Bus,
    Delivery,
    Handler,
    OutgoingMessage,
    Subscription,
    agent_queue_name,
    agent_routing_key,
    event_routing_key,
    task_routing_key,
)
from .codec import DEFAULT_MAX_BODY_BYTES, decode, decode_delivery, encode_result, encode_task
from .connect import AmqpOptions, BusOptions, MemoryOptions, connect
from .memory import MemoryBus, MemoryDelivery, QueueStats
from .rpc import ReplyRouter
from .signing import SignedBus, SigningKey
from .topic import topic_binding, topic_matches, topic_pattern_problem, validate_topic_pattern

if TYPE_CHECKING:
    from .amqp import AmqpBus

__all__ = [
    "DEAD_LETTER_EXCHANGE",
    "DEAD_LETTER_QUEUE",
    "DEFAULT_DELIVERY_LIMIT",
    "DEFAULT_EXCHANGE",
    "DEFAULT_MAX_BODY_BYTES",
    "ERROR_HEADER",
    "EXCHANGE",
    "SCHEMA_HEADER",
    "AmqpBus",
    "AmqpOptions",
    "Bus",
    "BusOptions",
    "Delivery",
    "Handler",
    "MemoryBus",
    "MemoryDelivery",
    "MemoryOptions",
    "OutgoingMessage",
    "QueueStats",
    "ReplyRouter",
    "SignedBus",
    "SigningKey",
    "Subscription",
    "agent_queue_name",
    "agent_routing_key",
    "connect",
    "decode",
    "decode_delivery",
    "encode_result",
    "encode_task",
    "event_routing_key",
    "task_routing_key",
    "topic_binding",
    "topic_matches",
    "topic_pattern_problem",
    "validate_topic_pattern",
]

__getattr__, __dir__ = lazy_exports(globals(), {"AmqpBus": ".amqp"})
