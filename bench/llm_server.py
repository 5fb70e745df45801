"""A ``FakeLLMServer`` in its own process, so serving the calls does not load the processes being measured.

    python -m bench.llm_server --latency 0.2 [--latency 2.0 ...] [--chunk-size 4] [--chunk-delay 0.002] \
        [--words]

Prints ``READY {"urls": [...]}`` (one OpenAI base URL per ``--latency``, in order) and serves until SIGTERM.
``--chunk-size`` / ``--chunk-delay`` set how streamed answers are cut; with ``--words`` a prompt ``n=<count>``
is answered with that many words (``tok``), as ``bench.streaming`` asks.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib

from bench.common import emit, wait_for_stop_signal
from relaybus.testing.fake_llm import FakeLLMServer

WORD = "tok "


def words_reply(prompt: str) -> str:
    """The answer to ``n=<count>``: that many words (20 for any other prompt)."""
    count = int(prompt.removeprefix("n=")) if prompt.startswith("n=") else 20
    return WORD * count


async def serve(
    latencies: list[float], *, chunk_size: int = 4, chunk_delay_s: float = 0.0, words: bool = False
) -> None:
    async with contextlib.AsyncExitStack() as stack:
        servers = [
            await stack.enter_async_context(
                FakeLLMServer(
                    latency_s=latency,
                    record_calls=False,
                    chunk_size=chunk_size,
                    chunk_delay_s=chunk_delay_s,
                    reply=words_reply if words else None,
                )
            )
            for latency in latencies
        ]
        emit("READY", {"urls": [server.openai_base_url for server in servers]})
        await wait_for_stop_signal()


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench.llm_server")
    parser.add_argument("--latency", type=float, action="append", required=True)
    parser.add_argument("--chunk-size", type=int, default=4)
    parser.add_argument("--chunk-delay", type=float, default=0.0)
    parser.add_argument("--words", action="store_true")
    args = parser.parse_args()
    asyncio.run(
        serve(args.latency, chunk_size=args.chunk_size, chunk_delay_s=args.chunk_delay, words=args.words)
    )


if __name__ == "__main__":
    main()
