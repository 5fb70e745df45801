"""``cancel_and_wait``: stop a background task for good, even when one cancellation is lost on the way."""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["cancel_and_wait"]


async def cancel_and_wait(task: asyncio.Task[Any], *, again_s: float = 0.1) -> None:
    """Cancel ``task`` and return once it is done, cancelling it again every ``again_s`` seconds meanwhile.

    One cancellation is not always enough to stop a loop: Python 3.11's ``asyncio.wait_for`` returns a result
    that arrives together with the cancellation and drops the cancellation, and a library may turn it into
    an error of its own that the loop handles and goes on. A close that waited on such a loop after a single
    ``cancel()`` waited forever. What the task raised is left on it (``task.exception()``), not raised here.
    """
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=again_s)
