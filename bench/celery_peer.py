"""The Celery peer: RabbitMQ broker, ``rpc://`` result backend, JSON only.

    celery -A bench.celery_peer worker -P solo --prefetch-multiplier 32 -Q QUEUE ...   (no-op round trip)
    celery -A bench.celery_peer worker -P threads -c 100 -Q QUEUE ...                  (LLM-bound)
    python -m bench.celery_peer client --task noop|llm --points '[[n, window], ...]'

Configured by the environment the benchmark driver sets: ``RELAYBUS_BENCH_CELERY_QUEUE`` (the task queue,
unique per run) and ``RELAYBUS_BENCH_LLM_URL`` (the fake LLM server's OpenAI base URL, for ``llm``).
Celery's defaults otherwise: persistent messages, a classic durable queue, the task acked when the worker
takes it (before it runs). The solo pool with prefetch multiplier 32 was Celery's best no-op figure here.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import threading
import time
from typing import Any

from celery import Celery

from bench.common import CpuMeter, RunResult, amqp_url, emit_result

QUEUE_ENV = "RELAYBUS_BENCH_CELERY_QUEUE"
LLM_URL_ENV = "RELAYBUS_BENCH_LLM_URL"

app = Celery("bench_celery", broker=amqp_url(), backend="rpc://")
app.conf.update(
    task_default_queue=os.environ.get(QUEUE_ENV, "bench.celery"),
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    worker_prefetch_multiplier=32,
    broker_connection_retry_on_startup=True,
    task_ignore_result=False,
    result_expires=None,
)

_local = threading.local()


def _http() -> Any:
    # One client per worker thread is what a Celery user with the threads pool would write; httpx's sync
    # client is thread-safe, but one per thread avoids lock contention on its pool.
    client = getattr(_local, "client", None)
    if client is None:
        import httpx

        client = _local.client = httpx.Client(timeout=60)
    return client


@app.task(name="bench.noop")
def noop(prompt: str) -> None:
    return None


@app.task(name="bench.llm")
def llm(prompt: str) -> str:
    base = os.environ[LLM_URL_ENV]
    payload = {"model": "fake", "messages": [{"role": "user", "content": prompt}]}
    response = _http().post(f"{base}/chat/completions", json=payload)
    response.raise_for_status()
    return str(response.json()["choices"][0]["message"]["content"])


def run_point(task: Any, n: int, window: int, prompt: str, budget_s: float = 300.0) -> RunResult:
    """``n`` calls of ``task``: all sent at once if ``window >= n``, else at most ``window`` in flight.

    The whole point gets ``budget_s``; results still missing then count as errors.
    """
    errors = 0
    latencies: list[float] = []
    start = time.perf_counter()
    deadline = start + budget_s

    def left() -> float:
        return max(0.01, deadline - time.perf_counter())

    if window >= n:
        pending = [task.apply_async((prompt,)) for _ in range(n)]
        for result in pending:
            try:
                result.get(timeout=left())
            except Exception:
                errors += 1
        return RunResult(n, time.perf_counter() - start, [], errors)
    in_flight: collections.deque[tuple[float, Any]] = collections.deque()
    sent = 0
    while sent < n or in_flight:
        while sent < n and len(in_flight) < window:
            in_flight.append((time.perf_counter(), task.apply_async((prompt,))))
            sent += 1
        began, result = in_flight.popleft()
        try:
            result.get(timeout=left())
        except Exception:
            errors += 1
        latencies.append(time.perf_counter() - began)
    return RunResult(n, time.perf_counter() - start, latencies, errors)


def client(task_name: str, points: list[list[int]], prompt: str, server_pid: int | None) -> None:
    task = {"noop": noop, "llm": llm}[task_name]
    meter = CpuMeter(server_pid)
    run_point(task, min(50, points[0][0]), 10, prompt)  # warm-up
    results = []
    for n, window in points:
        cpu: list[float] = []
        with meter.measure(cpu):
            result = run_point(task, n, window, prompt)
        result.cpu_client_s, result.cpu_server_s = cpu
        results.append(result.summary())
    emit_result(results)


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench.celery_peer")
    sub = parser.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("client")
    c.add_argument("--task", choices=("noop", "llm"), default="noop")
    c.add_argument("--queue", required=True, help="the queue the worker consumes (-Q)")
    c.add_argument("--points", required=True, help="JSON list of [n, window] pairs")
    c.add_argument("--prompt", default="hello")
    c.add_argument("--server-pid", type=int, help="also report this process's CPU per task")
    args = parser.parse_args()
    app.conf.task_default_queue = args.queue
    client(args.task, json.loads(args.points), args.prompt, args.server_pid)


if __name__ == "__main__":
    main()
