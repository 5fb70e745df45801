"""``python -m bench`` (``make bench``): every benchmark of issue 6, baselines measured in the same run.

1. No-op round trip over RabbitMQ, worker in its own process: relaybus (``ProjectOrchestrator`` ->
   ``relaybus worker bench.agents:NoopAgent`` -> result) against a raw aio-pika RPC client/server with the
   same guarantees and against Celery (solo pool, prefetch multiplier 32, ``rpc://``), at several
   concurrencies (the plot) and with all tasks in flight at once (the headline); also the MemoryBus.
2. LLM-bound: 1,000 tasks of one 0.2 s call to the fake LLM server, one worker at concurrency 200 (ideal
   1.0 s), against Celery with 100 threads, raw aio-pika + aiohttp on the same calls, and the same calls
   with no bus at all (``bench/llm_floor.py``: the machine's floor).
3. The seed claim: 3 x 2 s and 100 x 2 s, sequential ``asyncio.run()`` per task vs relaybus.
4. Memory: RSS of idle workers (relaybus, raw aio-pika consumer, Celery), and of a relaybus worker with 1,000
   tasks in flight.
5. How the cost grows with work (``bench/sweep.py``, each sweep against its own first point): the round trip
   against 1, 2, 4 worker processes and 1, 10, 100 agents in one worker; the orchestrator at 1k, 10k, 50k
   tasks in flight (``bench/scale.py``). ``--no-scaling`` leaves them out, ``--only scaling`` runs them alone.
6. What each feature costs against its own plain path (``bench/features.py``): the state store against none,
   telemetry against none, streaming against the provider direct and against not streaming, the agent loop
   against the bare provider call, the HTTP gateway against an orchestrator, each with its issue's target.
   ``--no-features`` leaves them out, ``--only features`` runs them alone.

The machine is noisy: each figure is the median of ``--reps`` repetitions with the range shown, the
frameworks take turns within each repetition, and ratios are taken per repetition (paired) before the median.
Every child process is stopped and every queue deleted at the end, whatever happened.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import Any

from bench import broker
from bench.common import (
    BIN,
    LLM_FLOOR,
    READY,
    RESULT,
    ROOT,
    Child,
    Children,
    amqp_url,
    loop_name,
    unique,
)

AGENT_NAME_ENV = "RELAYBUS_BENCH_AGENT_NAME"
CLIENT_TIMEOUT_S = 150.0  # one client process, all its points; the largest takes ~10 s here


@dataclass(frozen=True)
class Sizes:
    """How big each benchmark is; ``full`` is what ``make bench`` runs."""

    reps: int
    sweep: tuple[tuple[int, int], ...]  # (tasks, in flight) for the plot; the last is all-at-once
    headline_n: int
    llm_n: int
    llm_concurrency: int
    llm_latency_s: float
    seed_latency_s: float
    seed_small: int
    seed_big: int
    inflight_n: int
    worker_prefetch: int = 1000
    celery: bool = True
    faststream: bool = True
    executor_table: bool = True
    scaling: bool = True  # the sweeps of bench/sweep.py, at SWEEP_SIZES[mode]
    features: bool = True  # bench/features.py (quick sizes in quick mode)

    @property
    def points(self) -> list[list[int]]:
        return [[n, w] for n, w in self.sweep] + [[self.headline_n, self.headline_n]]


FULL = Sizes(
    reps=3,
    sweep=((300, 1), (1000, 10), (3000, 100), (5000, 1000)),
    headline_n=5000,
    llm_n=1000,
    llm_concurrency=200,
    llm_latency_s=0.2,
    seed_latency_s=2.0,
    seed_small=3,
    seed_big=100,
    inflight_n=1000,
)
SIZES = {
    "full": FULL,
    "quick": replace(
        FULL,
        reps=2,
        sweep=((100, 1), (300, 10), (1000, 100), (1000, 1000)),
        headline_n=2000,
        executor_table=False,
    ),
    # The smoke test: every part runs, nothing is measured seriously.
    "tiny": replace(
        FULL,
        reps=1,
        sweep=((10, 1), (20, 10)),
        headline_n=20,
        llm_n=20,
        llm_concurrency=20,
        llm_latency_s=0.05,
        seed_latency_s=0.05,
        seed_small=2,
        seed_big=5,
        inflight_n=20,
        worker_prefetch=50,
        celery=False,
        executor_table=False,
        scaling=False,  # tests/bench/test_sweep.py runs the sweeps at their own tiny sizes
        features=False,  # tests/bench/test_features.py covers them
    ),
}


@dataclass
class Report:
    sizes: Sizes
    mode: str
    env: dict[str, Any] = field(default_factory=dict)
    roundtrip: dict[str, list[list[dict[str, Any]]]] = field(default_factory=dict)  # fw -> reps -> points
    llm: dict[str, list[list[dict[str, Any]]]] = field(default_factory=dict)  # fw -> reps -> points
    seed: dict[str, Any] = field(default_factory=dict)  # "relaybus N" -> reps -> points, and the baselines
    rss: dict[str, float] = field(default_factory=dict)
    scaling: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # sweep -> its points
    features: list[dict[str, str]] = field(default_factory=list)  # bench/features.py's rows
    notes: list[str] = field(default_factory=list)
    executor_table: str = ""
    elapsed_s: float = 0.0


# -- processes -----------------------------------------------------------------------------------------------


def relaybus_worker(
    children: Children,
    name: str,
    agent_class: str,
    concurrency: int,
    env: dict[str, str],
    *,
    label: str | None = None,
    specs: Sequence[str] | None = None,
    consumers: dict[str, int] | None = None,
) -> Child:
    """``relaybus worker bench.agents:<agent_class>`` hosting an agent called ``name``, ready to consume.

    ``specs`` replaces the one ``bench.agents:<agent_class>`` (several agents in one process); ready means
    each queue of ``consumers`` (default: this agent's, 1) has that many consumers. ``label`` names the
    child and its log (default ``name``)."""
    child = children.start(
        label or name,
        [
            str(BIN / "relaybus"),
            "--log-json",
            "worker",
            *(specs or [f"bench.agents:{agent_class}"]),
            "--amqp-url",
            amqp_url(),
            "--concurrency",
            str(concurrency),
            "--grace",
            "5",
        ],
        env={AGENT_NAME_ENV: name, **env},
    )
    _wait_consumer(child, consumers or {f"relaybus.agent.{name}": 1})
    return child


def raw_server(children: Children, queue: str, prefetch: int, llm_url: str | None = None) -> Child:
    args = ["serve", "--queue", queue, "--prefetch", str(prefetch)]
    if llm_url:
        args += ["--llm-url", llm_url]
    child = children.python(queue, "bench.raw_amqp", *args)
    child.wait_line(READY, 30)
    return child


def faststream_server(children: Children, queue: str, prefetch: int) -> Child:
    child = children.python(
        queue, "bench.faststream_peer", "serve", "--queue", queue, "--prefetch", str(prefetch)
    )
    child.wait_line(READY, 30)
    return child


def celery_worker(children: Children, queue: str, pool: str, concurrency: int, env: dict[str, str]) -> Child:
    child = children.start(
        queue,
        [
            str(BIN / "celery"),
            "-A",
            "bench.celery_peer",
            "worker",
            "-P",
            pool,
            "-c",
            str(concurrency),
            "-Q",
            queue,
            "--prefetch-multiplier",
            "32",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "--loglevel",
            "WARNING",
        ],
        env={"RELAYBUS_BENCH_CELERY_QUEUE": queue, **env},
    )
    _wait_consumer(child, queue)
    return child


def _wait_consumer(child: Child, queues: str | dict[str, int]) -> None:
    """Until each queue has its count of consumers (a name alone: one)."""

    async def wait(queues: dict[str, int]) -> None:
        for queue, count in queues.items():
            await broker.wait_for_consumer(queue, timeout=60, count=count)

    try:
        asyncio.run(wait({queues: 1} if isinstance(queues, str) else queues))
    except TimeoutError as exc:
        raise RuntimeError(f"{child.name} did not start consuming: {exc}: {child.tail()}") from None


def settle_rss(child: Child, seconds: float = 1.0) -> float:
    time.sleep(seconds)
    return child.rss_mib()


# -- benchmarks ----------------------------------------------------------------------------------------------


def roundtrip(report: Report, children: Children, queues: list[str], log: Any) -> None:
    sizes = report.sizes
    agent = unique("bench-noop")
    raw_queue = unique("bench.raw")
    celery_queue = unique("bench.celery")
    faststream_queue = unique("bench.faststream")
    queues += [f"relaybus.agent.{agent}", raw_queue, celery_queue, faststream_queue]
    worker = relaybus_worker(children, agent, "NoopAgent", sizes.worker_prefetch, {})
    raw = raw_server(children, raw_queue, sizes.worker_prefetch)
    servers = {"relaybus": worker, "raw aio-pika": raw}
    if sizes.faststream:
        servers["faststream"] = faststream_server(children, faststream_queue, sizes.worker_prefetch)
    if sizes.celery:
        servers["celery"] = celery_worker(children, celery_queue, "solo", 1, {})
    report.rss["relaybus worker, idle"] = settle_rss(worker)
    report.rss["raw aio-pika consumer, idle"] = raw.rss_mib()
    if "celery" in servers:
        report.rss["celery worker (solo), idle"] = servers["celery"].rss_mib()
    points = json.dumps(sizes.points)
    raw_client = ("bench.raw_amqp", "client", "--queue", raw_queue, "--points", points, *_pid(raw))
    clients = {
        "relaybus": ("bench.relaybus_side", "client", "--agent", agent, "--points", points, *_pid(worker)),
        "raw aio-pika": raw_client,
        "raw aio-pika, durable reply queue": (*raw_client, "--durable-reply"),
        "relaybus MemoryBus": ("bench.relaybus_side", "memory", "--points", points),
    }
    if "faststream" in servers:
        clients["faststream"] = (
            "bench.faststream_peer",
            "client",
            "--queue",
            faststream_queue,
            "--points",
            points,
            *_pid(servers["faststream"]),
        )
    if "celery" in servers:
        clients["celery"] = (
            "bench.celery_peer",
            "client",
            "--task",
            "noop",
            "--queue",
            celery_queue,
            "--points",
            points,
            *_pid(servers["celery"]),
        )
    take_turns(report, children, clients, report.roundtrip, "round trip", log)
    report.rss["relaybus worker, after the round trips"] = worker.rss_mib()
    report.rss["raw aio-pika consumer, after the round trips"] = raw.rss_mib()
    for name, child in servers.items():
        report.env[f"cpu_s {name} server"] = child.cpu_s()


def _pid(server: Child) -> tuple[str, str]:
    return ("--server-pid", str(server.pid))


def take_turns(
    report: Report,
    children: Children,
    clients: dict[str, tuple[str, ...]],
    sink: dict[str, list[Any]],
    label: str,
    log: Any,
) -> None:
    """Run each client once per repetition, the order rotating, and append its points to ``sink[name]``.

    A client that fails or overruns (e.g. someone restarted the shared broker) is run once more; failing
    again, its repetition is left out (``None``, so ratios still pair the same repetition) with a note.
    """
    names = list(clients)
    for rep in range(report.sizes.reps):
        for name in names[rep % len(names) :] + names[: rep % len(names)]:
            module, *args = clients[name]
            result = None
            for attempt in (1, 2):  # once more if it failed: the shared broker may have been restarted
                try:
                    result = children.run(
                        f"{label.split()[0]}-{name.split()[0]}-{rep}-{attempt}",
                        module,
                        *args,
                        timeout=CLIENT_TIMEOUT_S,
                    )
                    break
                except (RuntimeError, TimeoutError) as exc:
                    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
                    why = f"{lines[0][:120]} ... {lines[-1][:200]}" if len(lines) > 1 else str(exc)[:300]
                    report.notes.append(
                        f"{label}, {name}, repetition {rep + 1}, attempt {attempt} failed: {why}"
                    )
                    log(f"  {label} rep {rep + 1} {name}: FAILED ({why})")
            sink.setdefault(name, []).append(result)  # None: left out, other repetitions stay paired
            if result is None:
                continue
            shown = ", ".join(f"{p['n']} tasks {p['throughput']:.0f}/s {p['wall_s']:.2f}s" for p in result)
            log(f"  {label} rep {rep + 1}/{report.sizes.reps} {name}: {shown}")


def llm_bound(report: Report, children: Children, queues: list[str], log: Any) -> None:
    sizes = report.sizes
    latencies = [sizes.llm_latency_s, sizes.seed_latency_s]
    server = children.python("fake-llm", "bench.llm_server", *[f"--latency={x}" for x in latencies])
    llm_url, seed_url = server.wait_line(READY, 30)["urls"]
    llm_env = {
        "RELAYBUS_LLM_PROVIDER": "openai",
        "RELAYBUS_LLM_MODEL": "fake",
        "OPENAI_BASE_URL": llm_url,
        "RELAYBUS_MAX_CONCURRENCY": str(max(sizes.llm_concurrency, sizes.inflight_n)),
    }
    agent = unique("bench-llm")
    raw_queue = unique("bench.raw-llm")
    celery_queue = unique("bench.celery-llm")
    queues += [f"relaybus.agent.{agent}", raw_queue, celery_queue]
    worker = relaybus_worker(children, agent, "LlmAgent", sizes.llm_concurrency, llm_env)
    raw = raw_server(children, raw_queue, sizes.llm_concurrency, llm_url)
    points = json.dumps([[sizes.llm_n, sizes.llm_n]])
    clients: dict[str, tuple[str, ...]] = {
        "relaybus": ("bench.relaybus_side", "client", "--agent", agent, "--points", points, *_pid(worker)),
        "raw aio-pika + aiohttp": (
            "bench.raw_amqp",
            "client",
            "--queue",
            raw_queue,
            "--points",
            points,
            *_pid(raw),
        ),
    }
    clients[LLM_FLOOR] = (
        "bench.llm_floor",
        "client",
        "--url",
        llm_url,
        "--points",
        points,
        "--concurrency",
        str(sizes.llm_concurrency),
    )
    if sizes.celery:
        celery = celery_worker(children, celery_queue, "threads", 100, {"RELAYBUS_BENCH_LLM_URL": llm_url})
        clients["celery, 100 threads"] = (
            "bench.celery_peer",
            "client",
            "--task",
            "llm",
            "--queue",
            celery_queue,
            "--points",
            points,
            *_pid(celery),
        )
    take_turns(report, children, clients, report.llm, "LLM-bound", log)

    # The seed claim and memory in flight: a worker that can hold every task at once, calls of 2 s.
    seed_agent = unique("bench-seed")
    queues.append(f"relaybus.agent.{seed_agent}")
    seed_env = {**llm_env, "OPENAI_BASE_URL": seed_url}
    concurrency = max(sizes.inflight_n, sizes.seed_big)
    seed_worker = relaybus_worker(children, seed_agent, "LlmAgent", concurrency, seed_env)
    report.rss["relaybus LLM worker, idle"] = settle_rss(seed_worker)
    points = {n: json.dumps([[n, n]]) for n in (sizes.seed_small, sizes.seed_big)}
    seed_clients = {
        f"relaybus {n}": ("bench.relaybus_side", "client", "--agent", seed_agent, "--points", pts)
        for n, pts in points.items()
    }
    take_turns(report, children, seed_clients, report.seed, "seed", log)
    sequential = children.run(
        "seed-sequential",
        "bench.seed",
        "sequential",
        "--url",
        seed_url,
        "--n",
        str(sizes.seed_small),
        timeout=300,
    )
    report.seed["sequential"] = sequential
    log(f"  seed sequential {sizes.seed_small} x {sizes.seed_latency_s:g}s: {sequential['wall_s']:.2f}s")
    report.seed["costs"] = children.run("seed-costs", "bench.seed", "costs", "--repeat", "30", timeout=120)
    log(f"  seed costs: {report.seed['costs']}")

    # Memory with 1,000 tasks in flight: sample the worker's RSS while a client waits for them.
    client = children.python(
        "inflight-client",
        "bench.relaybus_side",
        "client",
        "--agent",
        seed_agent,
        "--points",
        json.dumps([[sizes.inflight_n, sizes.inflight_n]]),
    )
    peak = 0.0
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        peak = max(peak, seed_worker.rss_mib())
        try:
            result = client.wait_line(RESULT, 0.05)
            break
        except TimeoutError:
            continue
    else:
        raise RuntimeError("the in-flight memory client did not finish within 300 s")
    report.rss[f"relaybus LLM worker, {sizes.inflight_n} tasks in flight (peak)"] = peak
    done = result[0]
    report.notes.append(
        f"in-flight memory run: {done['n']} tasks x {sizes.seed_latency_s:g} s in {done['wall_s']:.2f} s"
    )


def collect_env(report: Report) -> None:
    def version(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "not installed"

    report.env.update(
        {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "relaybus": version("relaybus"),
            "aio-pika": version("aio-pika"),
            "aiormq": version("aiormq"),
            "pydantic": version("pydantic"),
            "celery": version("celery"),
            "faststream": version("faststream"),
            "event_loop": loop_name(),
            "rabbitmq": asyncio.run(broker.server_version()),
        }
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_const", const="quick", dest="mode", help="smaller, ~2 min")
    parser.add_argument("--tiny", action="store_const", const="tiny", dest="mode", help=argparse.SUPPRESS)
    parser.add_argument("--reps", type=int, help="repetitions of each figure (default 3, quick 2)")
    parser.add_argument("--only", choices=("roundtrip", "llm", "scaling", "features"), help="run one part")
    parser.add_argument(
        "--no-scaling", action="store_true", help="skip the sweeps over workers, agents, tasks in flight"
    )
    parser.add_argument(
        "--no-features", action="store_true", help="skip what each feature costs (bench/features.py)"
    )
    parser.add_argument("--no-celery", action="store_true", help="skip the Celery peer")
    parser.add_argument("--no-faststream", action="store_true", help="skip the FastStream peer")
    parser.add_argument(
        "--loop",
        choices=("auto", "asyncio", "uvloop"),
        help="the event loop of every measured process (default: as the CLI, uvloop when installed)",
    )
    parser.add_argument("--no-plot", action="store_true", help="write no PNG (no matplotlib needed)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench", help="where RESULTS.md and the PNG go")
    parser.add_argument("--logs", type=Path, help="child process logs (default: a temporary directory)")
    args = parser.parse_args(argv)
    # SIGTERM (make interrupted, a CI timeout) unwinds like Ctrl-C: children stopped, queues deleted.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    mode = args.mode or "full"
    sizes = SIZES[mode]
    if args.reps:
        sizes = replace(sizes, reps=args.reps)
    if args.no_celery or not _installed("celery"):
        sizes = replace(sizes, celery=False)
    if args.no_faststream or not _installed("faststream"):
        sizes = replace(sizes, faststream=False)
    if args.no_scaling:
        sizes = replace(sizes, scaling=False)
    if args.no_features:
        sizes = replace(sizes, features=False)
    if args.loop:
        os.environ["RELAYBUS_EVENT_LOOP"] = args.loop  # inherited by every child, relaybus's and the peers'
    report = Report(sizes, mode)
    logs = args.logs or Path(tempfile.mkdtemp(prefix="relaybus-bench-"))

    def log(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    started = time.monotonic()
    collect_env(report)
    log(f"relaybus bench ({mode}): child logs in {logs}")
    queues: list[str] = []
    try:
        with Children(logs) as children:
            if args.only in (None, "roundtrip"):
                log("round trip (no-op agent) ...")
                roundtrip(report, children, queues, log)
                children.stop_all()
            if args.only in (None, "llm"):
                log("LLM-bound, seed claim, memory in flight ...")
                llm_bound(report, children, queues, log)
                children.stop_all()
            if args.only == "scaling" or (sizes.scaling and args.only is None):
                from bench.sweep import SWEEP_SIZES, run_sweeps

                log("scaling: worker processes, agents, orchestrator tasks in flight (bench/sweep.py) ...")
                report.scaling = run_sweeps(SWEEP_SIZES[mode], children, log, notes=report.notes)
                children.stop_all()
            if args.only == "features" or (sizes.features and args.only is None):
                from bench.features import measure

                rows, _ = measure(quick=mode != "full", log=log)
                report.features = [asdict(row) for row in rows]
            if sizes.executor_table and args.only is None:
                log("executor benchmark (bench/executor.py) ...")
                report.executor_table = run_executor_table(logs)
    finally:
        asyncio.run(broker.delete_queues(queues))
    report.elapsed_s = time.monotonic() - started
    from bench.report import render

    text = render(report, args.out, plot=not args.no_plot and _installed("matplotlib"))
    print(text)
    if mode == "full" and args.only is None and args.out.resolve() == (ROOT / "bench").resolve():
        from bench.readme import main as update_readme  # the README's figures come from this run

        update_readme([])
    return 0


def _exit_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def run_executor_table(logs: Path) -> str:
    """Run ``bench/executor.py`` (the executor benchmark) and keep its table for RESULTS.md."""
    import subprocess

    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "executor.py")],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=False,
    )
    (logs / "executor.log").write_text(done.stderr)
    if done.returncode != 0:
        return f"bench/executor.py failed with exit code {done.returncode}; see {logs / 'executor.log'}"
    return done.stdout.strip()


def _installed(module: str) -> bool:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        print(f"{module} is not installed: pip install -e '.[bench]' to include it", file=sys.stderr)
        return False
    return True


if __name__ == "__main__":
    sys.exit(main())
