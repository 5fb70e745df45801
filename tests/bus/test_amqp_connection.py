"""``lost_connection``: which errors mean "the connection went away" (wait and try again) for a publish."""

from __future__ import annotations

import asyncio

from relaybus.bus.amqp_connection import lost_connection


async def test_a_cancelled_error_nobody_asked_for_is_a_lost_connection_and_a_real_cancel_is_not() -> None:
    assert lost_connection(asyncio.CancelledError())  # aiormq cancelled a confirm, not this task
    assert lost_connection(ConnectionResetError())
    assert not lost_connection(ValueError("a bug"))

    async def cancelled() -> bool:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError as exc:
            return lost_connection(exc)
        return True

    task = asyncio.create_task(cancelled())
    await asyncio.sleep(0)
    task.cancel()
    assert await task is False
