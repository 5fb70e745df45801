"""The seed's way of running tasks, as a baseline: one ``asyncio.run()`` per task, one task after another.

Each task gets a new event loop and, with it, a new HTTP client (a client cannot outlive its loop): what the
first version of this project did. The functions are ``bench/executor.py``'s (the executor benchmark); this
module runs them in a child process of the main benchmark and reports one ``RESULT`` line.

    python -m bench.seed sequential --url OPENAI_BASE_URL --n 3
    python -m bench.seed costs

``costs``: the per-task price of that design, split in two: ``asyncio.run()`` of an empty coroutine, and an
``asyncio.run()`` that builds and closes an httpx client (the 10-20 ms the seed paid per task).
"""

from __future__ import annotations

import argparse
import time

from bench.common import emit_result
from bench.executor import _client_only, _noop, mean_cost, old_design


def sequential(url: str, n: int) -> dict[str, float]:
    """``n`` tasks, each in its own ``asyncio.run()`` with its own client, in sequence: the wall time."""
    start = time.perf_counter()
    old_design(url, n)
    return {"n": n, "wall_s": time.perf_counter() - start}


def costs(repeat: int) -> dict[str, float]:
    """Mean per-task costs in ms: the loop alone, and the loop with a client built and closed in it."""
    loop_ms = mean_cost(_noop, repeat) * 1000
    client_ms = mean_cost(_client_only, repeat) * 1000
    return {"asyncio_run_ms": loop_ms, "asyncio_run_with_client_ms": client_ms}


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench.seed")
    parser.add_argument("cmd", choices=("sequential", "costs"))
    parser.add_argument("--url")
    parser.add_argument("--n", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=50)
    args = parser.parse_args()
    if args.cmd == "sequential":
        if not args.url:
            parser.error("sequential needs --url")
        emit_result(sequential(args.url, args.n))
    else:
        emit_result(costs(args.repeat))


if __name__ == "__main__":
    main()
