"""The machine's floor for the LLM-bound case: the same calls from one process with aiohttp, no bus at all.

    python -m bench.llm_floor client --url URL --points '[[1000, 1000]]' --concurrency 200

What no framework on this machine can beat: the fake LLM server shares the machine's two cores, and its own
cost per request (~0.2 ms of CPU) delays each wave of calls, so even a client with no broker in the way
needs more than the ideal ``n / concurrency x latency``. ``make bench`` reports it beside relaybus, the raw
aio-pika service and Celery, and from it the largest ratio to Celery the machine allows.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import aiohttp

from bench.common import measure_points, run_measured


async def client(url: str, points: list[list[int]], prompt: str, concurrency: int) -> None:
    connector = aiohttp.TCPConnector(limit=concurrency)  # the worker's and the raw service's concurrency
    async with aiohttp.ClientSession(connector=connector) as session:

        async def call(text: str) -> Any:
            payload = {"model": "fake", "messages": [{"role": "user", "content": text}]}
            async with session.post(f"{url}/chat/completions", json=payload) as response:
                answer = await response.json()
            return answer["choices"][0]["message"]["content"]

        await measure_points(call, points, prompt, None)


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench.llm_floor")
    sub = parser.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("client")
    c.add_argument("--url", required=True, help="the fake LLM server's OpenAI base URL")
    c.add_argument("--points", required=True, help="JSON list of [n, window] pairs")
    c.add_argument("--prompt", default="hello")
    c.add_argument("--concurrency", type=int, required=True)
    args = parser.parse_args()
    run_measured(client(args.url, json.loads(args.points), args.prompt, args.concurrency))


if __name__ == "__main__":
    main()
