"""The sweeps of ``bench/sweep.py`` as Markdown sections, targets and one plot each (``bench/scale_*.png``).

Every ratio is against the sweep's own first point, measured in the same run.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bench.sweep import SweepSizes

Rows = list[dict[str, Any]]
PLOTS = {
    "workers": "scale_workers.png",
    "agents": "scale_agents.png",
    "orchestrator": "scale_orchestrator.png",
}
HELD_TARGET_KIB = 2.0
FLAT = 0.9  # "does not fall": the largest size keeps this share of the first size's throughput (and CPU)


def _x(value: float, key: str, row: dict[str, Any]) -> str:
    ratio = row.get("vs_first", {}).get(key)
    return f"{value:,.0f} ({ratio:.2f}x)" if ratio is not None else f"{value:,.0f}"


def _vs_raw(row: dict[str, Any]) -> str:
    ratio = row.get("drain_vs_raw")
    if ratio is None:  # a run from before the raw drain was measured
        return ""
    first = row.get("vs_first", {}).get("drain_vs_raw")
    return f"{ratio:.2f}x ({first:.2f}x)" if first is not None else f"{ratio:.2f}x"


def _table(title: str, header: list[str], rows: list[list[object]]) -> list[str]:
    lines = [
        "",
        f"### {title}",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    return lines + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]


def _round_trip_cells(row: dict[str, Any]) -> list[str]:
    """Throughput (with its ratio to the first point), its range, worker CPU per task (with its ratio)."""
    return [
        _x(row["throughput"], "throughput", row),
        f"{row['low']:,.0f}-{row['high']:,.0f}",
        _x(row["worker_cpu_us_per_task"], "worker_cpu_us_per_task", row),
    ]


def sections(results: dict[str, Rows], sizes: SweepSizes) -> list[str]:
    """The Markdown of each sweep that ran: a table whose ``(…x)`` are ratios to its first row."""
    lines: list[str] = []
    reps = f"median of {sizes.reps} runs" if sizes.reps > 1 else "one run"
    throughput = ["tasks/s (vs 1st)", "range"]
    if rows := results.get("workers"):
        lines += _table(
            f"6. Throughput against worker processes: {sizes.n:,} no-op tasks in flight, one queue ({reps})",
            ["worker processes", *throughput, "worker CPU per task, all processes (us)", "errors"],
            [[r["workers"], *_round_trip_cells(r), r["errors"]] for r in rows],
        )
    if rows := results.get("agents"):
        lines += _table(
            f"7. Throughput against agents (queues) in one worker: {sizes.n:,} tasks spread evenly ({reps})",
            ["agents (queues)", *throughput, "worker CPU per task (us)", "worker RSS (MiB)", "errors"],
            [[r["agents"], *_round_trip_cells(r), f"{r['worker_rss_mib']:.1f}", r["errors"]] for r in rows],
        )
    if rows := results.get("orchestrator"):
        lines += _table(
            "8. The orchestrator with N tasks in flight (`bench.scale`: N queued unanswered, then drained)",
            [
                "tasks in flight",
                "held per task (KiB)",
                "orchestrator RSS (MiB)",
                "publish all (s)",
                "drain tasks/s (vs 1st)",
                "raw aio-pika drain tasks/s (vs 1st)",
                "relaybus vs raw (vs 1st)",
                "orchestrator CPU per task (us)",
                "worker CPU per task (us)",
                "errors",
            ],
            [
                [
                    f"{r['n']:,}",
                    f"{r['held_kib_per_task']:.2f}",
                    f"{r['rss_mib']:.0f}",
                    f"{r['publish_s']:.1f}",
                    _x(r["drain_tasks_per_s"], "drain_tasks_per_s", r),
                    _x(r["raw_drain_tasks_per_s"], "raw_drain_tasks_per_s", r) if "drain_vs_raw" in r else "",
                    _vs_raw(r),
                    _x(r["orchestrator_cpu_us_per_task"], "orchestrator_cpu_us_per_task", r),
                    _x(r["worker_cpu_us_per_task"], "worker_cpu_us_per_task", r),
                    r["errors"],
                ]
                for r in rows
            ],
        )
        lines += [
            "",
            "Held per task: the orchestrator's RSS with all N queued, over its RSS before the call (the "
            "first size carries the allocator's first growth). CPU per task: the whole call, publish to "
            "result. Raw aio-pika drain: the raw pair of table 1-2 draining as many tasks queued the "
            "same way (same quorum queue, same prefetch), after relaybus at each size: how the broker's "
            "own cost moves with the depth of its queue. Relaybus vs raw: relaybus's drain over raw's.",
        ]
    return lines


def targets(results: dict[str, Rows]) -> list[tuple[str, str, bool | None]]:
    """Issue 18's orchestrator target, from the largest size against the first: (name, measured, met)."""
    rows = results.get("orchestrator") or []
    if len(rows) < 2:
        return []
    last = rows[-1]
    tp = last["vs_first"].get("drain_tasks_per_s", float("nan"))
    cpu = last["vs_first"].get("orchestrator_cpu_us_per_task", float("nan"))
    n, first = f"{last['n']:,}", f"{rows[0]['n']:,}"
    return [
        (
            f"orchestrator at {n} in flight holds < {HELD_TARGET_KIB:g} KiB per task",
            f"{last['held_kib_per_task']:.2f} KiB",
            last["held_kib_per_task"] < HELD_TARGET_KIB,
        ),
        (
            f"orchestrator throughput does not fall from {first} to {n} in flight (>= {FLAT:g}x), "
            f"CPU per task flat (<= {1 / FLAT:.2f}x)",
            f"{tp:.2f}x throughput, {cpu:.2f}x CPU per task",
            tp >= FLAT and cpu <= 1 / FLAT,
        ),
    ]


def plot(results: dict[str, Rows], out: Path) -> list[str]:
    """One PNG per sweep that ran, into ``out``; returns the file names written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for part, key, xlabel in (
        ("workers", "workers", "relaybus worker processes on one queue"),
        ("agents", "agents", "agents (queues) in one worker process"),
    ):
        rows = results.get(part)
        if not rows:
            continue
        xs = [r[key] for r in rows]
        fig, ax = plt.subplots(figsize=(6, 4))
        med = [r["throughput"] for r in rows]
        err = [[r["throughput"] - r["low"] for r in rows], [r["high"] - r["throughput"] for r in rows]]
        ax.errorbar(xs, med, yerr=err, marker="o", capsize=3, label="no-op round trip")
        if part == "agents":
            ax.set_xscale("log")
        ax.set_xticks(xs, [str(x) for x in xs])
        ax.minorticks_off()
        ax.set_title(f"No-op round trip against {xlabel.split(' (')[0].split(' on ')[0]}")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("tasks per second")
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / PLOTS[part], dpi=110)
        plt.close(fig)
        written.append(PLOTS[part])
    if rows := results.get("orchestrator"):
        xs = [r["n"] for r in rows]
        fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
        left.plot(xs, [r["drain_tasks_per_s"] for r in rows], marker="o", label="drain tasks/s")
        left.set_ylabel("tasks per second")
        left.set_ylim(bottom=0)
        right.plot(
            xs,
            [r["orchestrator_cpu_us_per_task"] for r in rows],
            marker="o",
            label="orchestrator CPU/task (us)",
        )
        right.plot(
            xs, [r["held_kib_per_task"] * 100 for r in rows], marker="s", label="held per task (KiB x 100)"
        )
        right.set_ylim(bottom=0)
        fig.suptitle("ProjectOrchestrator with N tasks in flight (bench.scale)")
        for ax in (left, right):
            ax.set_xscale("log")
            ax.set_xticks(xs, [f"{x:,}" for x in xs])
            ax.minorticks_off()
            ax.set_xlabel("tasks in flight")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend()
        fig.tight_layout()
        fig.savefig(out / PLOTS["orchestrator"], dpi=110)
        plt.close(fig)
        written.append(PLOTS["orchestrator"])
    return written


def render_sweeps(
    results: dict[str, Rows], sizes: SweepSizes, out: Path, *, plot_png: bool = True
) -> list[str]:
    """The sections, then a line naming the plots written into ``out`` (none when not ``plot_png``)."""
    lines = sections(results, sizes)
    if plot_png and results:
        out.mkdir(parents=True, exist_ok=True)
        names = plot(results, out)
        lines += ["", "Plots: " + ", ".join(f"`bench/{name}`" for name in names) + "."]
    return lines
