"""run_plan on the in-memory bus: DAG order, parallelism, dependencies' outputs, failures, resume."""

from __future__ import annotations

import asyncio
from uuid import uuid4

import pytest

from relaybus import AgentTask, ExecutionResult, ExecutionStatus, PlanError, Usage
from relaybus.bus.codec import encode_result
from relaybus.bus.memory import MemoryBus
from relaybus.orchestrator import ModelPrice, Plan, PlanProgress, PlanResult, ProjectOrchestrator, parse_plan

from .conftest import eventually
from .responder import Responder


def t(name: str, *deps: AgentTask, topic: str = "work.x", timeout_s: float = 30) -> AgentTask:
    return AgentTask(topic=topic, prompt=name, depends_on=tuple(d.id for d in deps), timeout_s=timeout_s)


def diamond() -> list[AgentTask]:
    a = t("a")
    b = t("b", a)
    c = t("c", a)
    d = t("d", b, c)
    return [a, b, c, d]


async def test_each_task_starts_after_its_dependencies_finished(bus: MemoryBus) -> None:
    worker = Responder(bus, delay=lambda _t: 0.05)
    await worker.start()
    a, b, c, d = diamond()
    e = t("e", d)
    async with ProjectOrchestrator(bus) as orchestrator:
        result = await orchestrator.run_plan([e, d, c, b, a])  # listed backwards on purpose
    assert result.ok
    assert list(result.results) == [e.id, d.id, c.id, b.id, a.id]  # plan order kept
    for task in (a, b, c, d, e):
        for dep in task.depends_on:
            end = worker.by_id(dep).end
            assert end is not None
            assert worker.by_id(task.id).start >= end


async def fan_out(bus: MemoryBus) -> tuple[Responder, PlanResult]:
    """9 tasks of 0.3 s in two layers: one root, then 8 leaves that depend on it."""
    worker = Responder(bus, delay=lambda _t: 0.3)
    await worker.start()
    root = t("root")
    leaves = [t(f"leaf{i}", root) for i in range(8)]
    async with ProjectOrchestrator(bus) as orchestrator:
        return worker, await orchestrator.run_plan([root, *leaves])


async def test_independent_tasks_run_in_parallel(bus: MemoryBus) -> None:
    worker, result = await fan_out(bus)
    assert result.ok
    assert worker.max_running == 8


@pytest.mark.slow
async def test_the_speedup_of_a_parallel_plan_is_measured(bus: MemoryBus) -> None:
    _, result = await fan_out(bus)
    # ~0.6 s instead of 2.7 s one after another (ideal speed-up 4.5)
    assert result.sequential_s == pytest.approx(9 * 0.3, rel=0.3)
    assert result.speedup > 2.5
    assert result.wall_s < result.sequential_s / 2.5


async def test_a_dependent_task_receives_its_dependencies_outputs_by_task_id(bus: MemoryBus) -> None:
    worker = Responder(
        bus,
        behave=lambda task: ExecutionResult.success(task.id, {"from": task.prompt, "n": len(task.prompt)}),
    )
    await worker.start()
    a, b, c, d = diamond()
    async with ProjectOrchestrator(bus) as orchestrator:
        result = await orchestrator.run_plan([a, b, c, d])
    sent = worker.by_id(d.id).task
    assert sent.input["dependencies"] == {str(b.id): {"from": "b", "n": 1}, str(c.id): {"from": "c", "n": 1}}
    assert worker.by_id(b.id).task.input["dependencies"] == {str(a.id): {"from": "a", "n": 1}}
    assert "dependencies" not in worker.by_id(a.id).task.input
    assert result.tasks[d.id].input["dependencies"] == sent.input["dependencies"]
    assert result.outputs[d.id] == {"from": "d", "n": 1}


async def test_a_failed_task_cancels_its_dependents_with_the_reason_without_publishing_them(
    bus: MemoryBus,
) -> None:
    def behave(task: AgentTask) -> ExecutionResult:
        if task.prompt == "b":
            return ExecutionResult.failed(task.id, ExecutionStatus.FAILURE, "ValueError", "bad draft")
        return ExecutionResult.success(task.id, task.prompt)

    worker = Responder(bus, behave=behave, delay=lambda _t: 0.02)
    await worker.start()
    a, b, c, d = diamond()
    e = t("e", d)
    lone = t("lone")
    plan = Plan((a, b, c, d, e, lone), name="p", keys={a.id: "a", b.id: "b", d.id: "d", e.id: "e"})
    async with ProjectOrchestrator(bus) as orchestrator:
        result = await orchestrator.run_plan(plan)
    assert not result.ok
    assert result.results[b.id].status is ExecutionStatus.FAILURE
    assert {result.results[x.id].status for x in (a, c, lone)} == {ExecutionStatus.SUCCESS}
    for dependent in (d, e):
        got = result.results[dependent.id]
        assert got.status is ExecutionStatus.CANCELLED
        assert got.error is not None
        assert got.error.type == "DependencyFailed"
        assert "'b' ended FAILURE: bad draft" in got.error.message
    assert d.id not in worker.ids()
    assert e.id not in worker.ids()
    assert result.statuses[ExecutionStatus.CANCELLED] == 2
    assert result.statuses[ExecutionStatus.FAILURE] == 1
    assert [r.task_id for r in result.failed] == [b.id, d.id, e.id]


async def test_a_result_for_a_plan_task_never_published_is_dropped_once_the_plan_ended(
    bus: MemoryBus,
) -> None:
    worker = Responder(
        bus, behave=lambda task: ExecutionResult.failed(task.id, ExecutionStatus.FAILURE, "E", "e")
    )
    await worker.start()
    a = t("a")
    b = t("b", a)
    async with ProjectOrchestrator(bus) as orchestrator:
        result = await orchestrator.run_plan([a, b])
        assert result.results[b.id].status is ExecutionStatus.CANCELLED
        # e.g. an earlier run of the same plan file published b: the plan no longer waits for it
        late = ExecutionResult.success(b.id, "late")
        await bus.publish(encode_result(late, reply_to=orchestrator.reply_queue))
        await bus.join()
        assert orchestrator.duplicates_dropped == 1


async def test_a_timed_out_or_rejected_dependency_also_cancels_dependents(bus: MemoryBus) -> None:
    worker = Responder(
        bus, behave=lambda task: None if task.prompt == "silent" else ExecutionResult.success(task.id)
    )
    await worker.start()
    silent = t("silent", timeout_s=0.2)
    after_silent = t("after", silent)
    nowhere = t("nowhere", topic="nobody.home")
    after_nowhere = t("after2", nowhere)
    async with ProjectOrchestrator(bus) as orchestrator:
        result = await asyncio.wait_for(
            orchestrator.run_plan([silent, after_silent, nowhere, after_nowhere]), 10
        )
    assert result.results[silent.id].status is ExecutionStatus.TIMEOUT
    assert result.results[nowhere.id].status is ExecutionStatus.REJECTED
    assert result.results[after_silent.id].status is ExecutionStatus.CANCELLED
    assert result.results[after_nowhere.id].status is ExecutionStatus.CANCELLED
    error = result.results[after_nowhere.id].error
    assert error is not None
    assert "ended REJECTED" in error.message


async def test_a_cycle_or_missing_dependency_is_refused_before_anything_is_published(bus: MemoryBus) -> None:
    worker = Responder(bus)
    await worker.start()
    a = t("a")
    b = t("b", a)
    looped = a.model_copy(update={"depends_on": (b.id,)})
    ghost = AgentTask(topic="work.x", depends_on=(uuid4(),))
    async with ProjectOrchestrator(bus) as orchestrator:
        with pytest.raises(PlanError, match="cycle"):
            await orchestrator.run_plan([t("fine"), looped, b])
        with pytest.raises(PlanError, match="not in the plan"):
            await orchestrator.run_plan([t("fine"), ghost])
        with pytest.raises(PlanError, match="appears twice"):
            await orchestrator.run_plan([a, a])
    await bus.join()
    assert worker.seen == []


async def test_progress_reports_each_publish_and_each_result(bus: MemoryBus) -> None:
    worker = Responder(bus)
    await worker.start()
    a, b, c, d = diamond()
    events: list[PlanProgress] = []
    async with ProjectOrchestrator(bus) as orchestrator:
        await orchestrator.run_plan([a, b, c, d], on_progress=events.append)
    finished = [e for e in events if e.kind == "finished"]
    assert [e.kind for e in events].count("published") == 4
    assert [e.done for e in finished] == [1, 2, 3, 4]
    assert {e.total for e in events} == {4}
    assert finished[0].task.id == a.id
    assert finished[-1].task.id == d.id
    assert all(e.result is not None for e in finished)


async def test_a_broken_progress_callback_does_not_break_the_plan(bus: MemoryBus) -> None:
    worker = Responder(bus)
    await worker.start()

    def explode(_event: PlanProgress) -> None:
        raise RuntimeError("display crashed")

    async with ProjectOrchestrator(bus) as orchestrator:
        result = await orchestrator.run_plan(diamond(), on_progress=explode)
    assert result.ok


async def test_max_in_flight_bounds_the_tasks_published_at_once(bus: MemoryBus) -> None:
    worker = Responder(bus, delay=lambda _t: 0.05)
    await worker.start()
    async with ProjectOrchestrator(bus) as orchestrator:
        result = await orchestrator.run_plan([t(str(i)) for i in range(20)], max_in_flight=3)
    assert result.ok
    assert worker.max_running == 3


async def test_usage_and_cost_are_summed_per_task_agent_and_plan(bus: MemoryBus) -> None:
    def behave(task: AgentTask) -> ExecutionResult:
        usage = Usage(prompt_tokens=100 * int(task.prompt), completion_tokens=10, requests=1)
        agent = "writer" if task.prompt != "1" else "planner"
        return ExecutionResult.success(task.id, {"model": "small"}, agent=agent, usage=usage)

    worker = Responder(bus, behave=behave)
    await worker.start()
    one = t("1")
    tasks = [one, t("2", one), t("3", one)]
    prices = {"small": ModelPrice(prompt_per_million=1000, completion_per_million=2000)}
    async with ProjectOrchestrator(bus, prices=prices) as orchestrator:
        result = await orchestrator.run_plan(tasks)
    assert result.usage == Usage(prompt_tokens=600, completion_tokens=30, requests=3)
    assert result.usage_by_agent == {
        "planner": Usage(prompt_tokens=100, completion_tokens=10, requests=1),
        "writer": Usage(prompt_tokens=500, completion_tokens=20, requests=2),
    }
    assert result.cost(one.id) == pytest.approx((100 * 1000 + 10 * 2000) / 1e6)
    assert result.cost_by_agent["writer"] == pytest.approx((500 * 1000 + 20 * 2000) / 1e6)
    assert result.total_cost == pytest.approx((600 * 1000 + 30 * 2000) / 1e6)


RESUMABLE = """\
name: resumable
tasks:
  - {key: a, topic: work.x, prompt: a}
  - {key: b, topic: work.x, prompt: b, depends_on: [a]}
  - {key: c, topic: work.x, prompt: c, depends_on: [a]}
  - {key: d, topic: work.x, prompt: d, depends_on: [b, c]}
"""


async def test_a_restarted_named_orchestrator_collects_waiting_results_and_finishes_the_plan(
    bus: MemoryBus,
) -> None:
    worker = Responder(bus, delay=lambda task: 0.4 if task.prompt in "bc" else 0.0)
    await worker.start()
    name = f"resume-{uuid4().hex[:8]}"
    plan = parse_plan(RESUMABLE, run_id="run-1")
    a, b, c, d = plan.tasks
    first = ProjectOrchestrator(bus, name=name)
    published: set[str] = set()

    def track(event: PlanProgress) -> None:
        if event.kind == "published":
            published.add(event.key)

    running = asyncio.create_task(first.run_plan(plan, on_progress=track))
    await eventually(lambda: {"b", "c"} <= published, what="b and c published")
    running.cancel()  # the orchestrator "dies" while b and c run
    with pytest.raises(asyncio.CancelledError):
        await running
    await first.close()
    await bus.join()  # the worker finishes b and c: their results now wait in relaybus.reply.<name>
    assert len(worker.seen) == 3
    assert bus.stats(f"relaybus.reply.{name}").ready == 2

    again = parse_plan(RESUMABLE, run_id="run-1")
    assert [x.id for x in again.tasks] == [x.id for x in plan.tasks]
    async with ProjectOrchestrator(bus, name=name) as second:
        result = await second.run_plan(again)
    assert result.ok
    assert worker.ids().count(a.id) == 2  # its result went to the first run: asked again (workers dedupe)
    assert worker.ids().count(b.id) == 1  # collected from the reply queue, not published again
    assert worker.ids().count(c.id) == 1
    assert worker.ids().count(d.id) == 1
    assert result.timings[b.id].published_s is None
    assert worker.by_id(d.id).task.input["dependencies"] == {
        str(b.id): {"prompt": "b", "input": {"dependencies": {str(a.id): {"prompt": "a", "input": {}}}}},
        str(c.id): {"prompt": "c", "input": {"dependencies": {str(a.id): {"prompt": "a", "input": {}}}}},
    }
    await bus.delete_queue(f"relaybus.reply.{name}")


async def test_cancelling_plan_tasks_ends_them_and_their_dependents_without_publishing(
    bus: MemoryBus,
) -> None:
    worker = Responder(bus, delay=lambda task: {"a": 0.3, "slow": 10.0}.get(task.prompt, 0.0))
    await worker.start()
    a = t("a")
    b = t("b", a)
    c = t("c", b)
    slow = t("slow", timeout_s=30)
    after_slow = t("after-slow", slow)
    async with ProjectOrchestrator(bus) as orchestrator:
        running = asyncio.create_task(orchestrator.run_plan([a, b, c, slow, after_slow]))
        await eventually(lambda: len(worker.seen) >= 2, what="a and slow on the worker")
        await orchestrator.cancel(b.id, "b is not needed")  # waiting for a: never published
        await orchestrator.cancel(slow.id, "too slow")  # running on the worker: the wait ends now
        result = await asyncio.wait_for(running, 5)
    status = {task.prompt: result.results[task.id].status for task in (a, b, c, slow, after_slow)}
    assert status == {
        "a": ExecutionStatus.SUCCESS,
        "b": ExecutionStatus.CANCELLED,
        "c": ExecutionStatus.CANCELLED,
        "slow": ExecutionStatus.CANCELLED,
        "after-slow": ExecutionStatus.CANCELLED,
    }
    assert (result.results[b.id].error or pytest.fail("no error")).message == "b is not needed"
    assert (
        "ended CANCELLED: b is not needed" in (result.results[c.id].error or pytest.fail("no error")).message
    )
    assert {b.id, c.id, after_slow.id}.isdisjoint(worker.ids())
