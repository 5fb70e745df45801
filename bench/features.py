"""What each feature costs against the plain path it is added to, measured in the same run (issue 18).

    python -m bench.features [--quick] [--only state,telemetry,streaming,agent_loop,gateway] [--json PATH]

Runs the benchmark of each feature in a process of its own, smaller than its own default (each one also runs
alone, with more repetitions: ``python -m bench.<name>``), and gathers one table, each row a feature against
its own baseline measured in that child, and the target its issue set:

- ``state``: no-op round trips with a SQLite and a PostgreSQL store against none (``bench.state_roundtrip``):
  throughput ratio, target >= 0.7x (issue 14).
- ``telemetry``: CPU per task on a MemoryBus with metrics, and with the OpenTelemetry SDK tracing, against
  the default (no SDK: trace context only), and the default against the tracing hooks bypassed
  (``bench.telemetry``); issue 15's target: without the SDK, no cost beyond a no-op check.
- ``streaming``: time to first token through relaybus against calling the fake provider directly, target
  under 5 ms added at p50 (issue 13); the worker's CPU per task streamed against not streamed
  (``bench.streaming``).
- ``agent_loop``: CPU per model turn of the agent loop over the bare provider call, target under 200 us
  (issue 12) (``bench.agent_loop``, part (a) only).
- ``gateway``: p50 of a task sent through the HTTP gateway against the same task sent by an orchestrator,
  one in flight, target under 1 ms added (issue 16) (``bench.gateway``).

A child that fails leaves its row saying so (and where its output went); the others still run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import ROOT

FEATURES = ("state", "telemetry", "streaming", "agent_loop", "gateway")


@dataclass(frozen=True)
class Row:
    """One line of the table: ``feature`` measured as ``measure``, ``plain`` against ``with_feature``."""

    feature: str
    measure: str
    plain: str
    with_feature: str
    cost: str
    target: str
    status: str


def _argv(name: str, quick: bool, out: Path) -> list[str]:
    """The command that measures ``name``, writing its JSON under ``out``."""
    q = quick
    small = {
        "state": [
            "--tasks",
            "1500" if q else "3000",
            "--in-flight",
            "500" if q else "1000",
            "--reps",
            "1" if q else "2",
        ],
        "telemetry": [
            "--n",
            "1000" if q else "3000",
            "--repeat",
            "1" if q else "2",
            "--json",
            str(out / "telemetry.json"),
        ],
        "streaming": ["--reps", "10" if q else "20", "--tasks", "20" if q else "50", "--tokens", "200"],
        "agent_loop": ["--reps", "1" if q else "2", "--cpu-tasks", "50" if q else "150", "--tasks", "0"],
        "gateway": ["--n", "200" if q else "500", "--rounds", "1" if q else "2", "--concurrency", "1"],
    }[name]
    small += {
        "state": ["--json"],
        "telemetry": [],
        "streaming": ["--json", str(out / "streaming.json")],
        "agent_loop": ["--out", str(out)],
        "gateway": ["--json", str(out / "gateway.json")],
    }[name]
    module = "state_roundtrip" if name == "state" else name
    return [sys.executable, "-m", f"bench.{module}", *small]


def _read(name: str, out: Path, stdout: str) -> dict[str, Any]:
    if name == "state":
        return dict(json.loads(stdout[stdout.index("{") :]))
    file = {"telemetry": "telemetry.json", "streaming": "streaming.json", "gateway": "gateway.json"}
    return dict(json.loads((out / file.get(name, "agent_loop.json")).read_text()))


def _met(ok: bool) -> str:
    return "**met**" if ok else "**NOT met**"


def _state_rows(data: dict[str, Any]) -> list[Row]:
    stores = data["stores"]
    none = stores["none"]
    rows = []
    for store in ("sqlite", "postgres"):
        entry = stores.get(store)
        if entry is None:
            continue
        ratio = entry["ratio_to_none"]
        rows.append(
            Row(
                f"state store ({store})",
                f"round trip, {data['in_flight']:,} in flight (tasks/s)",
                f"{none['throughput']:,.0f}",
                f"{entry['throughput']:,.0f}",
                f"{ratio:.2f}x ({entry['ratio_range'][0]:.2f}-{entry['ratio_range'][1]:.2f}); worker CPU "
                f"{entry['cpu_server_us']:,.0f} vs {none['cpu_server_us']:,.0f} us/task",
                ">= 0.7x",
                _met(ratio >= 0.7),
            )
        )
    return rows


def _telemetry_rows(data: dict[str, Any]) -> list[Row]:
    modes = data["modes"]
    plain = modes["plain"]
    rows = [
        Row(
            "telemetry: trace context, no SDK",
            "CPU per task, MemoryBus (us)",
            f"{modes['untraced']:.0f} (hooks bypassed)",
            f"{plain:.0f}",
            f"{plain - modes['untraced']:+.0f} us ({plain / modes['untraced']:.2f}x)",
            "no cost beyond a no-op check",
            "see cost",
        )
    ]
    for mode, label in (("metrics", "telemetry: metrics"), ("tracing", "telemetry: tracing (SDK, spans)")):
        rows.append(
            Row(
                label,
                "CPU per task, MemoryBus (us)",
                f"{plain:.0f}",
                f"{modes[mode]:.0f}",
                f"{modes[mode] - plain:+.0f} us ({modes[mode] / plain:.2f}x)",
                "measured",
                "n/a",
            )
        )
    return rows


def _streaming_rows(data: dict[str, Any]) -> list[Row]:
    ttft, many = data["ttft"], data["concurrent"]
    added = ttft["added_p50_ms"]
    plain, streamed = many["plain"], many["streamed"]
    rows = [
        Row(
            "streaming: first token",
            "time to first token, p50 (ms)",
            f"{ttft['direct']['p50_ms']:.1f} (provider direct)",
            f"{ttft['relaybus']['p50_ms']:.1f}",
            f"{added:+.1f} ms",
            "< 5 ms added",
            _met(added < 5),
        )
    ]
    if "broker_trips" in ttft:  # runs from before 2026-12-04 lack it
        rows.append(
            Row(
                "streaming: first token, the broker's share",
                "the task's quorum trip + the event's classic trip, raw aio-pika, same idle gap, p50 (ms)",
                f"{ttft['broker_trips']['p50_ms']:.1f} (raw trips)",
                f"{added:.1f} (relaybus adds)",
                f"{ttft['own_p50_ms']:+.1f} ms relaybus's own",
                "measured",
                "n/a",
            )
        )
    return [
        *rows,
        Row(
            "streaming: worker CPU",
            f"{plain['tasks']} tasks x {plain['tokens']} chunks, worker CPU per task (ms)",
            f"{plain['worker_cpu_ms_per_task']:.2f} (not streamed)",
            f"{streamed['worker_cpu_ms_per_task']:.2f}",
            f"{streamed['broker_messages_per_task']:.1f} vs {plain['broker_messages_per_task']:.0f} broker "
            "messages per task",
            "measured",
            "n/a",
        ),
    ]


def _agent_loop_rows(data: dict[str, Any]) -> list[Row]:
    cpu = data["cpu"]
    overhead = cpu["overhead_us_per_turn"]["median"]
    return [
        Row(
            "agent loop",
            "CPU per model turn (us)",
            f"{cpu['bare_provider_us_per_turn']['median']:.0f} (bare provider call)",
            f"{cpu['loop_us_per_turn']['median']:.0f}",
            f"{overhead:+.0f} us per turn",
            "< 200 us per turn",
            _met(overhead < 200),
        )
    ]


def _gateway_rows(data: dict[str, Any]) -> list[Row]:
    one = data["1"]
    added = one["gateway"]["p50_ms"] - one["orchestrator"]["p50_ms"]
    return [
        Row(
            "HTTP gateway",
            "p50 at one in flight (ms)",
            f"{one['orchestrator']['p50_ms']:.2f} (orchestrator)",
            f"{one['gateway']['p50_ms']:.2f}",
            f"{added:+.2f} ms",
            "< 1 ms added",
            _met(added < 1),
        )
    ]


ROWS: dict[str, Callable[[dict[str, Any]], list[Row]]] = {
    "state": _state_rows,
    "telemetry": _telemetry_rows,
    "streaming": _streaming_rows,
    "agent_loop": _agent_loop_rows,
    "gateway": _gateway_rows,
}


def measure(
    features: tuple[str, ...] = FEATURES, *, quick: bool = False, log: Callable[[str], None] = print
) -> tuple[list[Row], dict[str, Any]]:
    """Run each feature's benchmark (a child process each); the table's rows and each child's figures."""
    out = Path(tempfile.mkdtemp(prefix="relaybus-bench-features-"))
    rows: list[Row] = []
    figures: dict[str, Any] = {}
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for name in features:
        log(f"feature cost: {name} ...")
        done = subprocess.run(
            _argv(name, quick, out),
            capture_output=True,
            text=True,
            timeout=900,
            cwd=ROOT,
            env=env,
            check=False,
        )
        (out / f"{name}.log").write_text(done.stdout + done.stderr)
        try:
            if done.returncode != 0:
                raise RuntimeError(f"exit code {done.returncode}")
            figures[name] = _read(name, out, done.stdout)
            rows += ROWS[name](figures[name])
        except (RuntimeError, ValueError, KeyError, OSError) as exc:
            rows.append(Row(name, "failed", "", "", f"{exc}; see {out / (name + '.log')}", "", "failed"))
    return rows, figures


def render(rows: list[Row]) -> str:
    """The rows as a Markdown table."""
    lines = [
        "| feature | measure | without it | with it | cost | target | status |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        cells = (r.feature, r.measure, r.plain, r.with_feature, r.cost, r.target, r.status)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.features", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller runs (about a minute each)")
    parser.add_argument("--only", default=",".join(FEATURES), help="comma-separated: " + ",".join(FEATURES))
    parser.add_argument("--json", type=Path, help="also write every child's figures to this file")
    args = parser.parse_args(argv)
    chosen = tuple(name.strip() for name in args.only.split(",") if name.strip())
    unknown = sorted(set(chosen) - set(FEATURES))
    if unknown:
        parser.error(f"unknown feature(s) {', '.join(unknown)}: choose from {', '.join(FEATURES)}")
    rows, figures = measure(chosen, quick=args.quick, log=lambda text: print(text, file=sys.stderr))
    print(render(rows))
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0 if all(r.status != "failed" for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
