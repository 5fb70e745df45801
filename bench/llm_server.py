"""A ``FakeLLMServer`` in its own process, so serving the calls does not load the processes being measured.

    python -m bench.llm_server --latency 0.2 [--latency 2.0 ...]

Prints ``READY {"urls": [...]}`` (one OpenAI base URL per ``--latency``, in order) and serves until SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib

from bench.common import emit, wait_for_stop_signal
from relaybus.testing.fake_llm import FakeLLMServer


async def serve(latencies: list[float]) -> None:
    async with contextlib.AsyncExitStack() as stack:
        servers = [
            await stack.enter_async_context(FakeLLMServer(latency_s=latency, record_calls=False))
            for latency in latencies
        ]
        emit("READY", {"urls": [server.openai_base_url for server in servers]})
        await wait_for_stop_signal()


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench.llm_server")
    parser.add_argument("--latency", type=float, action="append", required=True)
    asyncio.run(serve(parser.parse_args().latency))


if __name__ == "__main__":
    main()
