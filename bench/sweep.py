"""How relaybus's cost grows with work (issue 18, "Also measure"): three sweeps, each against its first point.

    python -m bench.sweep [--quick] [--only workers|agents|orchestrator] [--no-plot] [--out DIR] [--json]

- ``workers``: no-op round trips, all ``n`` tasks in flight (one ``execute_tasks`` call), against 1, 2 and 4
  ``relaybus worker`` processes consuming the one agent queue (competing consumers). Processes are added
  between points, so each point runs on the processes of the one before plus the new ones.
- ``agents``: one worker process hosting 1, 10 and 100 no-op agents (a queue each, ``bench.agents:noop_<i>``),
  the ``n`` tasks spread evenly over them; a fresh process per point.
- ``orchestrator``: ``bench.scale`` at 1k, 10k and 50k tasks in flight (memory held per task, RSS, CPU per
  task, drain throughput), each size in a process of its own.

A point's figure is the median of ``reps`` client runs (its range kept); ``vs_first`` is its ratio to the
sweep's first point measured in the same run. The machine is shared: read the ratios, not the figures.
``python -m bench`` runs the three after its other parts and puts them in its table; alone, this prints the
same sections and writes the plots (``bench/scale_*.png``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import broker, scale
from bench.common import ROOT, Children, unique, with_ratios

CONCURRENCY = 1000  # each worker's concurrency (and prefetch per queue), as in the round trip
CLIENT_TIMEOUT_S = 300.0
PARTS = ("workers", "agents", "orchestrator")
Log = Callable[[str], None]


@dataclass(frozen=True)
class SweepSizes:
    """How big each sweep is: ``n`` tasks per client run, ``reps`` runs per point."""

    n: int
    reps: int
    workers: tuple[int, ...] = (1, 2, 4)
    agents: tuple[int, ...] = (1, 10, 100)
    orchestrator: tuple[int, ...] = (1000, 10000, 50000)


SWEEP_SIZES = {
    "full": SweepSizes(n=3000, reps=2),
    "quick": SweepSizes(n=1000, reps=1, orchestrator=(1000, 10000)),
    # The smoke test: every sweep runs at two points, nothing is measured seriously.
    "tiny": SweepSizes(n=20, reps=1, workers=(1, 2), agents=(1, 3), orchestrator=(30, 60)),
}


def _client(
    children: Children, label: str, agent_args: Sequence[str], sizes: SweepSizes, workers: Sequence[Any]
) -> dict[str, Any]:
    """``reps`` runs of ``n`` tasks all in flight from one client process; the median throughput, its
    range, errors, and the CPU the ``workers`` (bench ``Child`` processes) spent per task meanwhile."""
    points = json.dumps([[sizes.n, sizes.n]] * sizes.reps)
    cpu_before = sum(worker.cpu_s() for worker in workers)
    runs = children.run(
        label,
        "bench.relaybus_side",
        "client",
        *agent_args,
        "--points",
        points,
        timeout=CLIENT_TIMEOUT_S,
    )
    cpu_s = sum(worker.cpu_s() for worker in workers) - cpu_before
    throughputs = [run["throughput"] for run in runs]
    return {
        "throughput": statistics.median(throughputs),
        "low": min(throughputs),
        "high": max(throughputs),
        "errors": sum(run["errors"] for run in runs),
        # The client's 50-task warm-up runs on the workers too: counted in, it is under 2% at n=3,000.
        "worker_cpu_us_per_task": cpu_s / (sizes.n * sizes.reps) * 1e6,
        "client_cpu_us_per_task": statistics.median(run["cpu_client_us"] for run in runs),
    }


def workers_sweep(sizes: SweepSizes, children: Children, queues: list[str], log: Log) -> list[dict[str, Any]]:
    from bench.run import relaybus_worker

    agent = unique("bench-workers")
    queue = f"relaybus.agent.{agent}"
    queues.append(queue)
    workers: list[Any] = []
    rows = []
    for count in sizes.workers:
        while len(workers) < count:
            label = f"{agent}-w{len(workers) + 1}"
            consumers = {queue: len(workers) + 1}
            workers.append(
                relaybus_worker(
                    children, agent, "NoopAgent", CONCURRENCY, {}, label=label, consumers=consumers
                )
            )
        row = {
            "workers": count,
            **_client(children, f"sweep-workers-{count}", ("--agent", agent), sizes, workers),
        }
        log(f"  {count} worker process(es): {row['throughput']:.0f} tasks/s")
        rows.append(row)
    for worker in workers:
        worker.stop()
    return with_ratios(rows, ("throughput", "worker_cpu_us_per_task"))


def agents_sweep(sizes: SweepSizes, children: Children, queues: list[str], log: Log) -> list[dict[str, Any]]:
    from bench.run import relaybus_worker

    rows = []
    for count in sizes.agents:
        agent = unique("bench-agents")
        names = [f"relaybus.agent.{agent}-{i}" for i in range(count)]
        queues += names
        worker = relaybus_worker(
            children,
            agent,
            "NoopAgent",
            CONCURRENCY,
            {},
            specs=[f"bench.agents:noop_{i}" for i in range(count)],
            consumers=dict.fromkeys(names, 1),
        )
        args = ("--agent", agent, "--agents", str(count))
        row = {"agents": count, **_client(children, f"sweep-agents-{count}", args, sizes, [worker])}
        row["worker_rss_mib"] = worker.rss_mib()
        log(f"  {count} agent(s) in one worker: {row['throughput']:.0f} tasks/s")
        rows.append(row)
        worker.stop()
    return with_ratios(rows, ("throughput", "worker_cpu_us_per_task"))


def orchestrator_sweep(sizes: SweepSizes, log: Log) -> list[dict[str, Any]]:
    rows = with_ratios(scale.measure(list(sizes.orchestrator)), scale.RATIO_KEYS)
    for row in rows:
        log(
            f"  {row['n']:,} in flight: {row['held_kib_per_task']:.2f} KiB/task, "
            f"{row['drain_tasks_per_s']:.0f} tasks/s, "
            f"orchestrator {row['orchestrator_cpu_us_per_task']:.0f} us/task"
        )
    return rows


def run_sweeps(
    sizes: SweepSizes,
    children: Children,
    log: Log,
    only: Sequence[str] = PARTS,
    notes: list[str] | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """The sweeps named in ``only``, in order; their queues deleted at the end, whatever happened.

    A sweep that fails (a worker that does not start, a client past its time, the shared broker restarted)
    is left out of the result with a line in ``notes`` saying why; the others still run."""
    sweeps: dict[str, Callable[[], list[dict[str, Any]]]] = {
        "workers": lambda: workers_sweep(sizes, children, queues, log),
        "agents": lambda: agents_sweep(sizes, children, queues, log),
        "orchestrator": lambda: orchestrator_sweep(sizes, log),
    }
    results: dict[str, list[dict[str, Any]]] = {}
    queues: list[str] = []
    try:
        for part in (part for part in PARTS if part in only):
            log(f"sweep: {part} ...")
            try:
                results[part] = sweeps[part]()
            except (RuntimeError, TimeoutError, subprocess.TimeoutExpired) as exc:
                why = " ".join(str(exc).split())[:300]
                log(f"  sweep {part} FAILED: {why}")
                if notes is not None:
                    notes.append(f"sweep {part} failed and is left out: {why}")
            finally:
                children.stop_all()
    finally:
        asyncio.run(broker.delete_queues(queues))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sweep", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_const", const="quick", dest="mode", help="smaller sizes")
    parser.add_argument("--tiny", action="store_const", const="tiny", dest="mode", help=argparse.SUPPRESS)
    parser.add_argument("--only", choices=PARTS, action="append", help="run this sweep (repeatable)")
    parser.add_argument("--no-plot", action="store_true", help="write no PNG (no matplotlib needed)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench", help="where the PNGs go")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON, not Markdown")
    args = parser.parse_args(argv)
    sizes = SWEEP_SIZES[args.mode or "full"]

    def log(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    notes: list[str] = []
    with Children(Path(tempfile.mkdtemp(prefix="relaybus-sweep-"))) as children:
        results = run_sweeps(sizes, children, log, args.only or PARTS, notes)
    from bench.report_scaling import render_sweeps, targets
    from bench.run import _installed

    lines = render_sweeps(results, sizes, args.out, plot_png=not args.no_plot and _installed("matplotlib"))
    lines += [
        "",
        *[f"- {name}: {measured} ({'met' if ok else 'NOT met'})" for name, measured, ok in targets(results)],
        *[f"- {note}" for note in notes],
    ]
    print(json.dumps(results, indent=1) if args.json else "\n".join(lines).strip())
    return 1 if notes else 0


if __name__ == "__main__":
    sys.exit(main())
