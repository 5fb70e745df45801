"""The providers' HTTP path: the same request and the same errors through httpx or straight through aiohttp.

``make_client(transport="aiohttp")`` builds an :class:`AiohttpClient`, whose JSON posts skip httpx; any other
client (``transport="httpx"``, or one a user passes in) goes through httpx. Both are checked against one real
HTTP server on 127.0.0.1.
"""

from __future__ import annotations

import gzip
import json
import socket
from collections.abc import AsyncIterator

import httpx
import pytest
from aiohttp import web

from relaybus.executor.http import AiohttpClient, is_timeout, make_client, open_post, post_capped


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, list[dict[str, object]]]]:
    seen: list[dict[str, object]] = []

    async def echo(request: web.Request) -> web.Response:
        body = await request.read()
        seen.append({"body": body, "content_type": request.headers.get("Content-Type"), **request.query})
        return web.json_response({"got": json.loads(body)})

    async def big(request: web.Request) -> web.Response:
        return web.Response(body=b"x" * 100_000)

    async def gzipped(request: web.Request) -> web.Response:
        return web.Response(body=gzip.compress(b'{"packed": true}'), headers={"Content-Encoding": "gzip"})

    async def moved(request: web.Request) -> web.Response:
        raise web.HTTPFound("/echo")

    async def failing(request: web.Request) -> web.Response:
        return web.json_response({"error": "busy"}, status=503, headers={"Retry-After": "7"})

    async def sse(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for n in range(3):
            await response.write(f"data: {n}\n\n".encode())
        await response.write_eof()
        return response

    app = web.Application()
    for path, handler in (
        ("/echo", echo),
        ("/big", big),
        ("/gzip", gzipped),
        ("/moved", moved),
        ("/fail", failing),
        ("/sse", sse),
    ):
        app.router.add_post(path, handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        await runner.cleanup()


@pytest.fixture(params=["aiohttp", "httpx"])
async def client(request: pytest.FixtureRequest) -> AsyncIterator[httpx.AsyncClient]:
    async with make_client(transport=request.param, max_connections=10) as made:
        yield made


def test_the_aiohttp_transport_gives_the_client_with_the_direct_path() -> None:
    assert isinstance(make_client(transport="aiohttp"), AiohttpClient)
    assert not isinstance(make_client(transport="httpx"), AiohttpClient)


async def test_both_paths_send_the_same_json_bytes_and_content_type(
    server: tuple[str, list[dict[str, object]]],
) -> None:
    base, seen = server
    body = {"model": "m", "messages": [{"role": "user", "content": "héllo"}]}
    for transport in ("aiohttp", "httpx"):
        async with make_client(transport=transport) as made:
            answer = await post_capped(made, f"{base}/echo", body, {"X-Key": "k"}, max_bytes=1024)
        assert answer.is_success
        assert json.loads(answer.content) == {"got": body}
    assert seen[0] == seen[1]
    assert seen[0]["content_type"] == "application/json"
    assert "héllo".encode() in seen[0]["body"]  # type: ignore[operator]


async def test_a_body_past_the_cap_is_cut_and_marked(
    client: httpx.AsyncClient, server: tuple[str, list[dict[str, object]]]
) -> None:
    answer = await post_capped(client, f"{server[0]}/big", {}, {}, max_bytes=1000)
    assert answer.truncated
    assert len(answer.content) == 1000


async def test_a_compressed_body_is_read_decoded(
    client: httpx.AsyncClient, server: tuple[str, list[dict[str, object]]]
) -> None:
    answer = await post_capped(client, f"{server[0]}/gzip", {}, {}, max_bytes=1000)
    assert json.loads(answer.content) == {"packed": True}


async def test_redirects_are_not_followed(
    client: httpx.AsyncClient, server: tuple[str, list[dict[str, object]]]
) -> None:
    answer = await post_capped(client, f"{server[0]}/moved", {}, {}, max_bytes=1000)
    assert answer.status_code == 302
    assert server[1] == []  # the target was never asked


async def test_an_error_answer_raises_the_httpx_status_error_with_its_headers(
    client: httpx.AsyncClient, server: tuple[str, list[dict[str, object]]]
) -> None:
    answer = await post_capped(client, f"{server[0]}/fail", {}, {}, max_bytes=1000)
    with pytest.raises(httpx.HTTPStatusError) as raised:
        answer.response.raise_for_status()
    assert raised.value.response.status_code == 503
    assert raised.value.response.headers["retry-after"] == "7"
    assert raised.value.response.request.url.path == "/fail"
    assert raised.value.response.json() == {"error": "busy"}


async def test_a_refused_connection_is_an_httpx_transport_error_not_a_timeout(
    client: httpx.AsyncClient,
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound, never listening: connections are refused
        with pytest.raises(httpx.TransportError) as raised:
            await post_capped(client, f"http://127.0.0.1:{port}/", {}, {}, max_bytes=10)
    assert not is_timeout(raised.value)


async def test_a_streamed_answer_arrives_in_pieces_on_both_paths(
    client: httpx.AsyncClient, server: tuple[str, list[dict[str, object]]]
) -> None:
    async with open_post(client, f"{server[0]}/sse", {}, {}) as streamed:
        assert streamed.is_success
        assert streamed.headers["content-type"] == "text/event-stream"
        received = b"".join([chunk async for chunk in streamed.chunks])
    assert received == b"data: 0\n\ndata: 1\n\ndata: 2\n\n"


async def test_the_direct_path_and_the_httpx_api_share_one_aiohttp_session(
    server: tuple[str, list[dict[str, object]]],
) -> None:
    async with AiohttpClient(max_connections=5, connect_timeout_s=5) as made:
        await made.post(f"{server[0]}/echo", json={"via": "httpx"})
        session = made.session()
        await post_capped(made, f"{server[0]}/echo", {"via": "direct"}, {}, max_bytes=100)
        assert made.session() is session
    assert session.closed
