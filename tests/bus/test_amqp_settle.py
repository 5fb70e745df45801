"""``SettleBatch``: the settles of one loop turn go out as one write; a settled run at the front as one
multiple ack that never covers a delivery still being handled; nacks before any range that holds them."""

from __future__ import annotations

import asyncio
from typing import Any

import aiormq
import pytest
from pamqp import frame as pamqp_frame
from pamqp.commands import Basic

from relaybus.bus.amqp_settle import SettleBatch


class FakeChannel:
    """What a ``SettleBatch`` uses of an aiormq channel: its number, whether it is closed, the connection's
    write queue (as small as aiormq's)."""

    def __init__(self, maxsize: int = 10) -> None:
        self.number = 3
        self.is_closed = False
        self.write_queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=maxsize)

    def writes(self) -> list[list[tuple[str, int, bool]]]:
        """Each write so far, as the (verb, delivery tag, multiple or requeue) of its frames."""
        out = []
        while not self.write_queue.empty():
            out.append(frames(self.write_queue.get_nowait().payload))
        return out


def frames(payload: bytes) -> list[tuple[str, int, bool]]:
    found = []
    while payload:
        used, channel, method = pamqp_frame.unmarshal(payload)
        assert channel == 3
        payload = payload[used:]
        if isinstance(method, Basic.Ack):
            found.append(("ack", method.delivery_tag, method.multiple))
        else:
            assert isinstance(method, Basic.Nack)
            found.append(("nack", method.delivery_tag, method.requeue))
    return found


async def turn() -> None:
    await asyncio.sleep(0)


def batch(channel: FakeChannel, delivered: int) -> SettleBatch:
    settles = SettleBatch(channel)  # type: ignore[arg-type]
    for tag in range(1, delivered + 1):
        settles.delivered(tag)
    return settles


async def test_acks_of_one_turn_in_order_are_one_multiple_ack_written_after_the_turn() -> None:
    channel = FakeChannel()
    settles = batch(channel, 5)
    for tag in (1, 2, 3):
        settles.ack(tag)
    assert channel.writes() == []  # nothing waits for the writer, nothing written yet
    await turn()
    assert channel.writes() == [[("ack", 3, True)]]
    settles.ack(5)
    settles.ack(4)
    await turn()
    assert channel.writes() == [[("ack", 5, True)]]


async def test_a_range_never_covers_a_delivery_still_handled_and_later_covers_those_acked_alone() -> None:
    channel = FakeChannel()
    settles = batch(channel, 4)
    settles.ack(2)
    settles.ack(4)
    await turn()
    assert channel.writes() == [[("ack", 2, False), ("ack", 4, False)]]  # 1 and 3 are still being handled
    settles.ack(1)
    settles.ack(3)
    await turn()
    assert channel.writes() == [[("ack", 3, True)]]  # 1-3 settled; 4 was already acked alone
    assert settles.pending == 0


async def test_a_nack_goes_out_before_the_range_that_holds_its_tag() -> None:
    channel = FakeChannel()
    settles = batch(channel, 4)
    settles.ack(1)
    settles.nack(2, requeue=True)
    settles.ack(3)
    settles.nack(4, requeue=False)
    await turn()
    assert channel.writes() == [[("nack", 2, True), ("nack", 4, False), ("ack", 3, True)]]


async def test_settling_on_a_closed_channel_raises_and_a_batch_whose_channel_closed_is_dropped() -> None:
    channel = FakeChannel()
    settles = batch(channel, 2)
    settles.ack(1)
    channel.is_closed = True
    await turn()
    assert channel.writes() == []
    with pytest.raises(aiormq.exceptions.ChannelInvalidStateError):
        settles.ack(2)


async def test_a_full_write_queue_is_waited_for_and_what_comes_meanwhile_follows_in_order() -> None:
    channel = FakeChannel(maxsize=1)
    channel.write_queue.put_nowait(type("Frame", (), {"payload": b""})())  # the writer is behind
    settles = batch(channel, 3)
    settles.ack(1)
    await turn()
    settles.nack(3, requeue=True)  # while the first write waits for room
    await turn()
    assert channel.write_queue.get_nowait().payload == b""  # room at last
    for _ in range(3):
        await turn()
    assert channel.writes() == [[("ack", 1, True)]]
    for _ in range(3):
        await turn()
    assert channel.writes() == [[("nack", 3, True)]]
