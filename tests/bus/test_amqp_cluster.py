"""Several broker URLs (relaybus.bus.amqp_cluster): read as a list, every password masked, the first node that
answers is used, a lost node is left for the next with backoff and jitter, a nacked publish is sent again on
a fresh channel, and quorum queues are sized for the cluster."""

from __future__ import annotations

import socket
import uuid

import aio_pika
import pytest
from aiormq.exceptions import DeliveryError
from pamqp.commands import Basic

from relaybus import ConfigError, ConnectionFailed
from relaybus.bus import OutgoingMessage, connect
from relaybus.bus.amqp import AmqpBus
from relaybus.bus.amqp_cluster import (
    GROUP_SIZE_ARG,
    ClusterConnection,
    Endpoints,
    keep_existing_group_size,
    quorum_group_size,
    split_urls,
)
from relaybus.exceptions import BusError
from tests.eventually import eventually
from tests.rabbitmq_nodes import PrivateCluster


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_urls_come_comma_separated_or_as_a_list_and_an_empty_one_is_refused() -> None:
    assert split_urls(" amqp://a/ , amqps://b:5671/ ") == ["amqp://a/", "amqps://b:5671/"]
    assert split_urls(["amqp://a/", "amqp://b/"]) == ["amqp://a/", "amqp://b/"]
    with pytest.raises(ConfigError, match=r"#2 of 3 is empty.*single commas"):
        split_urls("amqp://a/,,amqp://b/")
    with pytest.raises(ConfigError, match="#1 is a int"):
        split_urls([5672])  # type: ignore[list-item]


@pytest.mark.parametrize(
    ("nodes", "configured", "size"),
    [
        (1, None, None),
        (2, None, 2),
        (3, None, 3),
        (4, None, 3),
        (5, None, 5),
        (9, None, 5),
        (1, 3, 3),
        (3, 1, 1),
    ],
)
def test_the_quorum_group_follows_the_cluster_size_rounded_to_an_odd_number_up_to_five(
    nodes: int, configured: int | None, size: int | None
) -> None:
    assert quorum_group_size(nodes, configured) == size


@pytest.mark.parametrize(
    ("current", "ours", "kept"),
    [("none", {GROUP_SIZE_ARG: 3}, {}), ("the value '3' of type 'byte'", {}, {GROUP_SIZE_ARG: 3})],
)
def test_a_queue_that_exists_with_another_group_size_is_declared_again_with_its_own(
    current: str, ours: dict[str, object], kept: dict[str, object]
) -> None:
    refusal = (
        f"PRECONDITION_FAILED - inequivalent arg '{GROUP_SIZE_ARG}' for queue 'q' in vhost '/': "
        f"received the value '3' of type 'byte' but current is {current}"
    )
    arguments = {"x-queue-type": "quorum", **ours}
    assert keep_existing_group_size(refusal, arguments)
    assert arguments == {"x-queue-type": "quorum", **kept}
    assert not keep_existing_group_size(refusal, arguments)  # once: the same refusal again is an error
    other = "PRECONDITION_FAILED - inequivalent arg 'x-delivery-limit' for queue 'q'"
    assert not keep_existing_group_size(other, {GROUP_SIZE_ARG: 3})


def test_a_bad_quorum_group_size_is_refused() -> None:
    with pytest.raises(ConfigError, match="quorum_group_size must be a whole number >= 1, got 0"):
        quorum_group_size(3, 0)


def test_every_url_of_a_cluster_is_masked_in_the_bus_its_repr_and_its_log_fields() -> None:
    bus = AmqpBus(["amqp://u:pw-one@h1:5672/", "amqp://u:pw-two@h2:5673/"])
    shown = repr(bus) + bus.url
    assert "pw-one" not in shown
    assert "pw-two" not in shown
    assert bus.url == "amqp://u:***@h1:5672/, amqp://u:***@h2:5673/"
    assert bus.quorum_group_size == 2
    assert AmqpBus("amqp://u:p@h1/").quorum_group_size is None


def test_tls_options_apply_to_the_amqps_urls_of_a_cluster_and_need_one() -> None:
    with pytest.raises(ConfigError, match="use an amqps:// URL"):
        AmqpBus("amqp://h1/,amqp://h2/", ca_file="/nonexistent.pem")
    AmqpBus("amqp://h1/,amqps://h2/", ca_file="/nonexistent.pem")  # the amqps one gets them at connect


async def test_the_reconnect_pause_doubles_after_each_round_of_nodes_with_jitter_and_a_cap() -> None:
    endpoints = Endpoints(["amqp://a/", "amqp://b/", "amqp://c/"], lambda: None)

    async def pauses(jitter: float) -> list[float]:
        conn = ClusterConnection(
            endpoints, reconnect_interval=1.0, max_reconnect_interval=8.0, jitter=lambda: jitter
        )
        seen = []
        for failed in range(0, 16, 3):
            conn._failed = failed
            seen.append(conn.next_interval())
        await conn.close()
        return seen

    assert await pauses(1.0) == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert await pauses(0.0) == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


def test_aio_pikas_per_attempt_method_that_the_layer_wraps_still_exists() -> None:
    assert callable(getattr(aio_pika.RobustConnection, "_RobustConnection__connect_transport", None))


async def test_connection_failed_names_every_url_tried_with_every_password_masked() -> None:
    urls = [f"amqp://u:secret-{i}@127.0.0.1:{_closed_port()}/" for i in range(2)]
    with pytest.raises(ConnectionFailed) as caught:
        await connect(urls, connect_timeout=2)
    text = str(caught.value)
    assert "secret-" not in text
    assert "at any of 2 URLs" in text
    for url in urls:
        assert url.replace(url.split(":")[2].split("@")[0], "***") in text


@pytest.mark.integration
async def test_the_first_url_that_answers_is_used(amqp_url: str) -> None:
    dead = f"amqp://guest:guest@127.0.0.1:{_closed_port()}/"
    bus = await connect(f"{dead},{amqp_url}", connect_timeout=3)
    try:
        assert isinstance(bus, AmqpBus)
        assert bus.node == "127.0.0.1:5672"
    finally:
        await bus.close()
    assert bus.node is None


class _NackOnce:
    """An underlay channel whose first publish is nacked (as RabbitMQ does after a quorum leader is lost)."""

    def __init__(self, real: object) -> None:
        self.real = real
        self.nacked = 0

    async def basic_publish(self, *args: object, **kwargs: object) -> object:
        if not self.nacked:
            self.nacked += 1
            raise DeliveryError(None, Basic.Nack(delivery_tag=1))
        return await self.real.basic_publish(*args, **kwargs)  # type: ignore[attr-defined]


@pytest.mark.integration
async def test_a_nacked_publish_is_sent_again_on_a_fresh_channel(amqp_url: str) -> None:
    queue = f"relaybus.test.cluster.nack.{uuid.uuid4().hex[:8]}"
    async with AmqpBus(amqp_url, reconnect_timeout=10) as bus:
        await bus.declare_queue(queue, durable=False)
        try:
            nacked = bus._publisher.channel
            assert nacked is not None
            fake = _NackOnce(await nacked.get_underlay_channel())

            async def underlay() -> object:
                return fake

            nacked.get_underlay_channel = underlay  # type: ignore[method-assign]
            await bus.publish(OutgoingMessage(routing_key=queue, body=b"once", exchange=""))
            assert fake.nacked == 1
            assert bus._publisher.channel is not nacked
            got: list[bytes] = []

            async def handler(delivery: object) -> None:
                got.append(delivery.body)  # type: ignore[attr-defined]
                await delivery.ack()  # type: ignore[attr-defined]

            await bus.consume(queue, handler)
            await eventually(lambda: got == [b"once"])
        finally:
            await bus.delete_queue(queue)


@pytest.mark.integration
async def test_a_publish_nacked_until_the_deadline_fails_with_the_reason(amqp_url: str) -> None:
    async with AmqpBus(amqp_url, reconnect_timeout=1, reconnect_interval=0.1) as bus:

        async def always_nacked() -> object:
            class Nack:
                async def basic_publish(self, *args: object, **kwargs: object) -> None:
                    raise DeliveryError(None, Basic.Nack(delivery_tag=1))

            return Nack()

        publisher = bus._publisher
        original = publisher.renew

        async def keep(conn: object, nacked: object) -> object:
            channel = await original(conn, nacked)  # type: ignore[arg-type]
            channel.get_underlay_channel = always_nacked  # type: ignore[method-assign]
            return channel

        assert publisher.channel is not None
        publisher.channel.get_underlay_channel = always_nacked  # type: ignore[method-assign]
        publisher.renew = keep  # type: ignore[method-assign,assignment]
        with pytest.raises(BusError, match=r"basic.nack.*for 1 s.*no quorum"):
            await bus.publish(OutgoingMessage(routing_key="nowhere", body=b"x", exchange=""))


@pytest.mark.cluster
@pytest.mark.slow
async def test_a_bus_on_a_cluster_sizes_its_quorum_queues_and_moves_to_the_next_node_on_loss(
    cluster: PrivateCluster,
) -> None:
    first, second, _ = cluster.nodes
    queue = f"relaybus.test.cluster.move.{uuid.uuid4().hex[:8]}"
    bus = AmqpBus(cluster.urls, reconnect_timeout=60, reconnect_interval=0.2)
    async with bus:
        assert bus.node == f"127.0.0.1:{first.amqp_port}"
        await bus.declare_queue(queue)
        assert sorted(cluster.queue(queue)["members"]) == sorted(node.name for node in cluster.nodes)
        got: list[bytes] = []

        async def handler(delivery: object) -> None:
            got.append(delivery.body)  # type: ignore[attr-defined]
            await delivery.ack()  # type: ignore[attr-defined]

        await bus.consume(queue, handler)
        first.kill()
        await eventually(lambda: bus.node == f"127.0.0.1:{second.amqp_port}", timeout=60)
        await bus.publish(OutgoingMessage(routing_key=queue, body=b"after the loss", exchange=""))
        await eventually(lambda: got == [b"after the loss"], timeout=60)
        assert bus.reconnect_count == 1
        await bus.delete_queue(queue)
