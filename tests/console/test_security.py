"""The console's defences, over plain HTTP: strict headers on every response, no inline script, and a
POST refused when cross-site, without its CSRF token, not a form, too large, or without the operator token."""

from __future__ import annotations

import re
from uuid import uuid4

import pytest

from .conftest import Stack
from .support import TOKEN, csrf_of, record_run

PAGES = ["/fleet", "/work", "/dead", "/no-such-page", "/static/console.js"]


@pytest.mark.parametrize("path", PAGES)
async def test_every_response_carries_the_strict_headers(stack: Stack, path: str) -> None:
    _, _, headers = await stack.client.get(path)
    csp = headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    assert "unsafe-eval" not in csp
    assert "frame-ancestors 'none'" in csp
    assert "default-src 'none'" in csp
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "same-origin"


async def test_the_live_stream_carries_the_strict_headers_too(stack: Stack) -> None:
    async with stack.client.session.get(stack.client.base + "/fleet/events") as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        assert response.headers["X-Frame-Options"] == "DENY"
        assert "script-src 'self'" in response.headers["Content-Security-Policy"]
        first = await response.content.readuntil(b"\n\n")
        assert first.startswith(b'event: fragment\ndata: {"html":')


@pytest.mark.parametrize("path", ["/fleet", "/work", "/dead"])
async def test_pages_have_no_inline_script_and_no_foreign_source(stack: Stack, path: str) -> None:
    _, html, _ = await stack.client.get(path)
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", html, re.S)
    assert scripts == [(' src="/static/console.js" defer', "")]
    assert not re.search(r"<[^>]+\son[a-z]+\s*=", html), "no inline event handler"
    assert not re.search(r"""(src|href)="(https?:)?//""", html)


async def _cancel_form(stack: Stack) -> tuple[str, str]:
    [task_id, _] = await record_run(stack.store, "run-1")
    _, html, _ = await stack.client.get(f"/runs/run-1/tasks/{task_id}")
    return f"/tasks/{task_id}/cancel", csrf_of(html)


async def test_an_action_asks_for_confirmation_then_needs_the_token(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    path, csrf = await _cancel_form(stack)
    status, page = await stack.client.post(path, {"csrf": csrf})
    assert status == 200
    assert "Yes, cancel it" in page
    assert stack.cancelled == []
    status, page = await stack.client.post(path, {"csrf": csrf, "confirm": "yes"})
    assert status == 403
    assert "operator token" in page
    assert stack.cancelled == []
    status, page = await stack.client.post(path, {"csrf": csrf, "confirm": "yes", "token": "wrong" * 8})
    assert status == 403
    assert stack.cancelled == []
    status, page = await stack.client.post(path, {"csrf": csrf, "confirm": "yes", "token": TOKEN})
    assert status == 200
    assert "Cancel requested" in page
    assert TOKEN not in page
    assert [str(task) for task, _ in stack.cancelled] == [path.split("/")[2]]
    assert "console_cancel" in caplog.text  # the action is logged, the token never
    assert TOKEN not in caplog.text


async def test_the_token_may_come_as_a_bearer_header(stack: Stack) -> None:
    path, csrf = await _cancel_form(stack)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    status, _ = await stack.client.post(path, {"csrf": csrf, "confirm": "yes"}, headers)
    assert status == 200
    assert len(stack.cancelled) == 1


async def test_a_post_without_the_csrf_token_is_refused(stack: Stack) -> None:
    path, _ = await _cancel_form(stack)
    for form in ({"confirm": "yes", "token": TOKEN}, {"confirm": "yes", "token": TOKEN, "csrf": "forged"}):
        status, page = await stack.client.post(path, form)
        assert status == 403
        assert "CSRF" in page
    assert stack.cancelled == []


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
    ],
)
async def test_a_cross_site_post_is_refused_even_with_token_and_csrf(
    stack: Stack, headers: dict[str, str]
) -> None:
    path, csrf = await _cancel_form(stack)
    status, page = await stack.client.post(path, {"csrf": csrf, "confirm": "yes", "token": TOKEN}, headers)
    assert status == 403
    assert "cross-site" in page
    assert stack.cancelled == []


async def test_a_post_that_is_not_a_form_is_refused(stack: Stack) -> None:
    path, _ = await _cancel_form(stack)
    async with stack.client.session.post(
        stack.client.base + path, json={"confirm": "yes"}, headers={"Authorization": f"Bearer {TOKEN}"}
    ) as response:
        assert response.status == 415
    assert stack.cancelled == []


async def test_a_body_over_the_cap_is_refused(stack: Stack) -> None:
    path, csrf = await _cancel_form(stack)
    status, page = await stack.client.post(
        path, {"csrf": csrf, "confirm": "yes", "token": TOKEN, "pad": "x" * 70_000}
    )
    assert status == 413
    assert "limit" in page
    assert stack.cancelled == []


async def test_a_read_only_console_refuses_every_action(read_only_stack: Stack) -> None:
    stack = read_only_stack
    path, csrf = await _cancel_form(stack)
    _, html, _ = await stack.client.get("/dead")
    assert "read-only" in html
    assert "disabled" in html
    for form in ({"csrf": csrf}, {"csrf": csrf, "confirm": "yes", "token": TOKEN}):
        status, page = await stack.client.post(path, form)
        assert status == 403
        assert "read-only" in page
    assert stack.cancelled == []


async def test_a_bad_task_id_is_a_clear_400(stack: Stack) -> None:
    _, csrf = await _cancel_form(stack)
    status, page = await stack.client.post("/tasks/not-a-uuid/cancel", {"csrf": csrf})
    assert status == 400
    assert "UUID" in page
    status, page, _ = await stack.client.get(f"/runs/run-1/tasks/{uuid4()}")
    assert status == 404
