"""``relaybus console``: serves the pages until SIGTERM (exit 0), read-only without a token, with actions
when the variable named by ``--operator-token-env`` holds one; a short token is refused at start."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import httpx

from relaybus.cli import build_parser


def test_the_command_takes_its_options() -> None:
    args = build_parser("console").parse_args(
        ["console", "--port", "0", "--operator-token-env", "MY_TOKEN", "--state-url", "sqlite:///x.db"]
    )
    assert (args.port, args.operator_token_env, args.state_url) == (0, "MY_TOKEN", "sqlite:///x.db")


async def _start(env: dict[str, str], *extra: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "relaybus",
        "console",
        "--amqp-url",
        "memory://",
        "--port",
        "0",
        *extra,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **env},
    )


async def test_it_serves_until_sigterm_and_says_whether_actions_are_enabled() -> None:
    proc = await _start({"OPS_TOKEN": "a-long-operator-token-1234"}, "--operator-token-env", "OPS_TOKEN")
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        assert line.startswith("relaybus console listening on http://127.0.0.1:")
        url = line.split()[-1]
        async with httpx.AsyncClient() as client:
            page = await client.get(url + "/fleet")
        assert page.status_code == 200
        assert "operator actions enabled" in page.text
        assert "a-long-operator-token-1234" not in page.text
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    assert proc.stderr is not None
    assert b"a-long-operator-token-1234" not in await proc.stderr.read()


async def test_a_short_token_is_refused_at_start() -> None:
    proc = await _start({"OPS_TOKEN": "short"}, "--operator-token-env", "OPS_TOKEN")
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2
    assert b"shorter than 16 characters" in err
    assert b"short\n" not in err
