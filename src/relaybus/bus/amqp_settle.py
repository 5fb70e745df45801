"""``SettleBatch``: the acks and nacks of one consumer channel, written once per loop turn.

``basic_ack`` per delivery builds a frame, puts it on the connection's write queue and waits until the
writer has sent it: a loop turn and a socket write per delivery, in the worker and again in every caller's
reply consumer. AMQP answers no settle (the broker confirms nothing), so nothing is gained by waiting: the
settles a loop turn makes go out together, as one write, and a run of acked deliveries as one multiple ack
(``Basic.Ack(multiple=True)`` settles every delivery of the channel up to its tag that is still unsettled).

The order on the wire keeps what each frame means: a nack goes out before a multiple ack whose range holds
its tag, and a multiple ack covers only deliveries already settled here (acked in this batch, or settled
alone before), never one still being handled. A batch whose channel has closed is dropped: the broker has
returned its unsettled deliveries to their queues already (at-least-once).
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import cast

import aiormq
from aiormq.abc import ChannelFrame
from pamqp.commands import Basic

__all__ = ["SettleBatch"]

_ACK = None  # a verdict: ack; True / False: nack with / without requeue


class SettleBatch:
    """The settles of one aiormq channel's deliveries. Call :meth:`delivered` for each delivery as it
    arrives (in delivery-tag order), then :meth:`ack` or :meth:`nack` once for it."""

    __slots__ = ("_channel", "_loop", "_putting", "_scheduled", "_sent_alone", "_unsettled", "_verdicts")

    def __init__(self, channel: aiormq.abc.AbstractChannel) -> None:
        self._channel = channel
        self._loop = asyncio.get_running_loop()
        self._unsettled: deque[int] = deque()  # delivered and not yet covered on the wire, in tag order
        self._verdicts: dict[int, bool | None] = {}  # settled here, not yet written
        self._sent_alone: set[int] = set()  # written alone, out of order: still in ``_unsettled``
        self._scheduled = False
        self._putting: asyncio.Future[None] | None = None  # a write waiting for room in the write queue

    @property
    def channel(self) -> aiormq.abc.AbstractChannel:
        return self._channel

    @property
    def pending(self) -> int:
        """Settles made and not yet written."""
        return len(self._verdicts)

    def delivered(self, tag: int) -> None:
        self._unsettled.append(tag)

    def ack(self, tag: int) -> None:
        self._settle(tag, _ACK)

    def nack(self, tag: int, *, requeue: bool) -> None:
        self._settle(tag, requeue)

    def _settle(self, tag: int, verdict: bool | None) -> None:
        if self._channel.is_closed:
            raise aiormq.exceptions.ChannelInvalidStateError(f"{self._channel!r} closed")
        self._verdicts[tag] = verdict
        if not self._scheduled and self._putting is None:
            self._scheduled = True
            self._loop.call_soon(self._flush)

    def _frames(self) -> list[Basic.Ack | Basic.Nack]:
        verdicts, unsettled, alone = self._verdicts, self._unsettled, self._sent_alone
        frames: list[Basic.Ack | Basic.Nack] = []
        covered: int | None = None  # the highest tag of the settled run at the front
        while unsettled:
            tag = unsettled[0]
            if tag in alone:
                alone.discard(tag)
            elif tag in verdicts:
                verdict = verdicts.pop(tag)
                if verdict is _ACK:
                    covered = tag
                else:
                    frames.append(Basic.Nack(delivery_tag=tag, multiple=False, requeue=verdict))
            else:
                break  # still being handled: nothing at or after it may be acked as a range
            unsettled.popleft()
        if covered is not None:
            frames.append(Basic.Ack(delivery_tag=covered, multiple=True))
        for tag, verdict in verdicts.items():  # settled out of order: each alone
            if verdict is _ACK:
                frames.append(Basic.Ack(delivery_tag=tag, multiple=False))
            else:
                frames.append(Basic.Nack(delivery_tag=tag, multiple=False, requeue=verdict))
            alone.add(tag)
        verdicts.clear()
        return frames

    def _flush(self) -> None:
        self._scheduled = False
        channel = self._channel
        if channel.is_closed:
            self._verdicts.clear()
            return
        frames = self._frames()
        if not frames:
            return
        frame = ChannelFrame.marshall(channel_number=channel.number, frames=frames)
        write_queue = cast(aiormq.Channel, channel).write_queue  # the connection's, shared by its channels
        try:
            write_queue.put_nowait(frame)
        except asyncio.QueueFull:  # the writer is behind: wait for room, and write what comes meanwhile after
            self._putting = putting = asyncio.ensure_future(write_queue.put(frame))
            putting.add_done_callback(self._written)

    def _written(self, putting: asyncio.Future[None]) -> None:
        self._putting = None
        if not putting.cancelled():
            putting.exception()  # retrieved: a closed connection drops the frame, as above
        if self._verdicts and not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._flush)
