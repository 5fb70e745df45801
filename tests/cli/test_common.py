"""Connecting from the command line: a missing or forbidden vhost is named with the permission problem (and
not waited for); a broker that does not answer is waited for by ``relaybus worker`` with backoff and a clear
line each time, until it answers or SIGTERM comes, unless ``--exit-if-down``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.agents import processes
from tests.agents.processes import Fleet, WorkerProcess

from .support import one_error_line, run_cli

fleet = processes.fleet

pytestmark = pytest.mark.integration


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


def with_vhost(amqp_url: str, vhost: str, user: str | None = None, password: str = "") -> str:
    parts = urlsplit(amqp_url)
    netloc = parts.netloc if user is None else f"{user}:{password}@{parts.hostname}:{parts.port or 5672}"
    return urlunsplit((parts.scheme, netloc, "/" + vhost, "", ""))


@pytest.fixture
def forbidden_url(amqp_url: str) -> Iterator[str]:
    """A vhost and a user of this test's own, the user without permissions on it; both deleted afterwards."""
    name = f"relaybus-cli-{uuid.uuid4().hex[:8]}"
    _rabbitmqctl("add_vhost", name)
    try:
        _rabbitmqctl("add_user", name, "pw-" + name)
        try:
            yield with_vhost(amqp_url, name, name, "pw-" + name)
        finally:
            _rabbitmqctl("delete_user", name)
    finally:
        _rabbitmqctl("delete_vhost", name)


def cancel_on(url: str) -> subprocess.CompletedProcess[str]:
    return run_cli("cancel", str(uuid.uuid4()), "--amqp-url", url, timeout=60)


def test_a_missing_vhost_is_named_with_the_fix(amqp_url: str) -> None:
    vhost = f"no-such-vhost-{uuid.uuid4().hex[:8]}"
    proc = cancel_on(with_vhost(amqp_url, vhost))
    assert proc.returncode == 1
    line = one_error_line(proc)
    assert f"refused vhost '{vhost}' to user 'guest'" in line
    assert "does not exist or the user has no permissions on it" in line
    assert f"rabbitmqctl list_permissions -p {vhost}" in line
    assert "InvalidFrameError" not in line
    assert "start RabbitMQ" not in line


def test_a_vhost_the_user_has_no_permissions_on_is_named_with_the_user(forbidden_url: str) -> None:
    parts = urlsplit(forbidden_url)
    proc = cancel_on(forbidden_url)
    assert proc.returncode == 1
    line = one_error_line(proc)
    assert f"refused vhost '{parts.path[1:]}' to user '{parts.username}'" in line
    assert parts.password is not None
    assert parts.password not in proc.stderr


def test_a_worker_does_not_wait_for_a_vhost_that_is_refused(amqp_url: str) -> None:
    url = with_vhost(amqp_url, f"no-such-vhost-{uuid.uuid4().hex[:8]}")
    proc = run_cli("worker", "tests.agents.sample_agents:Echo", "--amqp-url", url, "--log-level", "ERROR")
    assert proc.returncode == 1
    assert "refused vhost" in one_error_line(proc)


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_exit_if_down_exits_1_at_once_with_one_line() -> None:
    url = f"amqp://guest:guest@127.0.0.1:{unused_port()}/"
    proc = run_cli("worker", "tests.agents.sample_agents:Echo", "--amqp-url", url, "--exit-if-down")
    assert proc.returncode == 1
    assert "cannot connect to RabbitMQ at amqp://guest:***@127.0.0.1" in one_error_line(proc)


def waiting_lines(worker: WorkerProcess) -> list[dict[str, object]]:
    lines = [json.loads(line) for line in worker.log().splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("event") == "waiting_for_broker"]


async def until_waited(worker: WorkerProcess, times: int) -> list[dict[str, object]]:
    async with asyncio.timeout(30):
        while len(found := waiting_lines(worker)) < times:
            assert worker.proc.returncode is None, worker.log()
            await asyncio.sleep(0.1)
    return found


@contextlib.asynccontextmanager
async def forwarder(port: int, target: str) -> AsyncIterator[None]:
    """A TCP forwarder 127.0.0.1:``port`` -> the broker of ``target``: the broker "comes up" on ``port``."""
    parts = urlsplit(target)

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(parts.hostname, parts.port or 5672)
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    server = await asyncio.start_server(serve, "127.0.0.1", port)
    try:
        yield
    finally:
        server.close()


async def test_a_worker_waits_for_a_broker_that_is_down_then_connects(fleet: Fleet) -> None:
    port = unused_port()
    parts = urlsplit(fleet.amqp_url)
    url = f"amqp://{parts.username}:{parts.password}@127.0.0.1:{port}{parts.path or '/'}"
    worker = await fleet.start("Echo", amqp_url=url, ready=False)
    first, second = (await until_waited(worker, 2))[:2]
    assert (first["attempt"], first["retry_in_s"]) == (1, 1.0)
    assert (second["attempt"], second["retry_in_s"]) == (2, 2.0)  # backing off
    assert f"127.0.0.1:{port}" in str(first["url"])
    assert "--exit-if-down" in str(first["hint"])
    async with forwarder(port, fleet.amqp_url):
        await fleet.wait_for(
            lambda e: e.routing_key.endswith("heartbeat") and e.payload.get("worker") == worker.worker_id,
            what="the worker to connect once the broker answers",
            process=worker,
        )
        worker.signal(signal.SIGTERM)
        assert await worker.wait() == 0


async def test_sigterm_while_waiting_for_the_broker_exits_0(fleet: Fleet) -> None:
    url = f"amqp://guest:guest@127.0.0.1:{unused_port()}/"
    worker = await fleet.start("Echo", amqp_url=url, ready=False)
    await until_waited(worker, 1)
    worker.signal(signal.SIGTERM)
    assert await worker.wait() == 0
    assert "stopped_while_waiting_for_broker" in worker.log()
