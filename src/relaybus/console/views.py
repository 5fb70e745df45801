"""The console's read-only pages: Fleet, Work (chart and runs), a run, a task, dead letters, one letter;
and the SSE streams that keep Fleet and the Work chart live.

A stream sends an event ``fragment`` (``{"html": ...}``, rendered and escaped here) every ``push_s``
seconds until the client goes away; the page's script puts it in place.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from uuid import UUID

from aiohttp import web

from relaybus.dlq import DeadLetter, list_dead_letters
from relaybus.gateway.web import EventStream
from relaybus.state import RunDetail, RunTask

from .charts import line_chart
from .context import ConsoleContext
from .dag import layout
from .fleet import fleet_of
from .render import age
from .work import STATUSES

__all__ = ["ReadViews", "letter_age", "letter_text"]

_MAX_QUERY = 200


def letter_text(letter: DeadLetter) -> str:
    """The letter's body as text: pretty JSON when it is JSON, else UTF-8 with replacements."""
    try:
        return json.dumps(json.loads(letter.body), indent=2, ensure_ascii=False)
    except ValueError:
        return letter.body.decode("utf-8", "replace")


def letter_age(letter: DeadLetter, now: datetime | None = None) -> str:
    """How old the letter's task is (its ``created_at``); ``-`` when the body says nothing of it."""
    try:
        created = json.loads(letter.body).get("created_at")
        when = datetime.fromisoformat(created) if isinstance(created, str) else None
    except (ValueError, AttributeError):
        return "-"
    if when is None or when.tzinfo is None:
        return "-"
    return age(when, now)


class ReadViews:
    """The GET handlers; see the module docstring."""

    def __init__(self, context: ConsoleContext) -> None:
        self._c = context
        # Reading relaybus.dead takes the letters for a moment: two reads at once would each see a part.
        self._reading_letters = asyncio.Lock()

    def page(self, template: str, **values: object) -> web.Response:
        text = self._c.pages.render(
            template, csrf=self._c.guard.csrf, read_only=self._c.guard.read_only, **values
        )
        return web.Response(text=text, content_type="text/html", charset="utf-8")

    # -- fleet ----------------------------------------------------------------------------------------------
    async def _fleet_values(self) -> dict[str, object]:
        fleet = fleet_of(self._c.directory.workers(), self._c.queues.stats)
        return {"fleet": fleet, "updated": datetime.now(UTC).strftime("%H:%M:%S UTC")}

    async def fleet(self, request: web.Request) -> web.Response:
        return self.page("fleet.html", title="Fleet", view="fleet", **await self._fleet_values())

    async def fleet_events(self, request: web.Request) -> web.StreamResponse:
        async def fragment() -> str:
            return self._c.pages.render("_fleet.html", **await self._fleet_values())

        return await self._stream(request, fragment)

    # -- work -----------------------------------------------------------------------------------------------
    def _chart_values(self) -> dict[str, object]:
        series = self._c.window.series()
        rates: dict[str, list[float | None]] = {"all (heartbeats)": list(series.processed_per_s)}
        if self._c.store is not None:
            rates.update({s: list(series.rates[s]) for s in STATUSES})
        charts = [line_chart("Tasks per second", "tasks/s", rates)]
        if self._c.store is not None:
            charts += [
                line_chart("Duration p50 / p99", "s", {"p50": series.p50_s, "p99": series.p99_s}),
                line_chart("Tokens per minute", "tokens/min", {"tokens": list(series.tokens_per_min)}),
            ]
        return {
            "charts": charts,
            "totals": series.totals,
            "stored": self._c.store is not None,
            "updated": datetime.now(UTC).strftime("%H:%M:%S UTC"),
        }

    async def work(self, request: web.Request) -> web.Response:
        page = _page_number(request)
        size = self._c.config.page_size
        runs = None
        has_next = False
        if self._c.store is not None:
            found = await self._c.store.runs(size + 1, offset=page * size)
            runs, has_next = found[:size], len(found) > size
        return self.page(
            "work.html",
            title="Work",
            view="work",
            runs=runs,
            page=page,
            has_next=has_next,
            **self._chart_values(),
        )

    async def work_events(self, request: web.Request) -> web.StreamResponse:
        async def fragment() -> str:
            return self._c.pages.render("_charts.html", **self._chart_values())

        return await self._stream(request, fragment)

    async def run_of(self, request: web.Request) -> RunDetail:
        """The run the path names; 404 when unknown."""
        if self._c.store is None:
            raise web.HTTPNotFound(text="no state store: start the console with --state-url to see runs")
        run_id = request.match_info["run_id"]
        if len(run_id) > 500:
            raise web.HTTPBadRequest(text="a run id is at most 500 characters")
        run = await self._c.store.run(run_id)
        if run is None:
            raise web.HTTPNotFound(text="no such run in the state store (unknown, or pruned)")
        return run

    async def run(self, request: web.Request) -> web.Response:
        run = await self.run_of(request)
        return self.page("run.html", title=f"Run {run.run_id}", view="work", run=run, dag=layout(run.tasks))

    async def task(self, request: web.Request) -> web.Response:
        run = await self.run_of(request)
        wanted = _uuid(request.match_info["task_id"])
        task: RunTask | None = next((t for t in run.tasks if t.task_id == wanted), None)
        if task is None:
            raise web.HTTPNotFound(text="no such task in this run")
        return self.page("task.html", title=f"Task {task.task_id}", view="work", run=run, task=task)

    # -- dead letters ---------------------------------------------------------------------------------------
    async def _letters(self) -> list[DeadLetter]:
        async with self._reading_letters:
            return await list_dead_letters(
                self._c.bus, limit=self._c.config.dead_letter_limit, idle_s=self._c.config.dead_letter_idle_s
            )

    async def find_letter(self, message_id: str) -> DeadLetter:
        for letter in await self._letters():
            if letter.message_id == message_id:
                return letter
        raise web.HTTPNotFound(text="no dead letter with this message id (among those read)")

    async def dead(self, request: web.Request) -> web.Response:
        query = request.query.get("q", "")[:_MAX_QUERY]
        letters = await self._letters()
        if query:
            letters = [
                x
                for x in letters
                if any(query in (f or "") for f in (x.message_id, x.reason, x.queue, x.preview))
            ]
        now = datetime.now(UTC)
        ages = [letter_age(letter, now) for letter in letters]
        return self.page(
            "dead.html",
            title="Dead letters",
            view="dead",
            letters=letters,
            ages=ages,
            query=query,
            limit=self._c.config.dead_letter_limit,
        )

    async def letter(self, request: web.Request) -> web.Response:
        letter = await self.find_letter(request.match_info["message_id"])
        return self.page(
            "letter.html",
            title=f"Dead letter {letter.message_id}",
            view="dead",
            letter=letter,
            letter_age=letter_age(letter),
            body_text=letter_text(letter),
        )

    # -- streams --------------------------------------------------------------------------------------------
    async def _stream(
        self, request: web.Request, fragment: Callable[[], Awaitable[str]]
    ) -> web.StreamResponse:
        stream = EventStream(request)
        stream.response.headers.update(self._c.stream_headers)
        await stream.open()
        try:
            while not self._c.closing.is_set():
                await stream.send({"html": await fragment()}, event="fragment")
                try:
                    await asyncio.wait_for(self._c.closing.wait(), timeout=self._c.config.push_s)
                except TimeoutError:
                    continue
        except ConnectionResetError:
            pass
        return stream.response


def _page_number(request: web.Request) -> int:
    text = request.query.get("page", "0")
    if not text.isdigit() or len(text) > 6:
        raise web.HTTPBadRequest(text="page must be a whole number (0 is the newest runs)")
    return int(text)


def _uuid(text: str) -> UUID:
    try:
        return UUID(text)
    except ValueError:
        raise web.HTTPBadRequest(text="a task id is a UUID") from None
