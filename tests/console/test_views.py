"""The read-only pages over a MemoryBus and a SQLite store: runs paginated newest first, a run's tasks and
DAG, a task's timeline and result, every stored string escaped, and the Work chart fed from the store."""

from __future__ import annotations

import re
import sqlite3
from uuid import uuid4

from .conftest import Stack
from .support import record_run

SCRIPT = "<script>alert('x')</script>"


async def test_runs_are_paginated_newest_first(stack: Stack) -> None:
    from datetime import UTC, datetime, timedelta

    t0 = datetime(2030, 1, 1, tzinfo=UTC)
    for n in range(120):
        await stack.store.record_run(
            f"run-{n:03}", "plan", [(uuid4(), "t", ())], started_at=t0 + timedelta(minutes=n)
        )
    _, first, _ = await stack.client.get("/work")
    rows = re.findall(r'<tr data-run="([^"]+)"', first)
    assert rows == [f"run-{n:03}" for n in range(119, 69, -1)]
    assert 'rel="next" href="/work?page=1"' in first
    assert 'rel="prev"' not in first
    _, last, _ = await stack.client.get("/work?page=2")
    assert re.findall(r'<tr data-run="([^"]+)"', last) == [f"run-{n:03}" for n in range(19, -1, -1)]
    assert 'rel="next"' not in last
    assert 'rel="prev" href="/work?page=1"' in last
    status, _, _ = await stack.client.get("/work?page=-1")
    assert status == 400


async def test_a_run_shows_its_tasks_and_its_dag_by_dependency_level(stack: Stack) -> None:
    a, b, c = uuid4(), uuid4(), uuid4()
    await record_run(
        stack.store,
        "r1",
        tasks=[(a, "plan.draft", ()), (b, "plan.review", (a,)), (c, "plan.edit", (a, b))],
        finish=[a],
    )
    status, html, _ = await stack.client.get("/runs/r1")
    assert status == 200
    assert re.findall(r'<tr data-task="([^"]+)"', html) == [str(a), str(b), str(c)]
    assert html.count('class="box status-success"') == 1
    assert html.count('class="box status-published"') == 2
    assert html.count('<line class="edge"') == 3
    levels = re.findall(r"<li>level (\d+): ([^<]*)</li>", html)
    assert [(n, ids.split()) for n, ids in levels] == [
        ("0", [str(a)[:8]]),
        ("1", [str(b)[:8]]),
        ("2", [str(c)[:8]]),
    ]
    assert "Cancel the unfinished tasks of this run" in html


async def test_a_task_shows_its_timeline_and_result(stack: Stack) -> None:
    done, waiting = uuid4(), uuid4()
    tasks = [(done, "t", ()), (waiting, "t", (done,))]
    await record_run(stack.store, "r4", tasks=tasks, finish=[done], output={"answer": 42}, worker="w-host:42")
    _, html, _ = await stack.client.get(f"/runs/r4/tasks/{done}")
    events = re.findall(r"<tr><td>[^<]+</td><td>(\w+)</td><td>([^<]+)</td>", html)
    assert events == [("published", "-"), ("started", "w-host:42"), ("finished", "-")]
    assert re.search(r"<pre id=\"output\">\{\s+&#34;answer&#34;: 42\s+\}</pre>", html)
    assert "Cancel this task" not in html
    _, pending, _ = await stack.client.get(f"/runs/r4/tasks/{waiting}")
    assert "No result stored" in pending
    assert "Cancel this task" in pending


async def test_a_task_shows_the_trace_id_it_was_published_with(stack: Stack) -> None:
    traced, untraced = uuid4(), uuid4()
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    await record_run(stack.store, "r-t", tasks=[(traced, "t", ())], finish=[traced], trace_id=trace_id)
    await record_run(stack.store, "r-u", tasks=[(untraced, "t", ())])
    status, html, _ = await stack.client.get(f"/runs/r-t/tasks/{traced}")
    assert status == 200
    assert f'Trace id: <code id="trace-id">{trace_id}</code>' in html
    # Only a trace id is shown there: anything else in the column (written by hand) reads as none.
    with sqlite3.connect(stack.store.url.removeprefix("sqlite:///")) as db:
        db.execute("UPDATE relaybus_run_tasks SET trace_id = ? WHERE run_id = 'r-u'", (SCRIPT,))
    _, plain, _ = await stack.client.get(f"/runs/r-u/tasks/{untraced}")
    assert 'id="trace-id"' not in plain
    assert "Trace id: not recorded" in plain
    assert "alert(" not in plain


async def test_every_stored_string_is_shown_as_text(stack: Stack) -> None:
    t = uuid4()
    await record_run(stack.store, "r-x", name=SCRIPT, tasks=[(t, SCRIPT, ())], finish=[t], output=SCRIPT)
    for path in ("/work", "/runs/r-x", f"/runs/r-x/tasks/{t}"):
        _, html, _ = await stack.client.get(path)
        assert "<script>alert" not in html
        assert "&lt;script&gt;alert(" in html


async def test_the_work_chart_counts_the_finished_tasks_of_recorded_runs(stack: Stack) -> None:
    await record_run(stack.store, "r-chart", finish=[])  # unfinished tasks are not counted
    await record_run(stack.store, "r-done", tasks=[(d := uuid4(), "t", ())], finish=[d])
    assert stack.console.sampler is not None
    await stack.console.sampler.sample()
    _, html, _ = await stack.client.get("/work")
    assert re.search(r'<span class="status-success">success 1</span>', html)
    assert 'class="line line-2 series-success"' in html  # in the tasks/s chart, after the heartbeats' line
    assert html.count("<polyline") >= 4  # tasks/s (success), p50, p99, tokens
    assert "Tasks per second" in html
    assert "Tokens per minute" in html
    await record_run(stack.store, "r-later", tasks=[(e := uuid4(), "t", ())], finish=[e])
    await stack.console.sampler.sample()
    _, html, _ = await stack.client.get("/work")
    assert '<span class="status-success">success 2</span>' in html


async def test_without_a_store_the_work_page_says_what_to_give(stack: Stack) -> None:
    import aiohttp

    from relaybus.bus.memory import MemoryBus
    from relaybus.console import Console, ConsoleConfig

    async with (
        MemoryBus() as bus,
        Console(bus, ConsoleConfig(port=0)) as console,
        aiohttp.ClientSession() as s,
    ):
        async with s.get(console.url + "/work") as response:
            html = await response.text()
        async with s.get(console.url + "/runs/any") as response:
            assert response.status == 404
    assert "--state-url" in html
    assert '<table id="runs">' not in html
    assert html.count("<figure>") == 1  # tasks per second from the heartbeats, nothing from a store
    assert "all (heartbeats)" in html
