"""Private RabbitMQ nodes (tests/rabbitmq_nodes.py): a node of our own answers AMQP on its own port, survives
SIGKILL and restart, and is gone after; three of them form one cluster."""

from __future__ import annotations

import socket

import aio_pika
import pytest

from tests.rabbitmq_nodes import PrivateCluster, PrivateNode

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return True
    except OSError:
        return False


async def _declare_and_count(url: str, queue: str) -> int:
    connection = await aio_pika.connect(url, timeout=30)
    async with connection:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, durable=True, arguments={"x-queue-type": "quorum"})
        return declared.declaration_result.message_count or 0


async def test_a_private_node_answers_on_its_own_port_survives_sigkill_and_is_removed_after() -> None:
    node = PrivateNode.create("rbtest")
    assert node.amqp_port != 5672
    with node:
        assert node.running()
        assert node.url.endswith(f":{node.amqp_port}/")
        assert await _declare_and_count(node.url, "private-node-check") == 0
        assert "rbtest" in node.ctl("status").stdout
        node.kill()
        assert not node.running()
        assert not _accepts(node.amqp_port)
        node.start()
        assert node.running()
        assert await _declare_and_count(node.url, "private-node-check") == 0
    assert not node.running()
    assert not node.home.exists()


async def test_three_private_nodes_form_one_cluster(cluster: PrivateCluster) -> None:
    # A killed member rejoining is shown by tests/reliability/test_cluster_node_loss.py (it restarts one).
    assert cluster.running_nodes() == sorted(node.name for node in cluster.nodes)
    assert len({node.amqp_port for node in cluster.nodes}) == 3
    assert all(node.amqp_port != 5672 for node in cluster.nodes)
