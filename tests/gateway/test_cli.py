"""``relaybus gateway`` as a real process in front of a real ``relaybus worker`` process on RabbitMQ."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import httpx
import pytest

from tests.agents import sample_agents as sa
from tests.agents.processes import REPO_ROOT, Fleet, fleet

pytestmark = pytest.mark.integration

__all__ = ["fleet"]  # the fixture, imported for the tests below

TOKEN = "cli-token-0123456789abcdef"


async def _start_gateway(
    fleet: Fleet, *args: str, env: dict[str, str] | None = None
) -> tuple[asyncio.subprocess.Process, str]:
    child_env = {**os.environ, "RELAYBUS_AMQP_URL": fleet.amqp_url, **(env or {})}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "relaybus",
        "--log-json",
        "gateway",
        "--port",
        "0",
        *args,
        cwd=REPO_ROOT,
        env=child_env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    async with asyncio.timeout(30):
        line = (await proc.stdout.readline()).decode()
    assert line.startswith("relaybus gateway listening on "), line + (await proc.stderr.read()).decode()  # type: ignore[union-attr]
    return proc, line.rsplit(" ", 1)[1].strip()


async def test_the_gateway_process_serves_a_worker_process_and_exits_0_on_sigterm(fleet: Fleet) -> None:
    await fleet.start("Echo")
    proc, url = await _start_gateway(fleet, env={"RELAYBUS_GATEWAY_TOKENS": TOKEN})
    try:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            refused = await http.post("/tasks", json={"topic": fleet.topic("echo")})
            answered = await http.post(
                "/tasks?wait=20", json={"topic": fleet.topic("echo"), "prompt": "via http"}, headers=headers
            )
            for _ in range(100):  # the card fills in as the gateway hears the worker's heartbeat
                card = (await http.get("/.well-known/agent-card.json")).json()
                if card["skills"]:
                    break
                await asyncio.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            code = await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    stderr = (await proc.stderr.read()).decode()  # type: ignore[union-attr]
    assert refused.status_code == 401
    assert answered.status_code == 200
    assert answered.json()["result"]["output"] == {"echo": "via http"}
    assert answered.json()["result"]["worker"] == fleet.workers[0].worker_id  # the other process ran it
    assert sa.name("echo", fleet.suffix) in [skill["id"] for skill in card["skills"]]
    assert code == 0
    assert "gateway_stopped" in stderr
    assert TOKEN not in stderr


async def test_an_open_gateway_warns_at_start_and_a_bad_token_stops_it_with_exit_2(fleet: Fleet) -> None:
    proc, _ = await _start_gateway(fleet)
    proc.send_signal(signal.SIGTERM)
    async with asyncio.timeout(30):
        assert await proc.wait() == 0
    assert "gateway_open" in (await proc.stderr.read()).decode()  # type: ignore[union-attr]
    bad = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "relaybus",
        "gateway",
        "--port",
        "0",
        cwd=REPO_ROOT,
        env={**os.environ, "RELAYBUS_GATEWAY_TOKENS": "tooshort"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(30):
        _out, err = await bad.communicate()
    assert bad.returncode == 2
    assert "shorter than 16 characters" in err.decode()
    assert "tooshort" not in err.decode()
