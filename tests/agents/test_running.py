"""TaskRunner: what a finished run leaves behind."""

from __future__ import annotations

import gc

from relaybus.agents.context import AgentContext
from relaybus.agents.running import Run
from relaybus.messages import AgentTask, ExecutionStatus
from relaybus.testing.agents import AgentTestHarness

from . import sample_agents as sa


async def test_a_finished_task_leaves_no_reference_cycle_for_the_garbage_collector() -> None:
    # Objects in a cycle are freed only by the cyclic collector, whose passes a busy worker pays for.
    async with AgentTestHarness([sa.Echo()]) as h:
        assert (await h.run(AgentTask(topic=sa.topic("echo"), prompt="warm-up"))).ok
        gc.collect()
        gc.disable()
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            results = [await h.run(AgentTask(topic=sa.topic("echo"), prompt=f"t{i}")) for i in range(50)]
            gc.collect()
            cyclic = [type(o).__name__ for o in gc.garbage if isinstance(o, Run | AgentContext)]
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
            gc.enable()
    assert [r.status for r in results] == [ExecutionStatus.SUCCESS] * 50
    assert cyclic == []
