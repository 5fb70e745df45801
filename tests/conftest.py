"""Shared fixtures: a real RabbitMQ for integration tests, a real PostgreSQL for the state stores.

``RELAYBUS_TEST_AMQP_URL`` (default ``amqp://guest:guest@127.0.0.1:5672/``) is used when it answers;
otherwise a broker is started with testcontainers where a Docker engine exists; otherwise the test is skipped
with the reason, or fails when ``RELAYBUS_REQUIRE_BROKER=1`` (as in .ci/run).

``RELAYBUS_TEST_POSTGRES_URL`` (default ``postgresql://postgres@127.0.0.1:5432/postgres``) names a server on
which each test creates a database of its own and drops it afterwards; when none answers the test is
skipped with the reason, or fails when ``RELAYBUS_REQUIRE_POSTGRES=1`` (as in .ci/run).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import structlog

from tests.hangs import pytest_timeout_set_timer  # noqa: F401  (a hook: a hang fails alone)
from tests.netns import NodeAddresses, netns_available
from tests.rabbitmq_nodes import PrivateCluster, PrivateNode, rabbitmq_available

DEFAULT_TEST_URL = "amqp://guest:guest@127.0.0.1:5672/"
DEFAULT_TEST_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--drop-logs",
        action="store_true",
        help="drop every log event before it is rendered (make mutate: see tests/MUTATION.md)",
    )


def pytest_configure(config: pytest.Config) -> None:
    # Rendering a logged exception (a rich traceback with locals) takes seconds under mutmut's trampolines,
    # and some tests log one on purpose. structlog.testing.capture_logs installs its own processors, so tests
    # that read log events still see every one.
    if config.getoption("--drop-logs"):
        structlog.configure(processors=[_drop_event])


def _drop_event(logger: object, method_name: str, event_dict: object) -> object:
    raise structlog.DropEvent


def _answers(url: str, timeout: float = 2.0, default_port: int = 5672) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or default_port), timeout=timeout
        ):
            return True
    except OSError:
        return False


def _no_broker(reason: str) -> None:
    if os.environ.get("RELAYBUS_REQUIRE_BROKER") == "1":
        pytest.fail(f"RELAYBUS_REQUIRE_BROKER=1 but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def amqp_url() -> Iterator[str]:
    """URL of a RabbitMQ that answers."""
    url = os.environ.get("RELAYBUS_TEST_AMQP_URL", DEFAULT_TEST_URL)
    if _answers(url):
        yield url
        return
    try:
        from testcontainers.rabbitmq import RabbitMqContainer

        container = RabbitMqContainer("rabbitmq:3.13-management")
        container.start()
    except Exception as exc:  # no Docker engine, image not pullable, ...
        _no_broker(f"no RabbitMQ answers at {url} and testcontainers could not start one ({exc!r:.200})")
        return
    try:
        host = container.get_container_host_ip()
        port = container.get_exposed_port(5672)
        yield f"amqp://guest:guest@{host}:{port}/"
    finally:
        container.stop()


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


@pytest.fixture
def amqp_vhost_url(amqp_url: str) -> Iterator[str]:
    """``amqp_url`` on a fresh vhost of the test's own, deleted afterwards: for tests that must see a whole
    broker to themselves (e.g. purge ``relaybus.dead``). Sync, so async fixtures may request it by name."""
    vhost = f"relaybus-test-{uuid.uuid4().hex[:10]}"
    _rabbitmqctl("add_vhost", vhost)
    try:
        _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        parts = urlsplit(amqp_url)
        yield urlunsplit((parts.scheme, parts.netloc, "/" + vhost, "", ""))
    finally:
        _rabbitmqctl("delete_vhost", vhost)


@pytest.fixture
def private_node() -> Iterator[PrivateNode]:
    """A private RabbitMQ node of the test's own (tests/rabbitmq_nodes.py), started; stopped and removed
    afterwards whatever happened. Break it at will (kill, alarms): the shared broker is not touched."""
    why = rabbitmq_available()
    if why:
        _no_broker(f"cannot start a private RabbitMQ node: {why}")
    with PrivateNode.create("rbpriv") as node:
        yield node


@pytest.fixture(scope="session")
def private_cluster() -> Iterator[PrivateCluster]:
    """A 3-node private RabbitMQ cluster for the session (started once: it takes half a minute), removed at
    the end whatever happened. Where network namespaces can be made, node i also listens on
    ``node.listen[1]``, an address of its own on ``lo`` (tests/netns.py). Tests take it through ``cluster``
    (which restarts nodes a test left down)."""
    why = rabbitmq_available()
    if why:
        _no_broker(f"cannot start a private RabbitMQ cluster: {why}")
    with contextlib.ExitStack() as stack:
        addresses: list[str] = []
        if netns_available() is None:  # each node also listens on an address of its own, for namespaces
            addresses = stack.enter_context(NodeAddresses(3)).addresses
        yield stack.enter_context(PrivateCluster.create(3, "rbclu", addresses=addresses))


@pytest.fixture
def cluster(private_cluster: PrivateCluster) -> Iterator[PrivateCluster]:
    """The session's private cluster with every node running, before and after the test."""
    private_cluster.ensure_running()
    yield private_cluster
    private_cluster.ensure_running()


def _no_postgres(reason: str) -> None:
    if os.environ.get("RELAYBUS_REQUIRE_POSTGRES") == "1":
        pytest.fail(f"RELAYBUS_REQUIRE_POSTGRES=1 but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """URL of a PostgreSQL server that answers (its maintenance database)."""
    url = os.environ.get("RELAYBUS_TEST_POSTGRES_URL", DEFAULT_TEST_POSTGRES_URL)
    if not _answers(url, default_port=5432):
        from relaybus.secrets import mask_url

        _no_postgres(f"no PostgreSQL answers at {mask_url(url)} (set RELAYBUS_TEST_POSTGRES_URL)")
    return url


def _run_sql_on(url: str, *statements: str) -> None:
    """Run ``statements`` on ``url`` in a loop of their own (in a thread: a test's loop may be running)."""
    import asyncpg

    async def run() -> None:
        connection = await asyncpg.connect(url, timeout=10)
        try:
            for statement in statements:
                await connection.execute(statement)
        finally:
            await connection.close()

    error: list[BaseException] = []

    def target() -> None:
        try:
            asyncio.run(run())
        except BaseException as exc:
            error.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if error:
        raise error[0]


@pytest.fixture
def postgres_database_url(postgres_url: str) -> Iterator[str]:
    """``postgres_url`` on a fresh database of the test's own, dropped afterwards (connections and all).
    Sync, so async fixtures may request it by name."""
    name = f"relaybus_test_{uuid.uuid4().hex[:12]}"
    try:
        _run_sql_on(postgres_url, f'CREATE DATABASE "{name}"')
    except Exception as exc:
        from relaybus.secrets import mask_url

        _no_postgres(f"cannot create a database on {mask_url(postgres_url)}: {exc!r:.200}")
    parts = urlsplit(postgres_url)
    try:
        yield urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, ""))
    finally:
        _run_sql_on(postgres_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ]
)
def state_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A state store URL on a database of the test's own: a SQLite file, then a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    url: str = request.getfixturevalue("postgres_database_url")
    return url
