"""``connect(url)`` picks the bus from the URL; bad URLs and unreachable brokers fail in one clear line."""

from __future__ import annotations

import asyncio

import pytest

from relaybus.bus.amqp import AmqpBus
from relaybus.bus.base import Bus, OutgoingMessage
from relaybus.bus.connect import connect
from relaybus.bus.memory import MemoryBus
from relaybus.exceptions import ConfigError, ConnectionFailed

SECRET = "pw-Zx81-secret"


async def test_memory_url_gives_a_connected_memory_bus() -> None:
    bus = await connect("memory://")
    try:
        assert isinstance(bus, MemoryBus)
        assert isinstance(bus, Bus)
        await bus.declare_queue("q", bindings=["task.#"])
        await bus.publish(OutgoingMessage(body=b"{}", routing_key="task.x"))
        assert await bus.purge_queue("q") == 1
    finally:
        await bus.close()


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("", "no bus URL"),
        ("   ", "no bus URL"),
        ("redis://localhost:6379/", "unknown bus URL scheme 'redis'"),
        ("localhost:5672", "unknown bus URL scheme 'localhost'"),
        ("just-a-word", "unknown bus URL scheme none"),
        (f"amqp://guest:{SECRET}@/", "no host"),
        (f"amqp://guest:{SECRET}@localhost:99999/", "invalid AMQP URL"),
        (f"amqp://guest:{SECRET}@localhost:port/", "invalid AMQP URL"),
        (f"amqp://guest:{SECRET}@[::1/", "invalid"),
    ],
)
async def test_bad_urls_are_config_errors_naming_the_url_with_password_masked(url: str, problem: str) -> None:
    with pytest.raises(ConfigError) as err:
        await connect(url)
    text = str(err.value)
    assert problem in text
    assert "\n" not in text
    assert SECRET not in text
    assert "amqp://" in text  # says what a good URL looks like


async def test_options_pass_through_and_unknown_ones_are_config_errors() -> None:
    with pytest.raises(ConfigError, match=r"bad option .no_such_option. .*no bus takes it"):
        await connect("memory://", no_such_option=1)  # type: ignore[call-arg]
    small = await connect("memory://", max_body_bytes=10, close_timeout=1.0)
    try:
        assert isinstance(small, MemoryBus)
        assert small.url == "memory://"
        assert (small.max_body_bytes, small.close_timeout) == (10, 1.0)
    finally:
        await small.close()
    with pytest.raises(ConfigError, match="no_such_option"):
        await connect("amqp://guest:guest@127.0.0.1:1/", no_such_option=1)  # type: ignore[call-arg]
    with pytest.raises(ConfigError, match="use an amqps:// URL"):
        await connect("amqp://guest:guest@127.0.0.1:1/", ca_file="/tmp/ca.pem")
    with pytest.raises(ConfigError, match="cannot load TLS files"):
        await connect("amqps://guest:guest@127.0.0.1:1/", ca_file="/nonexistent/ca.pem")
    with pytest.raises(ConfigError, match="reconnect_timeout must be > 0"):
        await connect("amqp://guest:guest@127.0.0.1:1/", reconnect_timeout=0)


@pytest.mark.parametrize(
    ("url", "option", "value", "words"),
    [
        ("memory://", "ca_file", "/tmp/ca.pem", "it is an option of amqp:// buses"),
        ("memory://", "reconnect_timeout", 5.0, "it is an option of amqp:// buses"),
        (f"amqp://guest:{SECRET}@127.0.0.1:1/", "close_timeout", 5.0, "it is an option of memory:// buses"),
    ],
)
async def test_an_option_of_the_other_kind_of_bus_is_a_config_error_naming_it(
    url: str, option: str, value: object, words: str
) -> None:
    with pytest.raises(ConfigError) as err:
        await connect(url, **{option: value})  # type: ignore[misc]
    text = str(err.value)
    assert f"bad option {option!r}" in text
    assert words in text
    assert "max_body_bytes" in text  # says what this bus does take
    assert SECRET not in text


async def test_an_option_of_the_wrong_type_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="max_body_bytes must be > 0"):
        await connect("memory://", max_body_bytes="big")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="connect_timeout must be > 0"):
        await connect("amqp://guest:guest@127.0.0.1:1/", connect_timeout="slow")  # type: ignore[arg-type]


async def test_unreachable_broker_fails_fast_in_one_line_with_the_fix() -> None:
    with pytest.raises(ConnectionFailed) as err:
        await asyncio.wait_for(connect(f"amqp://guest:{SECRET}@127.0.0.1:1/vh", connect_timeout=3), 30)
    text = str(err.value)
    assert text.startswith("cannot connect to RabbitMQ at amqp://guest:***@127.0.0.1:1/vh (")
    assert "rabbitmq-server -detached" in text
    assert "--amqp-url" in text
    assert "\n" not in text
    assert SECRET not in text + repr(err.value)


@pytest.mark.integration
async def test_amqp_url_gives_a_connected_amqp_bus(amqp_url: str) -> None:
    bus = await connect(amqp_url, max_body_bytes=4096, connect_timeout=5)
    try:
        assert isinstance(bus, AmqpBus)
        assert bus.is_connected
        assert bus.max_body_bytes == 4096
    finally:
        await bus.close()
    assert not bus.is_connected


@pytest.mark.integration
async def test_tls_to_a_plain_port_says_to_check_tls(amqp_url: str) -> None:
    plain = amqp_url.replace("amqp://", "amqps://", 1)
    with pytest.raises(ConnectionFailed, match="speaks TLS"):
        await asyncio.wait_for(connect(plain, connect_timeout=3), 30)
