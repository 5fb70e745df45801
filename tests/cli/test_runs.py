"""``relaybus run --state-url``, ``relaybus runs list | show | prune`` and ``relaybus status`` as real
processes, with ``relaybus worker`` processes on RabbitMQ sharing the store; and a named run run again."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from uuid import uuid4

import pytest

from relaybus.state import store_from_url
from tests.orchestrator.broker_plans import SummerFleet, layered_plan, summer_fleet

from .support import Outcome, assert_fits, run_cli, run_cli_async, usage_error

__all__ = ["summer_fleet"]  # the fixture


def plan_file(tmp_path: Path, fleet: SummerFleet, name: str = "history") -> tuple[Path, dict[str, int]]:
    text, sums = layered_plan(name, fleet.suffix, layers=2, width=2, sleep_s=0)
    path = tmp_path / "plan.yaml"
    path.write_text(text)
    return path, sums


async def cli(fleet: SummerFleet, state_url: str | None, *args: str, columns: int = 80) -> Outcome:
    env = {"RELAYBUS_AMQP_URL": fleet.amqp_url, "COLUMNS": str(columns)}
    if state_url is not None:
        env["RELAYBUS_STATE_URL"] = state_url
    return await run_cli_async(*args, env=env, timeout=90)


@pytest.mark.integration
async def test_a_named_run_is_recorded_listed_shown_and_reported_complete_when_run_again(
    summer_fleet: SummerFleet, tmp_path: Path, state_url: str
) -> None:
    path, sums = plan_file(tmp_path, summer_fleet)
    name = f"nightly{summer_fleet.suffix}"
    fleet_env = {**summer_fleet.env(), "RELAYBUS_STATE_URL": state_url}
    summer_fleet.env = lambda: fleet_env  # type: ignore[method-assign]
    try:
        async with summer_fleet.processes(2) as workers:
            await workers.wait_ready(summer_fleet.bus)
            first = await cli(summer_fleet, state_url, "run", str(path), "--name", name, "--no-progress")
            assert first.code == 0, first.stderr
            [run_trace] = [
                line.split()[1] for line in first.stdout.splitlines() if line.startswith("trace_id: ")
            ]
            ran = sum(summer_fleet.runs.values())
            again = await cli(summer_fleet, state_url, "run", str(path), "--name", name, "--no-progress")
            assert sum(summer_fleet.runs.values()) == ran  # nothing published, nothing ran
            fresh = await cli(
                summer_fleet, state_url, "run", str(path), "--name", name, "--new", "--no-progress"
            )
            assert fresh.code == 0, fresh.stderr
            assert sum(summer_fleet.runs.values()) == 2 * ran  # a new run: new task ids, run once each
    finally:
        await summer_fleet.bus.delete_queue(f"relaybus.reply.{name}")
    assert again.code == 0, again.stderr
    assert f"run '{name}' of plan 'history' already completed on" in again.stdout
    assert "4 success" in again.stdout
    assert "--new" in again.stdout
    assert "plan history" not in again.stdout  # no results table pretending the run happened
    new_id = fresh.stderr.split("run id ", 1)[1].split(":", 1)[0]
    assert f"--run-id {new_id}" in fresh.stderr

    for columns in (80, 120):
        listed = await cli(summer_fleet, state_url, "runs", "list", columns=columns)
        assert listed.code == 0, listed.stderr
        assert_fits(listed.stdout, columns)
        assert name in listed.stdout
        assert new_id in listed.stdout
        assert "4 success" in listed.stdout
    assert listed.stdout.index(new_id) < listed.stdout.index(name)  # newest first

    as_json = await cli(summer_fleet, state_url, "runs", "list", "--json")
    runs = json.loads(as_json.stdout)
    assert [run["run_id"] for run in runs] == [new_id, name]
    assert runs[1]["statuses"] == {"success": 4}

    for columns in (80, 120):
        shown = await cli(summer_fleet, state_url, "runs", "show", name, columns=columns)
        assert shown.code == 0, shown.stderr
        assert_fits(shown.stdout, columns)
        assert f"run {name} of plan history" in shown.stdout
        assert f"trace_id: {run_trace}" in shown.stdout
        for key in sums:
            line = next(line for line in shown.stdout.splitlines() if line.strip().startswith(key))
            assert "success" in line
    detail = json.loads((await cli(summer_fleet, state_url, "runs", "show", name, "--json")).stdout)
    assert {task["key"] for task in detail["tasks"]} == set(sums)
    assert all(task["worker"] and task["attempts"] == 1 for task in detail["tasks"])
    assert {task["trace_id"] for task in detail["tasks"]} == {run_trace}  # `relaybus run`: the plan's trace
    outputs = {task["key"]: task["result"]["output"] for task in detail["tasks"]}
    assert {key: output["sum"] for key, output in outputs.items()} == sums

    task_id = detail["tasks"][0]["task_id"]
    status = await cli(summer_fleet, state_url, "status", task_id)
    assert status.code == 0, status.stderr
    assert status.stdout.startswith(f"task {task_id}: success")
    full = json.loads((await cli(summer_fleet, state_url, "status", task_id, "--json")).stdout)
    assert full["status"] == "success"
    assert full["task_id"] == task_id

    pruned = await cli(summer_fleet, state_url, "runs", "prune", "--older-than", "0.000001", "--json")
    assert pruned.code == 0, pruned.stderr
    report = json.loads(pruned.stdout)
    assert report["runs"] == 2
    assert report["results"] == 8
    empty = await cli(summer_fleet, state_url, "runs", "list")
    assert "no runs recorded in" in empty.stdout
    gone = await cli(summer_fleet, state_url, "status", task_id)
    assert gone.code == 1
    assert "no result of task" in gone.stderr


@pytest.mark.integration
async def test_without_a_store_a_named_run_run_again_says_its_results_are_old(
    summer_fleet: SummerFleet, tmp_path: Path
) -> None:
    path, _ = plan_file(tmp_path, summer_fleet, "cached")
    name = f"cached{summer_fleet.suffix}"
    try:
        async with summer_fleet.processes(1) as workers:
            await workers.wait_ready(summer_fleet.bus)
            first = await cli(summer_fleet, None, "run", str(path), "--name", name, "--no-progress")
            # The note allows a second of clock skew between hosts: a run again within it is not "before".
            await asyncio.sleep(1.5)
            again = await cli(summer_fleet, None, "run", str(path), "--name", name, "--no-progress")
    finally:
        await summer_fleet.bus.delete_queue(f"relaybus.reply.{name}")
    assert first.code == 0, first.stderr
    assert "note:" not in first.stderr
    assert again.code == 0, again.stderr
    assert f"note: run '{name}' had already completed: 4 of 4 results finished before" in again.stderr
    assert "--new" in again.stderr


def test_runs_and_status_without_a_store_say_how_to_give_one(tmp_path: Path) -> None:
    env = {"RELAYBUS_STATE_URL": ""}
    for args in (("runs", "list"), ("status", "5f0c3e1e-7d1a-4a57-9d35-6b0b9c0f8a11")):
        proc = run_cli(*args, env=env)
        assert proc.returncode == 2, proc.stderr
        assert "--state-url" in proc.stderr
        assert "RELAYBUS_STATE_URL" in proc.stderr


def test_runs_show_of_an_unknown_run_is_one_line_and_exit_1(tmp_path: Path) -> None:
    proc = run_cli("runs", "show", "nope", "--state-url", f"sqlite:///{tmp_path / 's.db'}")
    assert proc.returncode == 1
    assert "no run 'nope' is recorded" in proc.stderr


async def test_runs_show_gives_each_tasks_trace_id_in_json_and_text(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    one, two, three = uuid4(), uuid4(), uuid4()
    shared, other = "0af7651916cd43dd8448eb211c80319c", "4bf92f3577b34da6a3ce929d0e0e4736"
    async with store_from_url(url) as store:
        runs = {
            "one-trace": [(one, shared), (two, shared), (three, None)],
            "two-traces": [(uuid4(), shared), (uuid4(), other), (uuid4(), None)],
        }
        for run_id, tasks in runs.items():
            await store.record_run(run_id, "p", [(task_id, "t", ()) for task_id, _ in tasks])
            for task_id, trace_id in tasks:
                await store.task_event(run_id, task_id, "published", trace_id=trace_id)
    as_json = run_cli("runs", "show", "one-trace", "--json", "--state-url", url)
    assert as_json.returncode == 0, as_json.stderr
    detail = json.loads(as_json.stdout)
    assert {task["task_id"]: task["trace_id"] for task in detail["tasks"]} == {
        str(one): shared,
        str(two): shared,
        str(three): None,
    }
    wide = {"COLUMNS": "200"}
    text = run_cli("runs", "show", "one-trace", "--state-url", url, env=wide)
    assert f"trace_id: {shared}" in text.stdout.splitlines()  # one trace: named once, above the table
    assert text.stdout.count(shared) == 1
    assert "trace left out" not in text.stdout
    for columns in (80, 200):
        several = run_cli("runs", "show", "two-traces", "--state-url", url, env={"COLUMNS": str(columns)})
        assert several.returncode == 0, several.stderr
        assert_fits(several.stdout, columns)
        assert "trace_id:" not in several.stdout
        if columns == 80:
            assert "trace left out at 80 columns" in several.stdout
            continue
        # Room for a column of trace ids: each task's own, in plan order.
        header = next(line.split() for line in several.stdout.splitlines() if line.split()[:1] == ["task"])
        column = header.index("trace")
        ids = {str(task_id) for task_id, _ in runs["two-traces"]}
        rows = [
            line.split()
            for line in several.stdout.splitlines()
            if line.split()[:1] and line.split()[0] in ids
        ]
        assert [row[column] for row in rows] == [shared, other, "-"]


def test_new_and_run_id_exclude_each_other(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("name: p\ntasks:\n  - {key: a, topic: x.y}\n")
    proc = run_cli("run", str(path), "--name", "n", "--new", "--run-id", "r", "--amqp-url", "memory://")
    assert "--new and --run-id exclude each other" in usage_error(proc, "run")


def test_a_store_that_is_down_is_one_line_naming_it_with_the_password_masked() -> None:
    url = "postgresql://relaybus:s3cret@127.0.0.1:1/relaybus"
    proc = run_cli("runs", "list", "--state-url", url)
    assert proc.returncode == 1
    assert "127.0.0.1:1" in proc.stderr
    assert "s3cret" not in proc.stderr


def test_a_worker_whose_store_is_down_at_start_refuses_to_start_naming_it() -> None:
    url = "postgresql://relaybus:s3cret@127.0.0.1:1/relaybus"
    proc = run_cli(
        "worker", "tests.agents.sample_agents:Echo", "--amqp-url", "memory://", "--state-url", url, timeout=60
    )
    assert proc.returncode == 1, proc.stderr
    error = [line for line in proc.stderr.splitlines() if line.startswith("relaybus: error:")]
    assert error, proc.stderr
    assert "127.0.0.1:1" in error[0]
    assert "s3cret" not in proc.stderr
    assert "RELAYBUS_STATE_URL" in error[0]  # the fix
