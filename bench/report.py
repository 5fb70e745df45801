"""Turn a benchmark run into one table (stdout and ``bench/RESULTS.md``) and a throughput plot (PNG).

Each figure is the median over repetitions with the min-max range in brackets; ratios are computed per
repetition (frameworks measured back to back) and then summarized the same way.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.common import LLM_FLOOR, Spread
from bench.features import Row
from bench.features import render as render_features

if TYPE_CHECKING:
    from bench.run import Report

RAW = "raw aio-pika"
RAW_DURABLE = "raw aio-pika, durable reply queue"
RELAYBUS = "relaybus"
CELERY = "celery"
FASTSTREAM = "faststream"
MEMORY = "relaybus MemoryBus"
# The order of rows, columns and plot lines.
FRAMEWORKS = (RAW, RAW_DURABLE, RELAYBUS, FASTSTREAM, CELERY, MEMORY)
PLOT_NAME = "throughput.png"


Value = float | None  # None: that repetition failed (kept so that ratios pair the same repetition)


def _metric(report: Report, fw: str, index: int, key: str) -> list[Value]:
    values: list[Value] = []
    for rep in report.roundtrip.get(fw, []):
        value = float(rep[index].get(key, "nan")) if rep is not None else None
        values.append(value if value is not None and value == value else None)  # NaN: not measured
    return values


def _walls(runs: Sequence[Any] | None) -> list[Value]:
    return [run[0]["wall_s"] if run is not None else None for run in runs or []]


def _ok(values: Sequence[Value]) -> list[float]:
    return [v for v in values if v is not None]


def _spread(values: Sequence[Value]) -> Spread:
    return Spread.of(_ok(values))


def _ratio(a: Sequence[Value], b: Sequence[Value]) -> Spread:
    """Per-repetition ratios a/b (same repetition), summarized."""
    return Spread.of([x / y for x, y in zip(a, b, strict=False) if x is not None and y])


def _met(ok: bool | None) -> str:
    return "n/a" if ok is None else ("**met**" if ok else "**NOT met**")


class Table:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def section(self, title: str, header: Sequence[str]) -> None:
        self.lines += ["", f"### {title}", "", "| " + " | ".join(header) + " |"]
        self.lines.append("|" + "|".join("---" for _ in header) + "|")

    def row(self, *cells: object) -> None:
        self.lines.append("| " + " | ".join(str(c) for c in cells) + " |")

    def text(self, *lines: str) -> None:
        self.lines += list(lines)


def render(report: Report, out: Path, *, plot: bool = True) -> str:
    """Write ``RESULTS.md`` and the PNG into ``out``; return the Markdown (also what is printed)."""
    sizes = report.sizes
    out.mkdir(parents=True, exist_ok=True)
    points = sizes.points
    head = len(points) - 1
    one = next((i for i, (_, w) in enumerate(points) if w == 1), None)
    targets: list[tuple[str, str, bool | None]] = []
    t = Table()
    env = report.env
    t.text(
        "# relaybus benchmarks",
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, mode `{report.mode}`, {sizes.reps} repetitions, "
        f"{report.elapsed_s:.0f} s in all. Machine: {env.get('cpu_count')} cores, {env.get('platform')}. "
        f"Python {env.get('python')}, {env.get('rabbitmq')}, relaybus {env.get('relaybus')}, aio-pika "
        f"{env.get('aio-pika')}, aiormq {env.get('aiormq')}, pydantic {env.get('pydantic')}, Celery "
        f"{env.get('celery')}, FastStream {env.get('faststream')}; every measured process on the "
        f"{env.get('event_loop', 'asyncio')} event loop.",
        "",
        "Each figure: median of the repetitions, (min-max) in brackets. Ratios are paired per repetition "
        "(the frameworks ran back to back, taking turns) and then summarized. Every process, the broker "
        "included, shares the same cores: figures are comparable within this table, not across machines.",
    )

    # 1 + 2: round trip
    if report.roundtrip:
        n = points[head][0]
        t.section(
            f"1-2. No-op round trip over RabbitMQ: {n:,} tasks all in flight, worker in its own process",
            [
                "",
                "tasks/s",
                "vs raw aio-pika",
                "vs Celery",
                "vs FastStream",
                "p50 1 in flight (ms)",
                "p99 1 in flight (ms)",
                "worker CPU per task (us)",
                "client CPU per task (us)",
            ],
        )
        raw_tp = _metric(report, RAW, head, "throughput")
        celery_tp = _metric(report, CELERY, head, "throughput")
        faststream_tp = _metric(report, FASTSTREAM, head, "throughput")
        durable_tp = _metric(report, RAW_DURABLE, head, "throughput")
        durable_p50 = _metric(report, RAW_DURABLE, one, "p50_ms") if one is not None else []
        for fw in FRAMEWORKS:
            if fw not in report.roundtrip:
                continue
            tp = _metric(report, fw, head, "throughput")
            p50 = _metric(report, fw, one, "p50_ms") if one is not None else []
            p99 = _metric(report, fw, one, "p99_ms") if one is not None else []
            raw_p50 = _metric(report, RAW, one, "p50_ms") if one is not None else []
            vs_raw = _ratio(tp, raw_tp).fmt(2, "x") if fw != RAW else "1"
            vs_celery = _ratio(tp, celery_tp).fmt(2, "x") if celery_tp and fw != CELERY else ""
            vs_faststream = (
                _ratio(tp, faststream_tp).fmt(2, "x") if faststream_tp and fw != FASTSTREAM else ""
            )
            p50_text = _spread(p50).fmt(2)
            if fw != RAW and p50 and raw_p50:
                p50_text += f"; {_ratio(p50, raw_p50).fmt(2, 'x')} raw"
            if fw == RELAYBUS and p50 and durable_p50:
                p50_text += f", {_ratio(p50, durable_p50).fmt(2, 'x')} durable raw"
            label = {
                RAW: "raw aio-pika (quorum, persistent, confirms, manual ack; exclusive classic reply queue)",
                RAW_DURABLE: "raw aio-pika, a durable quorum reply queue as relaybus's",
                RELAYBUS: "relaybus: execute_tasks -> `relaybus worker` -> result",
                CELERY: "Celery (solo pool, prefetch x32, rpc://)",
                FASTSTREAM: "FastStream (same quorum queue, persistent, confirms, own reply queue)",
                MEMORY: "relaybus on MemoryBus (one process)",
            }[fw]
            cpu = [_spread(_metric(report, fw, head, k)).fmt(0) for k in ("cpu_server_us", "cpu_client_us")]
            if fw == MEMORY:
                cpu = ["(same process)", cpu[1]]
            t.row(
                label,
                _spread(tp).fmt(0),
                vs_raw,
                vs_celery,
                vs_faststream,
                p50_text,
                _spread(p99).fmt(2),
                *cpu,
            )
        if RELAYBUS in report.roundtrip and RAW in report.roundtrip:
            ratio = _ratio(_metric(report, RELAYBUS, head, "throughput"), raw_tp)
            targets.append(
                ("round-trip throughput >= 0.9x raw aio-pika", ratio.fmt(2, "x"), ratio.median >= 0.9)
            )
            if durable_tp:
                vs = _ratio(_metric(report, RELAYBUS, head, "throughput"), durable_tp)
                targets.append(
                    ("the same, raw with relaybus's durable reply queue", vs.fmt(2, "x"), vs.median >= 0.9)
                )
            if faststream_tp:
                vs = _ratio(_metric(report, RELAYBUS, head, "throughput"), faststream_tp)
                targets.append(("round-trip throughput >= 1.3x FastStream", vs.fmt(2, "x"), vs.median >= 1.3))
            if one is not None:
                lat = _ratio(_metric(report, RELAYBUS, one, "p50_ms"), _metric(report, RAW, one, "p50_ms"))
                targets.append(("one-in-flight p50 <= 1.3x raw", lat.fmt(2, "x"), lat.median <= 1.3))
                if durable_p50:
                    lat = _ratio(_metric(report, RELAYBUS, one, "p50_ms"), durable_p50)
                    name = "the same, raw with relaybus's durable reply queue"
                    targets.append((name, lat.fmt(2, "x"), lat.median <= 1.3))
        t.section(
            "Throughput (tasks/s) against tasks in flight",
            ["in flight (tasks)", *[fw for fw in FRAMEWORKS if fw in report.roundtrip]],
        )
        for i, (count, window) in enumerate(points):
            cells = [
                _spread(_metric(report, fw, i, "throughput")).fmt(0)
                for fw in FRAMEWORKS
                if fw in report.roundtrip
            ]
            where = "all" if window >= count else f"{window:,}"
            t.row(f"{where} ({count:,} tasks)", *cells)
        if plot:
            _plot(report, out / PLOT_NAME)
            t.text("", f"Plot: `bench/{PLOT_NAME}` (throughput against tasks in flight).")

    # 3: LLM-bound
    if report.llm:
        ideal = sizes.llm_n / sizes.llm_concurrency * sizes.llm_latency_s
        t.section(
            f"3. LLM-bound: {sizes.llm_n:,} tasks x {sizes.llm_latency_s:g} s fake LLM call, one worker",
            ["", "wall (s)", "ideal (s)", "vs ideal", "relaybus speed-up"],
        )
        rb = _walls(report.llm.get(RELAYBUS))
        for fw, runs in report.llm.items():
            walls = _walls(runs)
            concurrency = 100 if "celery" in fw else sizes.llm_concurrency
            fw_ideal = sizes.llm_n / concurrency * sizes.llm_latency_s
            speedup = _ratio(walls, rb).fmt(2, "x") if fw != RELAYBUS else ""
            label = fw if "celery" in fw else f"{fw}, concurrency {sizes.llm_concurrency}"
            t.row(
                label,
                _spread(walls).fmt(2),
                f"{fw_ideal:.2f}",
                _ratio(walls, [fw_ideal] * len(walls)).fmt(2, "x"),
                speedup,
            )
        raw_runs = next((v for k, v in report.llm.items() if k.startswith(RAW)), None)
        if raw_runs:
            vs_raw = _ratio(rb, _walls(raw_runs))
            targets.append(
                ("LLM-bound wall <= 1.15x raw aio-pika + aiohttp", vs_raw.fmt(2, "x"), vs_raw.median <= 1.15)
            )
        targets.append(
            (
                f"(reference) LLM-bound {sizes.llm_n:,} x {sizes.llm_latency_s:g} s vs ideal {ideal:.2f} s",
                _spread([w / ideal for w in _ok(rb)]).fmt(2, "x"),
                None,
            )
        )
        celery_runs = next((v for k, v in report.llm.items() if "celery" in k), None)
        if celery_runs:
            vs = _ratio(_walls(celery_runs), rb)
            targets.append(("LLM-bound >= 2x Celery with 100 threads", vs.fmt(2, "x"), vs.median >= 2.0))
        floor_runs = report.llm.get(LLM_FLOOR)
        if floor_runs:
            targets.append(
                (
                    "(reference) LLM-bound relaybus vs the same calls with no bus (aiohttp alone)",
                    _ratio(rb, _walls(floor_runs)).fmt(2, "x"),
                    None,
                )
            )
            if celery_runs:
                best = _ratio(_walls(celery_runs), _walls(floor_runs))
                targets.append(
                    (
                        "(reference) the most a framework could beat Celery by here (Celery / no bus)",
                        best.fmt(2, "x"),
                        None,
                    )
                )

    # 4: the seed claim
    if report.seed:
        lat = sizes.seed_latency_s
        small, big = sizes.seed_small, sizes.seed_big
        seq = report.seed.get("sequential", {})
        costs = report.seed.get("costs", {})
        per_task = (seq["wall_s"] / small - lat) if seq else float("nan")
        t.section(
            f"4. The seed claim: tasks of one {lat:g} s LLM call",
            ["", f"{small} tasks (s)", f"{big} tasks (s)"],
        )
        seq_big = big * (lat + per_task)
        t.row(
            "sequential `asyncio.run()` per task, new client each (the seed)",
            f"{seq.get('wall_s', float('nan')):.2f}",
            f"{seq_big:.1f} (computed: {big} x ({lat:g} s + {per_task * 1000:.1f} ms measured overhead))",
        )
        rb_small = _walls(report.seed.get(f"relaybus {small}"))
        rb_big = _walls(report.seed.get(f"relaybus {big}"))
        t.row(
            "relaybus: execute_tasks -> `relaybus worker` -> LLM",
            _spread(rb_small).fmt(2),
            _spread(rb_big).fmt(2),
        )
        if costs:
            loop_ms, client_ms = costs["asyncio_run_ms"], costs["asyncio_run_with_client_ms"]
            t.text(
                "",
                f"Per-task costs of the seed's design: `asyncio.run()` itself {loop_ms:.2f} ms; "
                f"`asyncio.run()` that builds and closes an httpx client {client_ms:.2f} ms "
                f"(so the client costs {client_ms - loop_ms:.2f} ms). "
                f"Sequential overhead per task measured beyond the {lat:g} s call: {per_task * 1000:.1f} ms.",
            )
        if _ok(rb_big):
            target_s = 2.3 if lat == 2.0 and big == 100 else None
            ok = _spread(rb_big).median <= target_s if target_s is not None else None
            targets.append((f"{big} x {lat:g} s in <= 2.3 s", _spread(rb_big).fmt(2, " s"), ok))

    # 5: memory
    if report.rss:
        t.section("5. Memory: resident set size (MiB)", ["process", "RSS (MiB)"])
        for name, value in report.rss.items():
            t.row(name, f"{value:.1f}")
        rb_idle = report.rss.get("relaybus worker, idle")
        raw_idle = report.rss.get("raw aio-pika consumer, idle")
        if rb_idle and raw_idle:
            targets.append(
                (
                    "idle worker RSS <= 1.3x raw aio-pika consumer",
                    f"{rb_idle / raw_idle:.2f}x",
                    rb_idle / raw_idle <= 1.3,
                )
            )

    if report.scaling:
        from bench.report_scaling import render_sweeps
        from bench.report_scaling import targets as scaling_targets
        from bench.sweep import SWEEP_SIZES

        t.text(*render_sweeps(report.scaling, SWEEP_SIZES[report.mode], out, plot_png=plot))
        targets += scaling_targets(report.scaling)

    if report.features:
        t.text(
            "",
            "### 9. What each feature costs against its own plain path (`bench/features.py`)",
            "",
            "Each row from a child process of its own, the baseline measured in that child just before.",
            "",
        )
        feature_rows = [Row(**row) for row in report.features]
        t.text(render_features(feature_rows))
        targets += [
            (f"{r.feature}: {r.target}", r.cost, r.status == "**met**")
            for r in feature_rows
            if r.status in ("**met**", "**NOT met**")
        ]

    t.section("Targets (issue 18)", ["target", "measured", "status"])
    for name, measured, ok in targets:
        t.row(name, measured, _met(ok) if report.mode != "tiny" else "n/a (tiny run)")
    if report.notes:
        t.text("", *[f"- {note}" for note in report.notes])
    t.text(
        "",
        "Guarantees on each side. relaybus and raw aio-pika: durable quorum task queue, persistent messages, "
        "publisher confirms, the task acked only after its result is confirmed, a private reply queue per "
        "client: relaybus's is a durable quorum queue with an expiry (a result outlives a broker restart, so "
        "the broker writes it to a replicated log before confirming it); raw aio-pika's is exclusive and "
        "classic (lost with its connection), and a durable one like relaybus's in the second raw row. "
        "Celery: its defaults (classic durable queue, persistent messages, the task acked when received, "
        "before it runs; results over `rpc://`). FastStream: the same quorum task queue, persistent "
        "messages and confirms, the task acked after its handler (and so its reply's confirmed publish) "
        "returned, a private reply queue per client.",
    )
    t.text(
        "",
        "Where the time goes (py-spy, `python -m bench.hotpath --baseline`) and what to remove: "
        "`bench/PROFILE.md`.",
    )
    if report.executor_table:
        t.text("", "### Executor benchmark (`bench/executor.py`)", "", "```", report.executor_table, "```")
    text = "\n".join(t.lines).strip() + "\n"
    (out / "RESULTS.md").write_text(text)
    (out / "results.json").write_text(json.dumps(_jsonable(report), indent=1, default=str) + "\n")
    return text


def _jsonable(report: Report) -> dict[str, Any]:
    data = asdict(report)
    data["sizes"]["points"] = report.sizes.points
    return data


def _plot(report: Report, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = report.sizes.points
    xs = [min(w, n) for n, w in points]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for fw in FRAMEWORKS:
        if fw not in report.roundtrip:
            continue
        spreads = [_spread(_metric(report, fw, i, "throughput")) for i in range(len(points))]
        med = [s.median for s in spreads]
        err = [[s.median - s.low for s in spreads], [s.high - s.median for s in spreads]]
        ax.errorbar(
            xs, med, yerr=err, marker="o", capsize=3, label=fw, linestyle="--" if fw == MEMORY else "-"
        )
    ax.set_xscale("log")
    ax.set_xlabel("tasks in flight")
    ax.set_ylabel("tasks per second (median, min-max)")
    ax.set_title(f"No-op round trip, {report.env.get('cpu_count')} cores, {report.env.get('rabbitmq')}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
