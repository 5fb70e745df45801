"""The console's only writes: cancel a task or a run's unfinished tasks, replay a dead letter (optionally
with a corrected body), purge the dead letters.

Each is two POSTs: the first (from the page's button) answers a confirmation page that says what will
happen; the second (``confirm=yes``, with the operator token) does it. Both pass the :class:`Guard`. The
operator token is never logged; what was done is logged with the ids it touched.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from uuid import UUID

from aiohttp import web
from multidict import MultiDictProxy
from pydantic import ValidationError

from relaybus.dlq import DeadLetter, purge_dead_letters, replay_dead_letters
from relaybus.gateway.web import validation_details
from relaybus.log import get_logger
from relaybus.messages import AgentTask

from .context import ConsoleContext
from .views import ReadViews, letter_text

__all__ = ["Actions", "CancelFunction", "corrected_body"]

CancelFunction = Callable[[UUID, str], Awaitable[None]]
_REASON = "cancelled from the console"
_TASK_KEYS = ("task.", "agent.")


class BadBody(web.HTTPBadRequest):
    """A corrected body that cannot be sent: not JSON, too large, or not a valid task."""


def corrected_body(letter: DeadLetter, text: str | None, max_bytes: int) -> bytes | None:
    """The body to replay ``letter`` with: None (send the dead one) when ``text`` is empty or the same JSON
    as the dead body; else ``text`` as bytes, once it is JSON within ``max_bytes`` and, for a task, a valid
    ``AgentTask``. Raises :class:`BadBody` saying what is wrong."""
    if text is None or not text.strip():
        return None
    body = text.encode()
    if len(body) > max_bytes:
        raise BadBody(text=f"the corrected body has {len(body)} bytes; the limit is {max_bytes}")
    try:
        value = json.loads(body)
    except ValueError as exc:
        raise BadBody(text=f"the corrected body is not JSON: {exc}") from None
    try:
        if value == json.loads(letter.body):
            return None
    except ValueError:
        pass  # the dead body was not JSON: the corrected one replaces it
    if letter.routing_key.startswith(_TASK_KEYS):
        try:
            AgentTask.model_validate_json(body)
        except ValidationError as exc:
            problems = "; ".join(f"{d['loc']}: {d['msg']}" for d in validation_details(exc)[:10])
            raise BadBody(text=f"the corrected body is not a valid task: {problems}") from None
    return body


class Actions:
    """The POST handlers; see the module docstring."""

    def __init__(self, context: ConsoleContext, views: ReadViews, cancel: CancelFunction) -> None:
        self._c = context
        self._views = views
        self._cancel = cancel
        self._log = get_logger("relaybus.console.actions")

    def _confirm(
        self,
        request: web.Request,
        question: str,
        verb: str,
        back: str,
        *,
        details: str = "",
        fields: Sequence[tuple[str, str]] = (),
    ) -> web.Response:
        return self._views.page(
            "confirm.html",
            title="Please confirm",
            view="",
            question=question,
            details=details,
            verb=verb,
            action=request.path,
            back=back,
            fields=list(fields),
        )

    def _done(self, message: str, back: str, lines: Sequence[str] = (), *, kind: str = "ok") -> web.Response:
        return self._views.page(
            "message.html", title="Done", view="", message=message, lines=list(lines), back=back, kind=kind
        )

    async def _confirmed(self, request: web.Request) -> tuple[MultiDictProxy[str], bool]:
        fields = await self._c.guard.form(request)
        confirmed = fields.get("confirm") == "yes"
        if confirmed:
            self._c.guard.authorize(request, fields)
        return fields, confirmed

    async def cancel_task(self, request: web.Request) -> web.Response:
        _, confirmed = await self._confirmed(request)
        try:
            task_id = UUID(request.match_info["task_id"])
        except ValueError:
            raise web.HTTPBadRequest(text="a task id is a UUID") from None
        if not confirmed:
            return self._confirm(request, f"Cancel task {task_id}?", "cancel it", "/work")
        await self._cancel(task_id, _REASON)
        self._log.info("console_cancel", task_id=str(task_id))
        return self._done(f"Cancel requested for task {task_id}.", "/work")

    async def cancel_run(self, request: web.Request) -> web.Response:
        _, confirmed = await self._confirmed(request)
        run = await self._views.run_of(request)
        unfinished = [t.task_id for t in run.tasks if not t.status.is_finished]
        back = f"/runs/{run.run_id}"
        if not confirmed:
            return self._confirm(
                request,
                f"Cancel the {len(unfinished)} unfinished task(s) of run {run.run_id}?",
                "cancel them",
                back,
                details="\n".join(str(t) for t in unfinished),
            )
        for task_id in unfinished:
            await self._cancel(task_id, _REASON)
        self._log.info("console_cancel_run", run_id=run.run_id, tasks=len(unfinished))
        return self._done(f"Cancel requested for {len(unfinished)} task(s) of run {run.run_id}.", back)

    async def replay(self, request: web.Request) -> web.Response:
        fields, confirmed = await self._confirmed(request)
        message_id = request.match_info["message_id"]
        letter = await self._views.find_letter(message_id)
        text = fields.get("body")
        body = corrected_body(letter, text, self._c.config.max_body_bytes)
        back = "/dead"
        if not confirmed:
            what = "the corrected body below" if body is not None else "its body unchanged"
            return self._confirm(
                request,
                f"Replay dead letter {message_id} to {letter.exchange or '(default)'} / {letter.routing_key} "
                f"with {what}?",
                "replay it",
                back,
                details=body.decode() if body is not None else letter_text(letter),
                fields=[("body", text)] if body is not None and text is not None else (),
            )
        report = await replay_dead_letters(
            self._c.bus,
            ids=[message_id],
            limit=self._c.config.dead_letter_limit,
            idle_s=self._c.config.dead_letter_idle_s,
            replace_body=body,
        )
        self._log.info("console_replay", message_id=message_id, corrected=body is not None)
        if message_id in report.replayed:
            return self._done(f"Replayed {message_id}.", back)
        reason = report.failed.get(message_id, "it was not found among the letters read (taken meanwhile?)")
        return self._done(f"Kept {message_id}: {reason}", back, kind="error")

    async def purge(self, request: web.Request) -> web.Response:
        _, confirmed = await self._confirmed(request)
        if not confirmed:
            return self._confirm(
                request, "Drop every dead letter in relaybus.dead, for good?", "purge them", "/dead"
            )
        count = await purge_dead_letters(self._c.bus)
        self._log.info("console_purge", count=count)
        return self._done(f"Purged {count} dead letter(s).", "/dead")
