"""Security: secrets never show, TLS options reach the connection, and an agent under its own RabbitMQ user.

- A worker process and an in-process bus, executor and command line run with a RabbitMQ password, an
  ``OPENAI_API_KEY`` and an ``ANTHROPIC_API_KEY``, and are made to fail (wrong broker port, provider errors,
  refused hosts); every log line (structlog and stdlib, at DEBUG), repr and error message is searched.
- ``amqps://`` with ``ca_file`` / ``cert_file`` / ``key_file``: the TLS handshake with a local TLS server
  uses the CA and presents the client certificate (no TLS broker is needed for that).
- A worker runs under its own RabbitMQ user whose permissions cover only its own queues
  (:data:`AGENT_PERMISSIONS`, the regexes the README recommends): it works, and it cannot read another agent's
  queue nor the dead letters.

That the executor, its providers, both buses, a worker and an orchestrator keep keys and passwords only
inside ``Secret`` (no attribute shows them) is specified in ``tests/test_secrets.py``, without a broker.
``api`` mode refusing unconfigured hosts, ``script`` mode refusing unregistered commands and the delegation
depth limit are specified where they are built: ``tests/executor/test_api_mode.py``,
``tests/executor/test_script_mode.py`` and ``tests/agents/test_worker.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import secrets
import ssl
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
import structlog

from relaybus.bus.amqp import AmqpBus
from relaybus.bus.base import OutgoingMessage, agent_queue_name
from relaybus.exceptions import BusError, ConnectionFailed
from relaybus.executor import TaskExecutor
from relaybus.messages import AgentTask
from relaybus.orchestrator import ProjectOrchestrator
from relaybus.testing import FakeLLMServer
from tests.agents.processes import Fleet
from tests.bus.amqp_support import rabbitmqctl

from .support import figures

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def agent_permissions(agent: str) -> tuple[str, str, str]:
    """(configure, write, read) regexes for a worker process hosting agent ``agent`` on its vhost.

    configure: declare the shared exchanges and ``relaybus.dead`` (idempotent declarations), its own agent
    queue, its private reply and control queues. write: publish tasks and events (``relaybus``), results
    (``amq.default``: the default exchange), dead letters (``relaybus.dlx``), and bind its queues. read:
    consume its own queues and bind them to the two exchanges. Not ``relaybus.dead`` (an operator reads it
    with ``relaybus dlq``) and not other agents' queues.
    """
    name = agent.replace(".", r"\.")
    private = r"relaybus\.(reply|worker)\.[0-9a-f]{32}"
    return (
        rf"^(relaybus|relaybus\.dlx|relaybus\.dead|relaybus\.agent\.{name}|{private})$",
        rf"^(relaybus|relaybus\.dlx|amq\.default|relaybus\.dead|relaybus\.agent\.{name}|{private})$",
        rf"^(relaybus|relaybus\.dlx|relaybus\.agent\.{name}|{private})$",
    )


@dataclass
class BrokerUser:
    name: str
    password: str

    def url(self, base: str) -> str:
        host = base.split("@", 1)[1]  # amqp://guest:guest@127.0.0.1:5672/ -> 127.0.0.1:5672/
        return f"amqp://{quote(self.name)}:{quote(self.password)}@{host}"


class BrokerUsers:
    """Creates RabbitMQ users with the permissions of one agent's worker; the fixture deletes them."""

    def __init__(self) -> None:
        self.names: list[str] = []

    async def for_agent(self, agent: str) -> BrokerUser:
        user = BrokerUser(f"relaybus-test-{uuid.uuid4().hex[:8]}", f"pw-{secrets.token_hex(16)}")
        await rabbitmqctl("add_user", user.name, user.password)
        self.names.append(user.name)
        await rabbitmqctl("set_permissions", "-p", "/", user.name, *agent_permissions(agent))
        return user


@pytest.fixture
async def broker_users() -> AsyncIterator[BrokerUsers]:
    users = BrokerUsers()
    try:
        yield users
    finally:
        for name in users.names:
            await rabbitmqctl("delete_user", name)


async def test_a_worker_under_its_own_user_works_and_cannot_read_other_queues(
    fleet: Fleet, broker_users: BrokerUsers
) -> None:
    agent_user = await broker_users.for_agent(fleet.name("echo"))
    worker = await fleet.start("Echo", amqp_url=agent_user.url(fleet.amqp_url))
    async with ProjectOrchestrator(fleet.bus) as orchestrator:  # the operator's (guest) connection
        results = await orchestrator.execute_tasks(
            [AgentTask(topic=fleet.topic("echo"), prompt=f"p{i}") for i in range(20)]
        )
    assert [r.output for r in results] == [{"echo": f"p{i}"} for i in range(20)]
    assert {r.worker for r in results} == {worker.worker_id}

    other = agent_queue_name(fleet.name("chain-a"))  # another agent's queue, declared by the operator
    await fleet.bus.declare_queue(other, bindings=[f"agent.{fleet.name('chain-a')}"])
    refused: list[str] = []
    async with AmqpBus(agent_user.url(fleet.amqp_url), reconnect_timeout=5) as restricted:
        for queue in (other, "relaybus.dead"):
            with pytest.raises(BusError, match="access refused") as err:
                await restricted.consume(queue, _never, prefetch=1)
            refused.append(queue)
            assert agent_user.password not in str(err.value)
        with pytest.raises(BusError, match="access refused"):
            await restricted.declare_queue(agent_queue_name("someone-else"))
    figures("agent under its own RabbitMQ user", tasks_ok=len(results), refused=refused)


async def _never(delivery: object) -> None:
    raise AssertionError("a refused consumer got a message")


# -- secrets ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _all_logs(caplog: pytest.LogCaptureFixture) -> Iterator[list[str]]:
    """Every structlog event (rendered with its fields) and stdlib record (with its exception) while open."""
    lines: list[str] = []
    caplog.set_level(logging.DEBUG)
    with structlog.testing.capture_logs() as events:
        yield lines
    lines.extend(repr(event) for event in events)
    for record in caplog.records:
        lines.append(record.getMessage())
        if record.exc_info:
            lines.append(logging.Formatter().formatException(record.exc_info))


async def test_passwords_and_api_keys_never_reach_logs_reprs_or_errors(
    fleet: Fleet, broker_users: BrokerUsers, caplog: pytest.LogCaptureFixture
) -> None:
    agent_user = await broker_users.for_agent(fleet.name("writer"))
    openai_key = f"sk-test-{secrets.token_hex(20)}"
    anthropic_key = f"sk-ant-test-{secrets.token_hex(20)}"
    hidden = {
        "AMQP password": agent_user.password,
        "OPENAI_API_KEY": openai_key,
        "ANTHROPIC_API_KEY": anthropic_key,
    }
    url = agent_user.url(fleet.amqp_url)
    seen: list[str] = []
    async with FakeLLMServer(api_key=openai_key) as server:
        env = {
            "RELAYBUS_LLM_PROVIDER": "openai",
            "OPENAI_BASE_URL": server.openai_base_url,
            "OPENAI_API_KEY": openai_key,
            "ANTHROPIC_API_KEY": anthropic_key,
        }
        worker = await fleet.start("Writer", amqp_url=url, env=env, log_level="DEBUG")
        server.inject("server_error", times=8)  # the first tasks fail after their retries
        async with ProjectOrchestrator(fleet.bus) as orchestrator:
            results = await orchestrator.execute_tasks(
                [AgentTask(topic=fleet.topic("write.x"), prompt=f"p{i}", timeout_s=30) for i in range(6)]
                + [
                    AgentTask(
                        topic=fleet.topic("write.x"), mode="api", input={"url": "http://example.invalid/"}
                    )
                ]
            )
        seen += [r.model_dump_json() for r in results]
        assert any(r.ok for r in results)
        assert not all(r.ok for r in results)
        refused_host = results[-1].error
        assert refused_host is not None
        assert "example.invalid" in refused_host.message  # api mode: a host not configured is refused

        with _all_logs(caplog) as lines:
            wrong_port = url.replace(":5672/", ":1/")
            bus = AmqpBus(wrong_port, connect_timeout=2)
            seen += [repr(bus), str(bus), bus.url]
            with pytest.raises(ConnectionFailed) as failed:
                await bus.connect()
            seen.append(str(failed.value))
            async with AmqpBus(url) as good:
                with pytest.raises(BusError) as refused:
                    await good.publish(
                        OutgoingMessage(body=b"{}", routing_key="x", exchange="no-such-exchange")
                    )
                seen += [str(refused.value), repr(good)]
            wrong_key_env = {**env, "OPENAI_API_KEY": anthropic_key}  # refused by the server: a 401
            async with TaskExecutor.from_env(wrong_key_env) as executor:
                seen.append(repr(executor))
                denied = await executor.execute(AgentTask(topic="t.x", prompt="hi"))
                seen.append(denied.model_dump_json())
            out, err = io.StringIO(), io.StringIO()
            with redirect_stdout(out), redirect_stderr(err):
                await asyncio.to_thread(_cli, ["submit", "--topic", "a.b", "--amqp-url", wrong_port])
            seen += [out.getvalue(), err.getvalue()]
        seen += lines
    seen.append(worker.log())
    leaks = {label: [s[:200] for s in seen if value in s] for label, value in hidden.items()}
    figures(
        "secrets search",
        texts_searched=len(seen),
        worker_log_lines=worker.log().count("\n"),
        leaks={k: len(v) for k, v in leaks.items()},
    )
    assert denied.error is not None
    assert "401" in denied.error.message
    assert "***" in str(failed.value)  # the URL is shown, masked
    assert not any(leaks.values()), leaks


def _cli(argv: list[str]) -> int:
    from relaybus.cli import main

    return main(argv)


# -- TLS -------------------------------------------------------------------------------------------------


@dataclass
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A throw-away CA, a server certificate for 127.0.0.1 and a client certificate, made with openssl."""
    d = tmp_path_factory.mktemp("pki")
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=relaybus-test-ca",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        cwd=d,
    )
    (d / "san.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for who in ("server", "client"):
        _openssl(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            f"/CN=relaybus-{who}",
            "-keyout",
            f"{who}.key",
            "-out",
            f"{who}.csr",
            cwd=d,
        )
        _openssl(
            "x509",
            "-req",
            "-in",
            f"{who}.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            "san.cnf",
            "-out",
            f"{who}.pem",
            cwd=d,
        )
    return Pki(d / "ca.pem", d / "server.pem", d / "server.key", d / "client.pem", d / "client.key")


async def test_amqps_with_tls_files_verifies_the_server_and_presents_the_client_certificate(pki: Pki) -> None:
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki.ca))
    server_ctx.load_cert_chain(pki.server_cert, pki.server_key)
    server_ctx.verify_mode = ssl.CERT_REQUIRED  # only clients with a certificate of our CA
    peers: list[str] = []

    async def handshake_then_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        cert = writer.get_extra_info("peercert") or {}
        peers.append(dict(x[0] for x in cert.get("subject", ())).get("commonName", ""))
        writer.close()  # not a broker: the AMQP handshake then fails, after TLS succeeded

    server = await asyncio.start_server(handshake_then_close, "127.0.0.1", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    try:
        bus = AmqpBus(
            f"amqps://user:tls-secret@127.0.0.1:{port}/",
            ca_file=str(pki.ca),
            cert_file=str(pki.client_cert),
            key_file=str(pki.client_key),
            connect_timeout=5,
        )
        with pytest.raises(ConnectionFailed) as err:
            await bus.connect()
        assert peers == ["relaybus-client"], err.value  # TLS done with our CA and our client certificate
        assert "tls-secret" not in str(err.value)

        stranger = AmqpBus(f"amqps://user:pw@127.0.0.1:{port}/", connect_timeout=5)  # system CAs only
        with pytest.raises(ConnectionFailed, match="TLS"):
            await stranger.connect()
        assert peers == ["relaybus-client"]  # the untrusted server certificate stopped the handshake
    finally:
        server.close()
        await server.wait_closed()


# -- no deserialisation of code, no shell ----------------------------------------------------------------


_FORBIDDEN_MODULES = {"pickle", "cPickle", "marshal", "shelve", "dill"}
_FORBIDDEN_CALLS = {"eval", "exec", "system", "popen", "create_subprocess_shell", "load", "unsafe_load"}


def _dangerous(source: str, where: str) -> list[str]:
    """What in ``source`` could unpickle, evaluate code or run a shell."""
    import ast

    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        at = f"{where}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) else [])
            found += [f"{at} imports {n}" for n in names if n and n.split(".")[0] in _FORBIDDEN_MODULES]
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            owner = getattr(getattr(func, "value", None), "id", "")
            if name in _FORBIDDEN_CALLS and not (name in {"load", "unsafe_load"} and owner != "yaml"):
                found.append(f"{at} calls {owner + '.' if owner else ''}{name}")  # json.load is fine
            for keyword in node.keywords:
                value = keyword.value
                if keyword.arg == "shell" and not (isinstance(value, ast.Constant) and value.value is False):
                    found.append(f"{at} passes shell=")
    return found


def test_no_module_unpickles_evaluates_or_runs_a_shell() -> None:
    """Static check of src/: no pickle, marshal or shelve, no yaml.load, no eval/exec, no shell."""
    sample = "import pickle\nimport yaml, subprocess\nyaml.load(t)\nsubprocess.run(c, shell=True)\neval(x)\n"
    assert len(_dangerous(sample, "sample")) == 4  # the check does catch each kind
    found: list[str] = []
    for path in sorted((Path(__file__).resolve().parents[2] / "src").rglob("*.py")):
        found += _dangerous(path.read_text(), path.name)
    assert not found, found
