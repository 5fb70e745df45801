"""A claiming process for the contract suite: ``python -m tests.state.claimers URL WORKER ID...``.

It opens the store, prints ``ready``, waits for a line on stdin (so that every sibling claims at the same
moment), claims each id once (all at once) and prints the ids it acquired as one JSON list.
"""

from __future__ import annotations

import asyncio
import json
import sys
from uuid import UUID

from relaybus.log import configure_logging
from relaybus.state import store_from_url


async def main(url: str, worker: str, ids: list[UUID]) -> None:
    configure_logging(level="WARNING", json=True)  # on stderr: stdout carries the answer
    async with store_from_url(url) as store:
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.readline)
        claims = await asyncio.gather(
            *(store.claim(task_id, worker=worker, lease_s=60, digest="same") for task_id in ids)
        )
    print(json.dumps([str(claim.task_id) for claim in claims if claim.acquired]), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], [UUID(arg) for arg in sys.argv[3:]]))
