"""The sweeps' Markdown and the orchestrator target read each sweep against its own first point."""

from __future__ import annotations

from pathlib import Path

from bench.common import with_ratios
from bench.report_scaling import render_sweeps, targets
from bench.scale import RATIO_KEYS
from bench.sweep import SWEEP_SIZES


def _orchestrator(held_kib: float, drain: float, cpu: float) -> list[dict[str, float]]:
    rows = [
        {
            "n": n,
            "held_kib_per_task": h,
            "rss_mib": 60.0,
            "publish_s": 1.0,
            "drain_tasks_per_s": d,
            "orchestrator_cpu_us_per_task": c,
            "worker_cpu_us_per_task": 1000.0,
            "raw_drain_tasks_per_s": 1000.0 if n == 1000 else 900.0,
            "drain_vs_raw": d / (1000.0 if n == 1000 else 900.0),
            "errors": 0,
        }
        for n, h, d, c in ((1000, 2.3, 600.0, 800.0), (50000, held_kib, drain, cpu))
    ]
    return with_ratios(rows, RATIO_KEYS)


def test_the_orchestrator_target_is_met_when_flat_and_small() -> None:
    (held, flat) = targets({"orchestrator": _orchestrator(0.9, 570.0, 840.0)})
    assert held[1:] == ("0.90 KiB", True)
    assert flat[1] == "0.95x throughput, 1.05x CPU per task"
    assert flat[2] is True


def test_the_orchestrator_target_fails_on_growth_or_memory() -> None:
    (held, flat) = targets({"orchestrator": _orchestrator(2.5, 400.0, 840.0)})
    assert held[2] is False
    assert flat[2] is False
    (_, cpu_grows) = targets({"orchestrator": _orchestrator(0.9, 600.0, 1000.0)})
    assert cpu_grows[2] is False
    assert targets({"orchestrator": _orchestrator(0.9, 600.0, 800.0)[:1]}) == []


def test_the_orchestrator_table_shows_the_raw_drain_at_each_size_and_relaybus_against_it(
    tmp_path: Path,
) -> None:
    lines = render_sweeps(
        {"orchestrator": _orchestrator(0.9, 570.0, 840.0)}, SWEEP_SIZES["full"], tmp_path, plot_png=False
    )
    text = "\n".join(lines)
    assert "| raw aio-pika drain tasks/s (vs 1st) | relaybus vs raw (vs 1st) |" in text
    # 50,000: relaybus 570/s (0.95x its 1,000), raw 900/s (0.90x), so 0.63x raw, 1.06x the first size's 0.60x
    assert "| 570 (0.95x) | 900 (0.90x) | 0.63x (1.06x) |" in text


def test_each_sweep_gets_a_table_with_ratios_and_no_plot_when_asked(tmp_path: Path) -> None:
    workers = with_ratios(
        [
            {
                "workers": w,
                "throughput": t,
                "low": t - 10,
                "high": t + 10,
                "worker_cpu_us_per_task": 900.0,
                "errors": 0,
            }
            for w, t in ((1, 700.0), (2, 1050.0))
        ],
        ("throughput", "worker_cpu_us_per_task"),
    )
    lines = render_sweeps({"workers": workers}, SWEEP_SIZES["full"], tmp_path, plot_png=False)
    text = "\n".join(lines)
    assert "### 6. Throughput against worker processes: 3,000 no-op tasks in flight" in text
    assert "| 2 | 1,050 (1.50x) | 1,040-1,060 | 900 (1.00x) | 0 |" in text
    assert "### 7." not in text
    assert "Plots:" not in text
    assert not list(tmp_path.iterdir())
