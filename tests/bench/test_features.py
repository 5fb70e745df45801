"""bench/features.py: one table of what each feature costs against its own baseline, with its target."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from bench.common import ROOT

from bench import features


def state_figures(ratio: float) -> dict[str, Any]:
    none = {"throughput": 1000.0, "cpu_server_us": 600.0}
    store = {"throughput": 1000.0 * ratio, "cpu_server_us": 1100.0, "ratio_to_none": ratio}
    store["ratio_range"] = [ratio - 0.05, ratio + 0.05]
    return {"in_flight": 500, "stores": {"none": none, "postgres": store}}


@pytest.mark.parametrize(("ratio", "status"), [(0.65, "**NOT met**"), (0.75, "**met**")])
def test_a_state_store_is_judged_against_no_store_at_0_7x(ratio: float, status: str) -> None:
    (row,) = features.ROWS["state"](state_figures(ratio))
    assert row.feature == "state store (postgres)"
    assert row.cost.startswith(f"{ratio:.2f}x")
    assert row.status == status


def test_streaming_agent_loop_and_gateway_rows_give_what_they_add_against_their_targets() -> None:
    streaming = {
        "ttft": {"direct": {"p50_ms": 3.0}, "relaybus": {"p50_ms": 9.5}, "added_p50_ms": 6.5},
        "concurrent": {
            "plain": {
                "tasks": 50,
                "tokens": 200,
                "worker_cpu_ms_per_task": 1.5,
                "broker_messages_per_task": 2,
            },
            "streamed": {"worker_cpu_ms_per_task": 6.0, "broker_messages_per_task": 5.5},
        },
    }
    first_token, cpu = features.ROWS["streaming"](streaming)
    assert (first_token.cost, first_token.status) == ("+6.5 ms", "**NOT met**")
    assert "5.5 vs 2 broker messages" in cpu.cost
    loop = {"cpu": {x: {"median": v} for x, v in (("overhead_us_per_turn", 150.0),)}}
    loop["cpu"]["bare_provider_us_per_turn"] = {"median": 40.0}
    loop["cpu"]["loop_us_per_turn"] = {"median": 190.0}
    (row,) = features.ROWS["agent_loop"](loop)
    assert (row.cost, row.status) == ("+150 us per turn", "**met**")
    gateway = {"1": {"orchestrator": {"p50_ms": 3.0}, "gateway": {"p50_ms": 3.5}}}
    (row,) = features.ROWS["gateway"](gateway)
    assert (row.cost, row.status) == ("+0.50 ms", "**met**")


def test_the_first_tokens_broker_share_is_a_row_of_its_own_when_measured() -> None:
    streaming = {
        "ttft": {
            "direct": {"p50_ms": 4.0},
            "relaybus": {"p50_ms": 10.8},
            "added_p50_ms": 6.8,
            "broker_trips": {"p50_ms": 4.9},
            "own_p50_ms": 1.9,
        },
        "concurrent": {
            "plain": {"tasks": 1, "tokens": 1, "worker_cpu_ms_per_task": 1.0, "broker_messages_per_task": 2},
            "streamed": {"worker_cpu_ms_per_task": 1.0, "broker_messages_per_task": 3},
        },
    }
    first_token, share, _ = features.ROWS["streaming"](streaming)
    assert first_token.status == "**NOT met**"
    assert (share.plain, share.with_feature, share.cost) == (
        "4.9 (raw trips)",
        "6.8 (relaybus adds)",
        "+1.9 ms relaybus's own",
    )


def test_the_telemetry_bench_writes_the_json_the_table_reads(tmp_path: Path) -> None:
    out = tmp_path / "telemetry.json"
    # In a process of its own: the bench configures structlog globally, which later tests' log capture needs.
    argv = ["-m", "bench.telemetry", "--n", "20", "--window", "5", "--repeat", "1", "--json", str(out)]
    done = subprocess.run([sys.executable, *argv], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = features.ROWS["telemetry"](json.loads(out.read_text()))
    assert [r.feature for r in rows] == [
        "telemetry: trace context, no SDK",
        "telemetry: metrics",
        "telemetry: tracing (SDK, spans)",
    ]
    assert all(r.cost.endswith("x)") for r in rows)


def test_a_feature_whose_child_fails_is_a_failed_row_and_the_others_still_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def argv(name: str, quick: bool, out: Path) -> list[str]:
        if name == "gateway":
            return [sys.executable, "-c", "raise SystemExit(3)"]
        written = out / "agent_loop.json"
        return [sys.executable, "-c", f"import pathlib; pathlib.Path({str(written)!r}).write_text('{{}}')"]

    monkeypatch.setattr(features, "_argv", argv)
    rows, _ = features.measure(("gateway", "agent_loop"), log=lambda text: None)
    assert rows[0].status == "failed"
    assert "exit code 3" in rows[0].cost
    assert rows[1].status == "failed"  # ran, but its figures lack the keys: said, not raised
    assert "'cpu'" in rows[1].cost  # the missing key, named
    table = features.render(rows)
    assert table.count("\n") == 3  # header, rule, one line per row


def test_an_unknown_feature_is_refused_with_the_choices(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        features.main(["--only", "state,colour"])
    assert exited.value.code == 2
    assert "unknown feature(s) colour: choose from state, telemetry" in capsys.readouterr().err


@pytest.mark.parametrize("name", features.FEATURES)
def test_each_feature_runs_a_bench_module_that_exists(name: str, tmp_path: Path) -> None:
    argv = features._argv(name, True, tmp_path)
    assert argv[1] == "-m"
    assert importlib.util.find_spec(argv[2]) is not None, argv


def test_make_bench_renders_the_feature_table_and_takes_its_targets(tmp_path: Path) -> None:
    from dataclasses import asdict

    from bench.report import render
    from bench.run import SIZES, Report

    report = Report(SIZES["quick"], "quick")
    (row,) = features.ROWS["state"](state_figures(0.65))
    report.features = [asdict(row)]
    text = render(report, tmp_path, plot=False)
    assert "### 9. What each feature costs" in text
    assert "| state store (postgres) | round trip, 500 in flight (tasks/s) | 1,000 | 650 |" in text
    assert "| state store (postgres): >= 0.7x | 0.65x" in text  # in the targets table too
    assert (tmp_path / "RESULTS.md").read_text() == text
